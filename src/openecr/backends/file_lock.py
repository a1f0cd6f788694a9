"""Locks as ``flock`` on files under a directory (the data dir): held by one process of the
host at a time, released by the kernel when the holder exits or dies."""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from openecr.ports.locks import Locks

_NAME = re.compile(r"[a-z0-9-]{1,64}")


class FileLocks:
    """A ``Locks`` over ``<root>/<name>.lock`` files."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @contextmanager
    def hold(self, name: str, *, wait: bool) -> Iterator[bool]:
        if _NAME.fullmatch(name) is None:
            raise ValueError(f"bad lock name {name!r}")
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)  # releases the flock


def _conforms(locks: FileLocks) -> Locks:
    """Never called: mypy checks here that the class matches the port."""
    return locks
