"""What every part of the harness shares: paths, settings, pinning, statistics, processes."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".bench"  # competitors' virtual environments (git-ignored)
RESULTS = ROOT / "bench-results"

MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000  # throughput and memory are reported in MB (10^6 bytes)

ECR_TARGET = "AmazonEC2ContainerRegistry_V20150921."
ECR_CONTENT_TYPE = "application/x-amz-json-1.1"
# A SigV4-shaped header: none of the servers verifies it (openecr runs without --credentials),
# but moto routes the request to ECR by the service in its credential scope.
AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/ecr/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64
)


class BenchError(RuntimeError):
    """A measurement that cannot be trusted (errors, wrong answers, a server that died)."""


@dataclass(frozen=True)
class Settings:
    """How big and how long: ``full()`` for ``make bench``, ``quick()`` for the smoke run."""

    mode: str
    reps: int  # interleaved repetitions of every measurement; the table shows their median
    duration: float  # seconds per load-generator run
    warmup: float  # seconds of unmeasured load before a case's first run (0: none)
    repo_sizes: tuple[int, ...]
    batch_ids: tuple[int, ...]
    batch_connections: int
    scale_sizes: tuple[int, ...]  # BatchGetImage latency: the smallest repository vs the largest
    manifest_images: int
    manifest_connections: int
    blob_size: int
    blob_parallel: tuple[int, ...]
    skopeo_layers: int
    skopeo_layer_size: int
    rss_clients: int
    rss_size: int
    cpus: tuple[int, ...] = field(default_factory=tuple)

    @staticmethod
    def full() -> Settings:
        return Settings(
            mode="full",
            reps=3,
            duration=5.0,
            warmup=1.0,
            repo_sizes=(100, 10_000),
            batch_ids=(1, 100),
            batch_connections=8,
            scale_sizes=(100, 100_000),
            manifest_images=100,
            manifest_connections=16,
            blob_size=25 * MiB,
            blob_parallel=(1, 4),
            skopeo_layers=6,
            skopeo_layer_size=26 * MiB,
            rss_clients=4,
            rss_size=GiB,
        )

    @staticmethod
    def quick() -> Settings:
        return Settings(
            mode="quick",
            reps=1,
            duration=1.0,
            warmup=0.0,
            repo_sizes=(100,),
            batch_ids=(1, 100),
            batch_connections=8,
            scale_sizes=(100, 1_000),
            manifest_images=20,
            manifest_connections=16,
            blob_size=MiB,
            blob_parallel=(1, 4),
            skopeo_layers=2,
            skopeo_layer_size=MiB,
            rss_clients=4,
            rss_size=8 * MiB,
        )


def pinned_cpus(count: int = 2) -> tuple[int, ...]:
    """The first ``count`` CPUs this process may run on: servers and load generators share
    them, as on the 2-core machines the reference numbers come from."""
    return tuple(sorted(os.sched_getaffinity(0))[:count])


def pinned(command: Sequence[str], cpus: Sequence[int]) -> list[str]:
    return ["taskset", "-c", ",".join(str(c) for c in cpus), *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def die_with_parent() -> None:
    """In a child before exec: SIGTERM when the harness dies, even by SIGKILL (Linux)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def openecr_command(
    port: int, data_dir: Path, *args: str, executable: str | None = None
) -> list[str]:
    """``openecr serve`` on 127.0.0.1:``port`` with warnings-only logs, then ``args``, then the
    options in ``BENCH_OPENECR_ARGS``; ``executable`` defaults to this venv's ``openecr``."""
    return [
        executable or str(Path(sys.executable).parent / "openecr"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
        *args,
        *os.environ.get("BENCH_OPENECR_ARGS", "").split(),
    ]
