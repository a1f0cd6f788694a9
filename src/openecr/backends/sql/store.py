"""SqlMetadataStore: the engines (SQLite in WAL mode, or PostgreSQL) and their transactions.

Opening a store brings its schema to the newest migration (``migrate``), once however many
processes open it at the same moment. SQLite write transactions start with ``BEGIN IMMEDIATE``
so writers serialise instead of failing on lock upgrades, and the writers of one process
commit in groups (``group_commit``: one transaction and one fsync for whoever writes at the
same time); PostgreSQL writers lock the repositories they touch (``SqlTransaction``), so
writes to different repositories run in parallel, across replicas too.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError

from openecr.backends.sql.checkpoint import IdleCheckpointer
from openecr.backends.sql.group_commit import GroupCommitter
from openecr.backends.sql.locks import AdvisoryLocks
from openecr.backends.sql.migrate import upgrade
from openecr.backends.sql.transaction import SqlTransaction
from openecr.errors import BackendUnavailable
from openecr.ports.metadata import MetadataStore


class SqlMetadataStore:
    """A MetadataStore over one SQLAlchemy engine (two for SQLite: deferred reads and
    ``BEGIN IMMEDIATE`` writes)."""

    # read connections kept open between transactions (checking one out of the pool and
    # back costs more than a short read)
    IDLE_READERS = 4

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self._is_sqlite = url.startswith("sqlite")
        self._reader = self._engine(immediate=False)
        self._writer = self._engine(immediate=True)
        self._idle: list[Connection] = []  # list.pop/append are atomic: no lock needed
        # SQLite: concurrent writers share transactions and fsyncs (group_commit.py), and the
        # write-ahead log is copied into the database once they pause (checkpoint.py)
        self._checkpoints = IdleCheckpointer(self._writer) if self._is_sqlite else None
        self._group = (
            GroupCommitter(self._writer, self._checkpoints.written)
            if self._checkpoints is not None
            else None
        )
        # (revision before, revision now) of the schema migrations run on opening
        self.revisions: tuple[str | None, str] | None = upgrade(self._writer) if migrate else None

    def _engine(self, *, immediate: bool) -> Engine:
        options: dict[str, Any] = {}
        if not self._is_sqlite and not immediate:
            # a read sees one snapshot throughout, as SQLite's deferred transactions do
            options["isolation_level"] = "REPEATABLE READ"
        engine = create_engine(self.url, pool_size=8, max_overflow=16, **options)
        if self._is_sqlite:
            begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.isolation_level = None
                cursor = dbapi_conn.cursor()
                # first: switching a new database to WAL waits for the lock of a process or
                # thread that is creating it too (else the driver's 5 s could run out)
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                if not immediate:  # readers map the file: no copy into each page cache
                    cursor.execute("PRAGMA mmap_size=268435456")
                cursor.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # on the DBAPI connection: exec_driver_sql would cost more than the BEGIN; a
                # read begun on it already (``_sqlite_read``) is joined
                dbapi = conn.connection.dbapi_connection
                if not dbapi.in_transaction:  # type: ignore[union-attr]
                    dbapi.execute(begin)  # type: ignore[union-attr]

        return engine

    def read(self) -> AbstractContextManager[SqlTransaction]:
        return self._sqlite_read() if self._is_sqlite else self._read()

    @contextmanager
    def _sqlite_read(self) -> Iterator[SqlTransaction]:
        """A read transaction begun and ended on the DBAPI connection: SQLAlchemy's
        transaction bookkeeping costs more than a short read (every pull is one). A statement
        run through SQLAlchemy inside it joins it (the begin hook sees the open transaction)."""
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self._reader.connect()
        dbapi = conn.connection.dbapi_connection
        assert dbapi is not None
        try:
            dbapi.execute("BEGIN")
            yield SqlTransaction(conn)
        except BaseException:
            conn.close()  # rolls back; a connection that failed goes back to the pool
            raise
        if conn.in_transaction():  # SQLAlchemy began one inside: end it, and ours with it
            conn.rollback()
        else:
            dbapi.execute("ROLLBACK")  # a read: nothing to keep
        if len(self._idle) < self.IDLE_READERS:
            self._idle.append(conn)
        else:
            conn.close()

    @contextmanager
    def _read(self) -> Iterator[SqlTransaction]:
        with self._unavailable():
            try:
                conn = self._idle.pop()
            except IndexError:
                conn = self._reader.connect()
            try:
                with conn.begin():
                    yield SqlTransaction(conn)
            except BaseException:
                conn.close()  # a connection that failed goes back to the pool, which checks it
                raise
        if len(self._idle) < self.IDLE_READERS:
            self._idle.append(conn)
        else:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[SqlTransaction]:
        if self._group is not None:
            with self._group.write() as tx:
                yield tx
            return
        with self._unavailable(), self._writer.connect() as conn, conn.begin():
            # SQLite: BEGIN IMMEDIATE serialises writers; PostgreSQL: locks per repository
            yield SqlTransaction(conn, locking=not self._is_sqlite)

    @contextmanager
    def _unavailable(self) -> Iterator[None]:
        """PostgreSQL's connection failures (down, restarting, refusing connections) and
        transient conflicts (deadlock, serialization) as BackendUnavailable; the pool drops
        the connections of a server that went away, so the next transaction reconnects."""
        try:
            yield
        except DBAPIError as error:
            cause = _unavailable_cause(error) if not self._is_sqlite else None
            if cause is None:
                raise
            raise BackendUnavailable(f"The metadata database is unavailable: {cause}") from error

    def locks(self) -> AdvisoryLocks | None:
        """Named locks across replicas (PostgreSQL), or None (SQLite: a file lock serves)."""
        return None if self._is_sqlite else AdvisoryLocks(self._writer)

    def close(self) -> None:
        if self._group is not None:
            self._group.close()
        if self._checkpoints is not None:
            self._checkpoints.close()
        while self._idle:
            self._idle.pop().close()
        self._reader.dispose()
        if self._writer is not self._reader:
            self._writer.dispose()


def _unavailable_cause(error: DBAPIError) -> str | None:
    """Why PostgreSQL failed, when the failure is the server's state, not the statement."""
    state = getattr(error.orig, "sqlstate", None)
    first_line = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else ""
    if error.connection_invalidated or state is None:
        return first_line or "the connection was lost"
    if state.startswith(("08", "57P", "53300", "40")):  # connection, shutdown, too many, conflict
        return first_line
    return None


def _conforms(store: SqlMetadataStore) -> MetadataStore:
    """Never called: mypy checks here that the class matches the port."""
    return store
