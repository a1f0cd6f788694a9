"""The lock port: a named lock held across processes (and, where the backend reaches that far,
across hosts), for work that only one of them may do at a time (garbage collection)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Locks(Protocol):
    def hold(self, name: str, *, wait: bool) -> AbstractContextManager[bool]:
        """Take the lock ``name`` for the ``with`` block: the block gets True when it holds it,
        False when another holder has it and ``wait`` is false (the block must then skip the
        work). With ``wait`` the call blocks until the lock is free. Released at the end of
        the block, and when the holding process dies."""
        ...
