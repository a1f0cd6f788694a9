"""``openecr db upgrade``: bring the metadata database's schema to the newest migration.

Every ``openecr serve`` does the same on start (under a database lock, so replicas starting
together migrate once); this command runs it alone, e.g. as a deployment step before new
replicas start. Exit status 0, or 2 for a bad configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from openecr.config import ConfigError, from_env


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openecr db", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    upgrade = commands.add_parser("upgrade", help="run the pending schema migrations")
    upgrade.add_argument(
        "--database-url",
        help="the metadata database (OPENECR_DATABASE_URL; default: SQLite in the data dir)",
    )
    upgrade.add_argument("--data-dir", help="the data dir (OPENECR_DATA_DIR, ./.openecr)")
    return parser


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    from openecr.bootstrap import upgrade_database

    try:
        config = from_env(None, data_dir=args.data_dir, database_url=args.database_url)
        if config.database_url is None:
            config.data_dir.mkdir(parents=True, exist_ok=True)
        before, now = upgrade_database(config.metadata_url)
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    if before == now:
        print(f"schema at revision {now}: nothing to do")
    else:
        print(f"schema upgraded from revision {before or 'none'} to {now}")
    return 0
