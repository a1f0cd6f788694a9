"""``openecr gc``: collect garbage on the local store once (also while a server runs on it).

Reclaims the blobs no image references that were last stored longer than the grace period
ago, the upload sessions inactive for longer than the upload expiry, and what interrupted
uploads left behind; prints what it reclaimed (blobs, bytes, upload sessions), with a progress
bar on a terminal. ``--dry-run`` only says what a run would reclaim. Exit status 0, or 2 for a
bad configuration."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from openecr.config import ConfigError, from_env

BAR_WIDTH = 30


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openecr gc", description=__doc__)
    parser.add_argument("--dry-run", action="store_true", help="only print what would go")
    parser.add_argument("--data-dir", help="the local store (OPENECR_DATA_DIR, ./.openecr)")
    parser.add_argument(
        "--grace",
        type=float,
        help="seconds an unreferenced blob is kept after it was last stored "
        "(OPENECR_GC_GRACE, 3600)",
    )
    parser.add_argument(
        "--upload-expiry",
        type=float,
        help="seconds of inactivity after which an upload session expires "
        "(OPENECR_UPLOAD_EXPIRY, 86400)",
    )
    return parser


class Bar:
    """A progress bar redrawn in place on ``stream`` (a terminal)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.shown = -1

    def __call__(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total if total else BAR_WIDTH
        if filled == self.shown and done != total:
            return
        self.shown = filled
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stream.write(f"\r[{bar}] {done}/{total} blobs")
        if done == total:
            self.stream.write("\n")
        self.stream.flush()


def run(argv: Sequence[str]) -> int:
    args = _parser().parse_args(list(argv))
    try:
        config = from_env(
            None, data_dir=args.data_dir, gc_grace=args.grace, upload_expiry=args.upload_expiry
        )
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    from openecr.bootstrap import build_runtime

    runtime = build_runtime(config)
    try:
        report = runtime.gc.run(
            dry_run=args.dry_run,
            wait=True,
            progress=Bar(sys.stderr) if sys.stderr.isatty() else None,
        )
    finally:
        runtime.close()
    assert report is not None  # a waiting run always gets the lock
    print(f"{'dry run: ' if report.dry_run else ''}{report.summary()}")
    return 0
