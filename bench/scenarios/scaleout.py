"""Scale-out: the same reads on one openecr (SQLite + files, the default) and on the
``cluster`` (3 replicas on PostgreSQL + SeaweedFS behind haproxy, bench/cluster.py), both on
the same pinned CPUs.

* BatchGetImage, 1 tag per call from a repository of 100 images (wrk, 8 connections): calls/s
  and p50 latency.
* ``/v2`` manifest GET by tag (wrk, 16 connections, cycling over the tags): req/s.
* ``/v2`` blob GET of one layer (25 MiB; hey, which follows redirects as docker does), 4
  parallel (the most of ``blob_parallel``), MB/s, twice: through the replicas that redirect
  (307 to a presigned S3 URL, the client then reads from SeaweedFS) and through those that
  stream the bytes from S3 themselves (``--no-blob-redirect``). One openecr serves its files
  directly in both rows (a file store has no URL to redirect to): the rows compare each way
  of the cluster with that.

The cluster's requests all go through haproxy, round robin over its replicas; what is loaded
through one frontend is served by the other (one database, one bucket).
"""

from __future__ import annotations

import hashlib
import json
import random
import time

import httpx

from bench import hey, wrk
from bench.clients import V2, Ecr, sha256
from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, MB, BenchError, MiB
from bench.context import Case, Context, interleaved
from bench.images import OCI_MANIFEST, Bulk, layer, tag
from bench.report import Key
from bench.scenarios.batch import check
from bench.servers import Cluster, Server

SERVERS = ("openecr", "cluster")
SCENARIO = "scale-out"
BATCH_REPOSITORY = "bench/scaleout-batch"
V2_REPOSITORY = "bench/scaleout-v2"
BLOB_REPOSITORY = "bench/scaleout-blob"
BODIES = 100
ACCEPT = f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"
WAYS = {"redirect": "redirected to S3", "proxy": "proxied from S3"}


def batch_images(ctx: Context) -> int:
    return min(ctx.settings.repo_sizes)


def batch_keys(ctx: Context) -> tuple[Key, Key]:
    s = ctx.settings
    case = f"BatchGetImage 1 id, repo of {batch_images(ctx):,}, {s.batch_connections} conn."
    return (
        Key(SCENARIO, case, "calls/s", "higher"),
        Key(SCENARIO, case, "p50 ms", "lower"),
    )


def manifest_key(ctx: Context) -> Key:
    n = ctx.settings.manifest_connections
    return Key(SCENARIO, f"/v2 manifest GET by tag, {n} conn.", "req/s", "higher")


def blob_key(ctx: Context, way: str, parallel: int) -> Key:
    size = ctx.settings.blob_size / MiB
    case = f"/v2 blob GET {size:g} MiB, {parallel} parallel, cluster {WAYS[way]}"
    return Key(SCENARIO, case, "MB/s", "higher")


def parallel(ctx: Context) -> int:
    """Blob downloads at once: the most the blobs scenario makes (one count keeps the full
    run of this scenario under 5 minutes)."""
    return max(ctx.settings.blob_parallel)


def keys(ctx: Context) -> list[Key]:
    blob_keys = [blob_key(ctx, way, parallel(ctx)) for way in WAYS]
    return [*batch_keys(ctx), manifest_key(ctx), *blob_keys]


def blob(ctx: Context) -> bytes:
    return layer("scaleout-blob", ctx.settings.blob_size)[1]


def bodies(images: int) -> list[bytes]:
    rng = random.Random(f"scaleout-{images}")
    return [
        json.dumps(
            {
                "repositoryName": BATCH_REPOSITORY,
                "imageIds": [{"imageTag": tag(rng.randrange(images))}],
            }
        ).encode()
        for _ in range(BODIES)
    ]


def check_blob(server: Server, digest: str, data: bytes) -> None:
    """Each way answers as labelled and with the blob's bytes: on the cluster, a 307 to the
    bucket from one frontend and the bytes from the other; on one openecr, the bytes."""
    urls = [server.endpoint]
    with httpx.Client(timeout=600) as client:
        if isinstance(server, Cluster):
            assert server.deployment is not None and server.deployment.seaweedfs is not None
            bucket = server.deployment.seaweedfs.endpoint
            path = f"/v2/{BLOB_REPOSITORY}/blobs/{digest}"
            redirect = client.get(server.endpoint + path)
            location = redirect.headers.get("location", "")
            if redirect.status_code != 307 or not location.startswith(bucket):
                raise BenchError(f"redirect frontend: {redirect.status_code} {location[:100]}")
            urls.append(server.proxy_endpoint)
        for url in urls:
            got = client.get(f"{url}/v2/{BLOB_REPOSITORY}/blobs/{digest}", follow_redirects=True)
            if got.status_code != 200 or hashlib.sha256(got.content).digest() != bytes.fromhex(
                digest.removeprefix("sha256:")
            ):
                raise BenchError(f"blob GET through {url}: {got.status_code}, not the blob")


