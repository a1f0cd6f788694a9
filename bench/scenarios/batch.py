"""BatchGetImage over the ECR JSON API: 1 and 100 image ids per call, in repositories of 100
and of 10,000 images; calls/s and p50/p99 latency (wrk, POST bodies from a Lua script).

Every server gets the same images through its own ECR API (CreateRepository, the layer
upload API for the shared blobs, PutImage per image). Each call asks for tags drawn at random
(seeded) from the whole repository; wrk cycles through 100 such bodies.
"""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

from bench import wrk
from bench.clients import Ecr, Puts
from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, BenchError
from bench.context import Case, Context, interleaved
from bench.images import OCI_MANIFEST, Bulk, tag
from bench.report import Key
from bench.servers import OPENECR_CONFIGS, Server

SERVERS = (*OPENECR_CONFIGS, "moto", "ministack")
SCENARIO = "BatchGetImage"
BODIES = 100


def repository(size: int) -> str:
    return f"bench/images-{size}"


def load(server: Server, sizes: tuple[int, ...], bulk: Bulk) -> None:
    puts = Puts(server.endpoint)
    try:
        for size in sizes:
            repo = repository(size)
            Ecr.make_repository(server.endpoint, repo, bulk.blobs)
            for index in range(size):
                puts.put_image(repo, bulk.manifest(index), tag(index), OCI_MANIFEST)
    finally:
        puts.close()


def prepare(ctx: Context, servers: list[Server]) -> list[Server]:
    """Load every server at once (one client thread each); returns those that took it all."""
    bulk = Bulk.make()
    sizes = ctx.settings.repo_sizes
    ctx.log(f"loading {' + '.join(map(str, sizes))} images into {[s.name for s in servers]}")
    ready = []
    with ThreadPoolExecutor(len(servers) or 1) as pool:
        futures = {s.name: pool.submit(load, s, sizes, bulk) for s in servers}
        for server in servers:
            try:
                futures[server.name].result()
                ready.append(server)
            except BenchError as error:
                for key in keys(ctx):
                    ctx.results.fail(key, server.name, f"loading: {error}")
    ctx.log("loaded")
    return ready


def keys_for(size: int, ids: int) -> tuple[Key, Key, Key]:
    case = f"{ids} id{'s' if ids > 1 else ''}, repo of {size:,}"
    return (
        Key(SCENARIO, case, "calls/s", "higher"),
        Key(SCENARIO, case, "p50 ms", "lower"),
        Key(SCENARIO, case, "p99 ms", "lower"),
    )


def keys(ctx: Context) -> list[Key]:
    s = ctx.settings
    return [
        key
        for size in s.repo_sizes
        for ids in s.batch_ids
        if ids <= size
        for key in keys_for(size, ids)
    ]


def bodies(size: int, ids: int) -> list[bytes]:
    rng = random.Random(f"batch-{size}-{ids}")
    return [
        json.dumps(
            {
                "repositoryName": repository(size),
                "imageIds": [{"imageTag": tag(i)} for i in rng.sample(range(size), ids)],
            }
        ).encode()
        for _ in range(BODIES)
    ]


def check(server: Server, body: bytes, bulk: Bulk) -> None:
    """The server answers the call right: every image, byte-exact manifests, no failures."""
    ecr = Ecr(server.endpoint)
    try:
        answer = ecr.batch_get_image(body)
    finally:
        ecr.close()
    asked = [i["imageTag"] for i in json.loads(body)["imageIds"]]
    if answer.get("failures"):
        raise BenchError(f"failures: {answer['failures'][:2]}")
    got = {}
    for image in answer["images"]:
        got[image["imageId"].get("imageTag")] = image["imageManifest"].encode()
    expected = {t: bulk.manifest(int(t[1:])) for t in asked}
    if got != expected:
        raise BenchError(f"BatchGetImage answered {len(got)} images, not the {len(asked)} asked")


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    bulk = Bulk.make()
    cases = []
    for size in s.repo_sizes:
        for ids in s.batch_ids:
            if ids > size:
                continue
            made = bodies(size, ids)
            script = wrk.write_script(
                ctx.workdir / f"batch-{size}-{ids}.lua",
                [wrk.Request("POST", "/", body) for body in made],
                {
                    "Content-Type": ECR_CONTENT_TYPE,
                    "X-Amz-Target": ECR_TARGET + "BatchGetImage",
                    "Authorization": AUTHORIZATION,
                },
            )
            row_keys = keys_for(size, ids)
            cases.append(Case(row_keys[0].case, row_keys, (script, made[0])))
    for case in cases:
        for server in servers:
            try:
                check(server, case.data[1], bulk)
            except BenchError as error:
                for key in case.keys:
                    ctx.results.fail(key, server.name, f"wrong answer: {error}")

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        result = wrk.run(
            server.host,
            case.data[0],
            connections=s.batch_connections,
            duration=seconds,
            cpus=ctx.cpus,
            # slow servers get a longer run: 2 calls per connection at least (none: warm-up)
            min_requests=2 * s.batch_connections if rep >= 0 else 0,
        )
        ctx.results.record(
            scenario=SCENARIO, case=case.label, server=server.name, rep=rep, **result.raw()
        )
        rps, p50, p99 = case.keys
        return {rps: result.rps, p50: result.p50_ms, p99: result.p99_ms}

    interleaved(ctx, cases, servers, measure)
