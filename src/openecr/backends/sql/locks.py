"""Named locks across replicas: PostgreSQL session-level advisory locks.

A lock is held on a connection of its own for the ``with`` block, and released at its end or
when the holding process dies (PostgreSQL ends a dead client's session, and its locks with it),
so background work that one replica at a time may do (garbage collection) moves to another
replica when the one doing it dies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, func, select


class AdvisoryLocks:
    """``Locks`` (openecr.ports.locks) on one PostgreSQL database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def hold(self, name: str, *, wait: bool) -> Iterator[bool]:
        key = func.hashtextextended(f"openecr-lock:{name}", 0)
        with self.engine.connect() as conn:
            if wait:
                conn.execute(select(func.pg_advisory_lock(key)))
                held = True
            else:
                held = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
            conn.commit()
            try:
                yield held
            finally:
                if held:
                    conn.execute(select(func.pg_advisory_unlock(key)))
                    conn.commit()