def load(ctx: Context, server: Server, bulk: Bulk) -> None:
    """The images and blob, through the server's endpoint (the cluster's: haproxy's), checked."""
    ecr = Ecr(server.endpoint)
    try:
        for repository in (BATCH_REPOSITORY, V2_REPOSITORY, BLOB_REPOSITORY):
            ecr.create_repository(repository)
        for data in bulk.blobs:
            ecr.upload_blob(BATCH_REPOSITORY, data)
        for index in range(batch_images(ctx)):
            ecr.put_image(BATCH_REPOSITORY, bulk.manifest(index), tag(index), OCI_MANIFEST)
    finally:
        ecr.close()
    check(server, bodies(batch_images(ctx))[0], bulk)
    v2 = V2(server.endpoint)
    try:
        for data in bulk.blobs:
            v2.push_blob(V2_REPOSITORY, data)
        for index in range(ctx.settings.manifest_images):
            v2.put_manifest(V2_REPOSITORY, tag(index), bulk.manifest(index), OCI_MANIFEST)
        got = v2.get(f"/v2/{V2_REPOSITORY}/manifests/{tag(0)}", accept=ACCEPT)
        if got.status_code != 200 or got.content != bulk.manifest(0):
            raise BenchError(f"GET manifest: {got.status_code} {got.content[:200]!r}")
        data = blob(ctx)
        digest = v2.push_blob(BLOB_REPOSITORY, data)
    finally:
        v2.close()
    check_blob(server, digest, data)


def prepare(ctx: Context, servers: list[Server]) -> list[Server]:
    bulk = Bulk.make()
    ready = []
    for server in servers:
        started = time.monotonic()
        try:
            load(ctx, server, bulk)
            ctx.log(f"loaded {server.name} in {time.monotonic() - started:.1f} s")
            ready.append(server)
        except (BenchError, httpx.HTTPError) as error:
            ctx.log(f"{server.name} loading: {error}")
            for key in keys(ctx):
                ctx.results.fail(key, server.name, f"loading: {error}")
    return ready


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    size = len(blob(ctx))
    digest = sha256(blob(ctx))
    batch_script = wrk.write_script(
        ctx.workdir / "scaleout-batch.lua",
        [wrk.Request("POST", "/", body) for body in bodies(batch_images(ctx))],
        {
            "Content-Type": ECR_CONTENT_TYPE,
            "X-Amz-Target": ECR_TARGET + "BatchGetImage",
            "Authorization": AUTHORIZATION,
        },
    )
    manifest_script = wrk.write_script(
        ctx.workdir / "scaleout-manifest.lua",
        [
            wrk.Request("GET", f"/v2/{V2_REPOSITORY}/manifests/{tag(i)}")
            for i in range(s.manifest_images)
        ],
        {"Accept": ACCEPT},
    )
    cases = [
        Case(batch_keys(ctx)[0].case, batch_keys(ctx), ("wrk", batch_script, s.batch_connections)),
        Case(
            manifest_key(ctx).case,
            (manifest_key(ctx),),
            ("wrk", manifest_script, s.manifest_connections),
        ),
        *(
            Case(key.case, (key,), ("blob", way, parallel(ctx)))
            for way in WAYS
            for key in [blob_key(ctx, way, parallel(ctx))]
        ),
    ]

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        kind, what, connections = case.data
        if kind == "wrk":
            result = wrk.run(
                server.host,
                what,
                connections=connections,
                duration=seconds,
                cpus=ctx.cpus,
                min_requests=2 * connections if rep >= 0 else 0,
            )
            ctx.results.record(
                scenario=SCENARIO, case=case.label, server=server.name, rep=rep, **result.raw()
            )
            values = {"calls/s": result.rps, "req/s": result.rps, "p50 ms": result.p50_ms}
            return {key: values[key.metric] for key in case.keys}
        endpoint = server.endpoint
        if what == "proxy" and isinstance(server, Cluster):
            endpoint = server.proxy_endpoint
        heard = hey.run(
            f"{endpoint}/v2/{BLOB_REPOSITORY}/blobs/{digest}",
            method="GET",
            connections=connections,
            duration=seconds,
            cpus=ctx.cpus,
        )
        ctx.results.record(
            scenario=SCENARIO,
            case=case.label,
            server=server.name,
            rep=rep,
            requests=heard.requests,
            seconds=heard.seconds,
            bytes=heard.bytes,
        )
        if heard.bytes < heard.requests * size:
            raise BenchError(f"hey read {heard.bytes / MB:.0f} MB for {heard.requests} blobs")
        return {case.keys[0]: heard.mb_per_s}

    interleaved(ctx, cases, servers, measure)
