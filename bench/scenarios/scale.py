"""BatchGetImage latency against repository size, openecr alone: 1 tag per call (wrk, 8
connections) in a repository of 100 images and in one of 100,000 (1,000 in quick mode), and
per repetition the ratio of the two median latencies. The project's target: at most 1.5.

The images are batch.py's (the same shared blobs, one small OCI manifest per tag), loaded
through the ECR API with PutImage by several client threads at once (each PutImage commits
on its own). Both sizes are measured inside one ``measure`` call, one after the other, in an
order alternating per repetition, so each repetition's ratio compares runs made side by side.
"""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench import wrk
from bench.clients import Ecr, Puts
from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, BenchError
from bench.context import Case, Context, interleaved
from bench.images import OCI_MANIFEST, Bulk, tag
from bench.report import Key
from bench.scenarios.batch import check
from bench.servers import Server

SERVERS = ("openecr",)
SCENARIO = "BatchGetImage scale"
BODIES = 100
LOADERS = 8  # client threads putting images, each on its own connection
PROGRESS_FROM = 10_000  # repositories this big log their loading every 10 %


def repository(size: int) -> str:
    return f"bench/scale-{size}"


def size_keys(size: int) -> tuple[Key, Key, Key]:
    case = f"1 id, repo of {size:,}"
    return (
        Key(SCENARIO, case, "calls/s", "higher"),
        Key(SCENARIO, case, "p50 ms", "lower"),
        Key(SCENARIO, case, "p99 ms", "lower"),
    )


def ratio_key(sizes: tuple[int, ...]) -> Key | None:
    """The derived row: the largest repository's p50 over the smallest one's."""
    if len(set(sizes)) < 2:
        return None
    return Key(
        SCENARIO, f"p50 latency, repo of {max(sizes):,} / repo of {min(sizes):,}", "ratio", "lower"
    )


def load_key(size: int) -> Key:
    """The row of the time loading a repository of ``size`` images took (once per run)."""
    return Key(SCENARIO, f"load {size:,} images by PutImage, {LOADERS} clients", "s", "lower")


def keys(ctx: Context) -> list[Key]:
    sizes = ctx.settings.scale_sizes
    derived = ratio_key(sizes)
    return (
        [key for size in sizes for key in size_keys(size)]
        + ([derived] if derived else [])
        + [load_key(max(sizes))]
    )


class Progress:
    """Counts images put by every loader; logs each 10 % of a big repository."""

    def __init__(self, ctx: Context, repo: str, total: int) -> None:
        self.ctx, self.repo, self.total = ctx, repo, total
        self.done = 0
        self.started = time.monotonic()
        self.lock = threading.Lock()
        self.next_tenth = 1

    def step(self) -> None:
        with self.lock:
            self.done += 1
            if self.total < PROGRESS_FROM or self.done * 10 < self.next_tenth * self.total:
                return
            self.next_tenth += 1
            done = self.done
        elapsed = time.monotonic() - self.started
        self.ctx.log(
            f"{self.repo}: {done:,} of {self.total:,} images ({elapsed:.0f} s, "
            f"{done / max(elapsed, 1e-9):,.0f}/s)"
        )


def put_range(
    endpoint: str,
    repo: str,
    bulk: Bulk,
    indices: range,
    progress: Progress,
    stop: threading.Event,
) -> None:
    puts = Puts(endpoint)
    try:
        for index in indices:
            if stop.is_set():
                return
            puts.put_image(repo, bulk.manifest(index), tag(index), OCI_MANIFEST)
            progress.step()
    except BaseException:
        stop.set()  # the other loaders give up too
        raise
    finally:
        puts.close()


