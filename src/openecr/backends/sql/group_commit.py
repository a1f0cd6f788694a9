"""Group commit for SQLite: concurrent write transactions of one process share one database
transaction, and so one fsync.

SQLite has one writer at a time, and with ``synchronous=FULL`` each commit waits for an fsync
of the write-ahead log: one transaction per request caps a process at a few hundred writes per
second whatever the CPU. Here the writers of a process take turns on one connection; each runs
its statements inside its own ``SAVEPOINT`` of the open transaction (the first of a group needs
none: if it fails, the whole transaction is rolled back), and the writer that finds
nobody waiting behind it commits for all of them. Whoever arrives while that commit (and its
fsync) runs waits for the connection and joins the next group. So the groups grow with the
load, by themselves, and a lone writer commits at once, as before.

Contracts (those of ``MetadataStore.write``):
* a writer's ``with`` block returns (and so its request is answered) only after the group's
  COMMIT has returned: whatever it wrote is durable;
* a writer whose block raises rolls back to its savepoint alone and gets its own exception,
  after the group it was in has ended (what it saw may have been written by the writers before
  it in the group); the others of the group commit;
* if the transaction itself fails (the COMMIT, or a statement error after which SQLite rolled
  the whole transaction back, such as a full disk), every writer of the group gets that error
  (the same exception object, raised in each writer's thread) and nothing of the group is
  stored; the next writer starts on a fresh connection.

Writers are serialised in one order, as before, and each sees what the writers before it in
its group wrote. A write transaction must not open another one in the same thread (it never
could: the second would wait for the first's database lock)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, RootTransaction

from openecr.backends.sql.transaction import SqlTransaction


class _Group:
    """The writers sharing one database transaction."""

    __slots__ = ("done", "error", "size")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.size = 0


class GroupCommitter:
    """Write transactions on one connection of ``engine`` (whose ``begin`` starts a write
    transaction), committed in groups; see the module's docstring. ``committed`` is called
    after each group's COMMIT, by the committing thread (one at a time)."""

    # the most writers in one group: bounds how long the first one waits for its answer
    MAX_GROUP = 64

    def __init__(self, engine: Engine, committed: Callable[[], None] | None = None) -> None:
        self._engine = engine
        self._committed = committed
        self._turn = threading.Lock()  # the connection's owner runs its block or commits
        self._waiting = 0  # writers waiting for their turn (under _count)
        self._count = threading.Lock()
        self._conn: Connection | None = None
        self._tx: RootTransaction | None = None
        self._group: _Group | None = None
        self.groups = 0  # committed groups, and the writers in them (for tests and metrics)
        self.writers = 0

    @contextmanager
    def write(self) -> Iterator[SqlTransaction]:
        with self._count:
            self._waiting += 1
        self._turn.acquire()
        with self._count:
            self._waiting -= 1
        try:
            group, conn = self._join()
        except BaseException:
            self._turn.release()
            raise
        # the group's first writer needs no savepoint: if it fails, the transaction holds
        # nothing else and is rolled back whole
        first = group.size == 0
        failed: BaseException | None = None
        if not first:
            try:
                self._statement(conn, "SAVEPOINT openecr_writer")
            except BaseException as error:
                self._end(group, error)
                self._turn.release()
                raise
        try:
            yield SqlTransaction(conn)
        except BaseException as error:
            failed = error
            if first:
                self._roll_back(group)
            else:
                self._roll_back_alone(group, conn, error)
        else:
            if not first:
                try:
                    self._statement(conn, "RELEASE openecr_writer")
                except BaseException as error:
                    failed = error
                    self._end(group, error)
        try:
            if self._group is group:
                group.size += 1
                if self._waiting == 0 or group.size >= self.MAX_GROUP:
                    self._commit(group)
        finally:
            self._turn.release()
        group.done.wait()
        if failed is not None:
            raise failed
        if group.error is not None:
            raise group.error

    @staticmethod
    def _statement(conn: Connection, sql: str) -> None:
        """On the DBAPI connection (a savepoint is no business of SQLAlchemy's here)."""
        cursor = conn.connection.cursor()
        try:
            cursor.execute(sql)
        finally:
            cursor.close()

    def _join(self) -> tuple[_Group, Connection]:
        """The open group and its connection (a new transaction if none is open)."""
        if self._group is not None and self._conn is not None:
            return self._group, self._conn
        if self._conn is None:
            self._conn = self._engine.connect()
        try:
            self._tx = self._conn.begin()
        except BaseException:
            self._discard()
            raise
        self._group = _Group()
        return self._group, self._conn

    def _roll_back(self, group: _Group) -> None:
        """The group's only writer failed: roll the transaction back, keep the connection."""
        tx, self._tx, self._group = self._tx, None, None
        try:
            if tx is not None:
                tx.rollback()
        except BaseException:
            self._discard()
        group.done.set()

    def _roll_back_alone(self, group: _Group, conn: Connection, failed: BaseException) -> None:
        """Undo the statements of a writer that raised ``failed``. If the whole transaction
        is gone (SQLite rolls it back on some errors, such as a full disk), the group ends
        with ``failed``; if it cannot be rolled back to the savepoint, with that error."""
        try:
            dbapi = conn.connection.dbapi_connection
            if dbapi is None or not dbapi.in_transaction:
                self._end(group, failed)
                return
            self._statement(conn, "ROLLBACK TO openecr_writer")
            self._statement(conn, "RELEASE openecr_writer")
        except BaseException as error:
            self._end(group, error)

    def _commit(self, group: _Group) -> None:
        tx = self._tx
        try:
            if tx is None:
                raise RuntimeError("no write transaction is open")
            tx.commit()
        except BaseException as error:
            self._end(group, error)
            return
        self.groups += 1
        self.writers += group.size
        self._group = self._tx = None
        group.done.set()
        if self._committed is not None:
            self._committed()

    def _end(self, group: _Group, error: BaseException) -> None:
        """The group failed: roll back whatever is left and give every member ``error``."""
        group.error = error
        self._discard()
        group.done.set()

    def _discard(self) -> None:
        conn, self._conn, self._tx, self._group = self._conn, None, None, None
        if conn is not None:
            try:
                conn.invalidate()  # closes the DBAPI connection: SQLite rolls back what is open
                conn.close()
            except Exception:  # already failing: the group's error is what counts
                pass

    def close(self) -> None:
        with self._turn:
            if self._tx is not None and self._group is not None:
                self._commit(self._group)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
