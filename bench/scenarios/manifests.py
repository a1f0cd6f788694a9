"""``/v2`` manifest reads at 16 connections: GET by tag (wrk, cycling over every tag) and HEAD
by digest (hey, one digest: wrk cannot make HEAD requests), requests/s.

Each server gets the same images pushed through ``/v2`` (monolithic blob uploads, manifest
PUT by tag) into one repository, created first through the ECR API where the server has one
(ECR creates repositories before a push)."""

from __future__ import annotations

from bench import hey, wrk
from bench.clients import V2, Ecr, sha256
from bench.common import BenchError
from bench.context import Case, Context, interleaved
from bench.images import OCI_MANIFEST, Bulk, tag
from bench.report import Key
from bench.servers import OPENECR_CONFIGS, Server

SERVERS = (*OPENECR_CONFIGS, "ministack", "distribution")
SCENARIO = "/v2 manifest"
REPOSITORY = "bench/v2"
ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"


def keys(ctx: Context) -> list[Key]:
    n = ctx.settings.manifest_connections
    return [
        Key(SCENARIO, f"GET by tag, {n} connections", "req/s", "higher"),
        Key(SCENARIO, f"HEAD by digest, {n} connections", "req/s", "higher"),
    ]


def load(server: Server, images: int, bulk: Bulk) -> None:
    if server.ecr:
        ecr = Ecr(server.endpoint)
        try:
            ecr.create_repository(REPOSITORY)
        finally:
            ecr.close()
    v2 = V2(server.endpoint)
    try:
        for blob in bulk.blobs:
            v2.push_blob(REPOSITORY, blob)
        for index in range(images):
            v2.put_manifest(REPOSITORY, tag(index), bulk.manifest(index), OCI_MANIFEST)
        # the check: one GET and one HEAD answer with the bytes and digest that were put
        body = bulk.manifest(0)
        got = v2.get(f"/v2/{REPOSITORY}/manifests/{tag(0)}", accept=ACCEPT)
        if got.status_code != 200 or got.content != body:
            raise BenchError(f"GET manifest: {got.status_code} {got.content[:200]!r}")
        head = v2.get(f"/v2/{REPOSITORY}/manifests/{sha256(body)}", "HEAD", ACCEPT)
        if head.status_code != 200 or head.headers.get("docker-content-digest") != sha256(body):
            raise BenchError(f"HEAD manifest: {head.status_code} {dict(head.headers)}")
    finally:
        v2.close()


def prepare(ctx: Context, servers: list[Server]) -> list[Server]:
    bulk = Bulk.make()
    ready = []
    for server in servers:
        try:
            load(server, ctx.settings.manifest_images, bulk)
            ready.append(server)
        except BenchError as error:
            for key in keys(ctx):
                ctx.results.fail(key, server.name, f"loading: {error}")
    return ready


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    bulk = Bulk.make()
    get_key, head_key = keys(ctx)
    images = range(s.manifest_images)
    by_tag = [wrk.Request("GET", f"/v2/{REPOSITORY}/manifests/{tag(i)}") for i in images]
    script = wrk.write_script(ctx.workdir / "manifest-get.lua", by_tag, {"Accept": ACCEPT})
    head_path = f"/v2/{REPOSITORY}/manifests/{sha256(bulk.manifest(0))}"
    cases = [Case(get_key.case, (get_key,), script), Case(head_key.case, (head_key,), head_path)]

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        if case.keys[0] is head_key:
            heard = hey.run(
                f"{server.endpoint}{case.data}",
                method="HEAD",
                connections=s.manifest_connections,
                duration=seconds,
                cpus=ctx.cpus,
                headers={"Accept": ACCEPT},
            )
            ctx.results.record(
                scenario=SCENARIO,
                case=case.label,
                server=server.name,
                rep=rep,
                requests=heard.requests,
                seconds=heard.seconds,
            )
            return {head_key: heard.rps}
        result = wrk.run(
            server.host,
            case.data,
            connections=s.manifest_connections,
            duration=seconds,
            cpus=ctx.cpus,
            min_requests=1 if rep >= 0 else 0,
        )
        ctx.results.record(
            scenario=SCENARIO, case=case.label, server=server.name, rep=rep, **result.raw()
        )
        return {get_key: result.rps}

    interleaved(ctx, cases, servers, measure)