def load(ctx: Context, server: Server, size: int, bulk: Bulk) -> float:
    """One repository of ``size`` images; returns the seconds it took."""
    started = time.monotonic()
    repo = repository(size)
    Ecr.make_repository(server.endpoint, repo, bulk.blobs)
    progress = Progress(ctx, repo, size)
    stop = threading.Event()
    ranges = [range(size * k // LOADERS, size * (k + 1) // LOADERS) for k in range(LOADERS)]
    with ThreadPoolExecutor(LOADERS) as pool:
        futures = [
            pool.submit(put_range, server.endpoint, repo, bulk, indices, progress, stop)
            for indices in ranges
            if indices
        ]
        for future in futures:
            future.result()  # the first loader's error, if any
    return time.monotonic() - started


def prepare(ctx: Context, servers: list[Server]) -> list[Server]:
    """Load each repository into each server; returns those that took them all."""
    bulk = Bulk.make()
    sizes = ctx.settings.scale_sizes
    ready = []
    for server in servers:
        try:
            for size in sizes:
                ctx.log(f"loading {size:,} images into {server.name} ({LOADERS} clients)")
                seconds = load(ctx, server, size, bulk)
                ctx.log(
                    f"loaded {repository(size)} into {server.name} in {seconds:.1f} s "
                    f"({size / max(seconds, 1e-9):,.0f} images/s)"
                )
                ctx.results.record(
                    scenario=SCENARIO,
                    case=f"load {size:,} images",
                    server=server.name,
                    rep=-1,
                    images=size,
                    loaders=LOADERS,
                    seconds=seconds,
                )
                if size == max(sizes):
                    ctx.results.add(load_key(size), server.name, seconds)
            ready.append(server)
        except (BenchError, httpx.HTTPError) as error:
            ctx.log(f"{server.name} loading: {error}")
            for key in keys(ctx):
                ctx.results.fail(key, server.name, f"loading: {error}")
    return ready


def bodies(size: int) -> list[bytes]:
    rng = random.Random(f"scale-{size}")
    return [
        json.dumps(
            {
                "repositoryName": repository(size),
                "imageIds": [{"imageTag": tag(rng.randrange(size))}],
            }
        ).encode()
        for _ in range(BODIES)
    ]


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    sizes = s.scale_sizes
    bulk = Bulk.make()
    scripts = {}
    firsts = {}
    for size in sizes:
        made = bodies(size)
        firsts[size] = made[0]
        scripts[size] = wrk.write_script(
            ctx.workdir / f"scale-{size}.lua",
            [wrk.Request("POST", "/", body) for body in made],
            {
                "Content-Type": ECR_CONTENT_TYPE,
                "X-Amz-Target": ECR_TARGET + "BatchGetImage",
                "Authorization": AUTHORIZATION,
            },
        )
    derived = ratio_key(sizes)
    measured = tuple(key for key in keys(ctx) if key != load_key(max(sizes)))
    case = Case("1 id, repos of " + " and ".join(f"{size:,}" for size in sizes), measured)
    for server in servers:
        for size in sizes:
            try:
                check(server, firsts[size], bulk)
            except BenchError as error:
                for key in case.keys:
                    ctx.results.fail(key, server.name, f"wrong answer, repo of {size:,}: {error}")
                break

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        # smallest first in even repetitions, largest first in odd ones (and the warm-up)
        order = sizes if rep % 2 == 0 else tuple(reversed(sizes))
        values: dict[Key, float] = {}
        for size in order:
            result = wrk.run(
                server.host,
                scripts[size],
                connections=s.batch_connections,
                duration=seconds,
                cpus=ctx.cpus,
                min_requests=2 * s.batch_connections if rep >= 0 else 0,
            )
            rps, p50, p99 = size_keys(size)
            ctx.results.record(
                scenario=SCENARIO, case=rps.case, server=server.name, rep=rep, **result.raw()
            )
            values |= {rps: result.rps, p50: result.p50_ms, p99: result.p99_ms}
        if derived is not None:
            small, big = size_keys(min(sizes))[1], size_keys(max(sizes))[1]
            if values[small] <= 0:
                raise BenchError(f"a p50 of {values[small]} ms in the repo of {min(sizes):,}")
            values[derived] = values[big] / values[small]
        return {key: values[key] for key in case.keys}

    interleaved(ctx, [case], servers, measure)
