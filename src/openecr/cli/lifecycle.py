"""``openecr lifecycle run``: apply the stored lifecycle policies to the local store once.

Prints one line per action (what, repository, digest, tags, rule priority) and a summary; with
``--dry-run`` only says what a run would do. Exit status 0, or 2 for a bad configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openecr.config import ConfigError, from_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openecr lifecycle", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="apply every repository's lifecycle policy once")
    run.add_argument("--repository-name", help="only this repository's policy")
    run.add_argument("--registry-id", help="only repositories of this registry (account)")
    run.add_argument("--dry-run", action="store_true", help="only print what a run would do")
    run.add_argument("--data-dir", help="the local store (OPENECR_DATA_DIR, ./.openecr)")
    return parser


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        config = from_env(None, data_dir=args.data_dir)
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    from openecr.bootstrap import build_runtime

    runtime = build_runtime(config)
    try:
        report = runtime.registry.lifecycle.run(
            repository=args.repository_name, registry_id=args.registry_id, dry_run=args.dry_run
        )
    finally:
        runtime.close()
    for action in report.actions:
        repo = action.repository
        print(
            f"{action.outcome}\t{action.action}\t{repo.registry_id}/{repo.name}\t{action.digest}"
            f"\ttags={','.join(action.tags) or '-'}\trule={action.priority}"
        )
    if report.dry_run:
        summary = (
            f"{report.count('would expire')} would expire, "
            f"{report.count('would transition')} would transition"
        )
    else:
        summary = (
            f"{report.count('expired')} expired, {report.count('transitioned')} transitioned, "
            f"{report.count('failed')} failed"
        )
    print(
        f"{'dry run: ' if report.dry_run else ''}{report.repositories} "
        f"{'policy' if report.repositories == 1 else 'policies'} evaluated, {summary}"
    )
    return 0
