"""Peak resident memory of the server while 4 clients stream 1 GiB layers up (one chunked
PATCH each, as docker and skopeo send them), then down, all 4 at once.

Each repetition uses a freshly started server with no other data, so the peak (the kernel's
VmHWM, checked against 20 ms samples of VmRSS) belongs to the transfers. A server whose RSS
passes a guard (18 GB, or 75 % of RAM if less) is stopped and reported as an error.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.clients import V2, Ecr
from bench.common import MB, BenchError, MiB
from bench.context import Context
from bench.report import Key
from bench.servers import ALL, Server

SERVERS = ("openecr", "baseline", "openecr-2", "ministack")
SCENARIO = "peak RSS"
REPOSITORY = "bench/rss"
CHUNK = MiB


def keys(ctx: Context) -> tuple[Key, Key]:
    s = ctx.settings
    gib = s.rss_size >= 1 << 30
    size = f"{s.rss_size / (1 << 30):g} GiB" if gib else f"{s.rss_size / MiB:g} MiB"
    case = f"{s.rss_clients} clients x {size} up, then down"
    return Key(SCENARIO, case, "MB", "lower"), Key(SCENARIO, f"{case}, time", "s", "lower")


def guard_bytes() -> int:
    with open("/proc/meminfo") as info:
        total = next(int(line.split()[1]) * 1024 for line in info if line.startswith("MemTotal"))
    return min(18_000 * MB, int(total * 0.75))


class Sampler(threading.Thread):
    """Polls the server's RSS; kills it if it passes ``limit``."""

    def __init__(self, server: Server, limit: int) -> None:
        super().__init__(daemon=True)
        self.server, self.limit = server, limit
        self.peak = 0
        self.killed = False
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.02):
            try:
                rss, _ = self.server.memory()
            except (OSError, KeyError, BenchError):
                return
            self.peak = max(self.peak, rss)
            if rss > self.limit:
                self.killed = True
                self.server.stop()
                return


def chunks(client: int, size: int, hasher: hashlib._Hash) -> Iterator[bytes]:
    block = random.Random(f"rss-{client}").randbytes(CHUNK)
    sent = 0
    while sent < size:
        part = block[: min(CHUNK, size - sent)]
        hasher.update(part)
        sent += len(part)
        yield part


def upload(server: Server, client: int, size: int) -> str:
    hasher = hashlib.sha256()
    v2 = V2(server.endpoint)
    try:
        location = v2.start_upload(REPOSITORY)
        location = v2.patch(location, chunks(client, size, hasher))
        digest = "sha256:" + hasher.hexdigest()
        v2.finish(location, digest)
        return digest
    finally:
        v2.close()


def download(server: Server, digest: str, size: int) -> None:
    v2 = V2(server.endpoint)
    try:
        got = sum(len(chunk) for chunk in v2.download(REPOSITORY, digest))
    finally:
        v2.close()
    if got != size:
        raise BenchError(f"downloaded {got} bytes of {size}")


def once(ctx: Context, name: str, rep: int) -> tuple[float, float, float]:
    """(peak RSS, baseline RSS, seconds) of one fresh server."""
    s = ctx.settings
    server = ALL[name](ctx.workdir / f"rss-{rep}", ctx.cpus).start()
    try:
        if server.ecr:
            ecr = Ecr(server.endpoint)
            ecr.create_repository(REPOSITORY)
            ecr.close()
        baseline, _ = server.memory()
        sampler = Sampler(server, guard_bytes())
        sampler.start()
        started = time.monotonic()
        try:
            with ThreadPoolExecutor(s.rss_clients) as pool:
                digests = list(
                    pool.map(lambda c: upload(server, c, s.rss_size), range(s.rss_clients))
                )
                list(pool.map(lambda d: download(server, d, s.rss_size), digests))
        except Exception as error:  # a killed server fails its clients in many ways
            if sampler.killed:
                raise BenchError(f"stopped above {sampler.limit / MB:,.0f} MB RSS") from error
            raise BenchError(f"{type(error).__name__}: {error}") from error
        finally:
            sampler.stopping.set()
            sampler.join()
        seconds = time.monotonic() - started
        if sampler.killed:
            raise BenchError(f"stopped above {sampler.limit / MB:,.0f} MB RSS")
        _, peak = server.memory()
        return max(peak, sampler.peak), baseline, seconds
    finally:
        server.stop()
        _remove(server.workdir)


def _remove(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


def run(ctx: Context, names: list[str]) -> None:
    peak_key, time_key = keys(ctx)
    for rep in range(ctx.settings.reps):
        shift = rep % max(len(names), 1)
        for name in [*names[shift:], *names[:shift]]:
            if ctx.results.failed(peak_key, name):
                continue
            try:
                peak, baseline, seconds = once(ctx, name, rep)
            except BenchError as error:
                ctx.log(f"{name} rss: {error}")
                ctx.results.fail(peak_key, name, str(error))
                ctx.results.fail(time_key, name, str(error))
                continue
            ctx.results.add(peak_key, name, peak / MB)
            ctx.results.add(time_key, name, seconds)
            ctx.results.record(
                scenario=SCENARIO,
                case=peak_key.case,
                server=name,
                rep=rep,
                peak_rss_bytes=peak,
                baseline_rss_bytes=baseline,
                seconds=seconds,
            )
            ctx.log(f"rep {rep + 1} rss {name}: peak {peak / MB:,.0f} MB in {seconds:.1f} s")
