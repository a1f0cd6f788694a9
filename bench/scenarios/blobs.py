"""``/v2`` blob GET of one 25 MiB layer, MB/s, with 1 and 4 parallel downloads (wrk: it reads
bodies in C, so the client is not the bottleneck)."""

from __future__ import annotations

import hashlib

from bench import wrk
from bench.clients import V2, Ecr
from bench.common import MB, BenchError, MiB
from bench.context import Case, Context, interleaved
from bench.images import layer
from bench.report import Key
from bench.servers import Server

SERVERS = ("openecr", "baseline", "openecr-2", "distribution")
SCENARIO = "/v2 blob GET"
REPOSITORY = "bench/blob"


def keys(ctx: Context) -> list[Key]:
    size = ctx.settings.blob_size / MiB
    return [
        Key(SCENARIO, f"{size:g} MiB layer, {n} parallel", "MB/s", "higher")
        for n in ctx.settings.blob_parallel
    ]


def blob(ctx: Context) -> bytes:
    return layer("blob", ctx.settings.blob_size)[1]


def prepare(ctx: Context, servers: list[Server]) -> list[Server]:
    data = blob(ctx)
    ready = []
    for server in servers:
        v2 = V2(server.endpoint)
        try:
            if server.ecr:
                ecr = Ecr(server.endpoint)
                ecr.create_repository(REPOSITORY)
                ecr.close()
            digest = v2.push_blob(REPOSITORY, data)
            hasher = hashlib.sha256()
            for chunk in v2.download(REPOSITORY, digest):
                hasher.update(chunk)
            if "sha256:" + hasher.hexdigest() != digest:
                raise BenchError("the blob downloaded is not the blob uploaded")
            ready.append(server)
        except BenchError as error:
            for key in keys(ctx):
                ctx.results.fail(key, server.name, f"loading: {error}")
        finally:
            v2.close()
    return ready


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    data = blob(ctx)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    script = wrk.write_script(
        ctx.workdir / "blob.lua", [wrk.Request("GET", f"/v2/{REPOSITORY}/blobs/{digest}")], {}
    )
    cases = [
        Case(key.case, (key,), parallel)
        for key, parallel in zip(keys(ctx), s.blob_parallel, strict=True)
    ]

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        result = wrk.run(
            server.host,
            script,
            connections=case.data,
            duration=seconds,
            cpus=ctx.cpus,
            min_requests=case.data if rep >= 0 else 0,
        )
        ctx.results.record(
            scenario=SCENARIO, case=case.label, server=server.name, rep=rep, **result.raw()
        )
        if result.requests * len(data) > result.bytes * 1.01:
            raise BenchError(f"wrk read {result.bytes / MB:.0f} MB for {result.requests} blobs")
        return {case.keys[0]: result.mb_per_s}

    interleaved(ctx, cases, servers, measure)
