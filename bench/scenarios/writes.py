"""PutImage throughput: 8 clients (wrk connections) each putting new images, one after the
other, into a repository; images/s and p50/p99 latency.

Every request is a new image: the manifest is batch.py's bulk manifest with a unique annotation,
under a unique tag (a Lua ``request`` hook numbers them per wrk thread), so no call is a no-op
re-put and wrk fails the run on any non-2xx answer (an ImageAlreadyExists would be one). Each
measurement gets a fresh repository holding the shared blobs, so every run starts from the
same state. openecr acknowledges a PutImage only once it is durable (SQLite, synchronous=FULL);
moto and ministack keep images in memory.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from bench import wrk
from bench.clients import Ecr
from bench.common import AUTHORIZATION, ECR_CONTENT_TYPE, ECR_TARGET, BenchError
from bench.context import Case, Context, interleaved
from bench.images import OCI_MANIFEST, Bulk
from bench.report import Key
from bench.servers import Server

SERVERS = ("openecr", "baseline", "openecr-2", "moto", "ministack")
SCENARIO = "PutImage"
CLIENTS = 8
MARK = "@@N@@"  # replaced by a number unique in the run

SCRIPT = (
    """\
local template = %(template)s
local headers = {
%(headers)s
}
local threads = 0
local count = 0

setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

request = function()
  count = count + 1
  local body = template:gsub("%(mark)s", string.format("%%d-%%d", tid, count))
  return wrk.format("POST", "/", headers, body)
end

"""
    + wrk.DONE
)

CASE = f"new images, {CLIENTS} clients"
RATE = Key(SCENARIO, CASE, "images/s", "higher")
P50 = Key(SCENARIO, CASE, "p50 ms", "lower")
P99 = Key(SCENARIO, CASE, "p99 ms", "lower")


def keys(_ctx: Context) -> list[Key]:
    return [RATE, P50, P99]


def body(repository: str, bulk: Bulk) -> str:
    """A PutImage body whose manifest annotation and tag carry ``MARK``."""
    manifest = json.loads(bulk.manifest(0))
    manifest["annotations"] = {"org.opencontainers.image.ref.name": f"w-{MARK}"}
    return json.dumps(
        {
            "repositoryName": repository,
            "imageManifest": json.dumps(manifest, indent=2),
            "imageManifestMediaType": OCI_MANIFEST,
            "imageTag": f"w-{MARK}",
        }
    )


def script(ctx: Context, repository: str, bulk: Bulk) -> Path:
    path = ctx.workdir / f"writes-{repository.replace('/', '-')}.lua"
    headers = {
        "Content-Type": ECR_CONTENT_TYPE,
        "X-Amz-Target": ECR_TARGET + "PutImage",
        "Authorization": AUTHORIZATION,
    }
    path.write_text(
        SCRIPT
        % {
            "template": wrk.lua_string(body(repository, bulk)),
            "headers": ",\n".join(
                f"  [ {wrk.lua_string(k)} ] = {wrk.lua_string(v)}" for k, v in headers.items()
            ),
            "mark": MARK,
        }
    )
    return path


def run(ctx: Context, servers: list[Server]) -> None:
    bulk = Bulk.make()
    numbers = itertools.count(1)

    def measure(case: Case, server: Server, seconds: float, rep: int) -> dict[Key, float]:
        repository = f"bench/writes-{next(numbers)}"
        Ecr.make_repository(server.endpoint, repository, bulk.blobs)
        result = wrk.run(
            server.host,
            script(ctx, repository, bulk),
            connections=CLIENTS,
            duration=seconds,
            cpus=ctx.cpus,
            min_requests=2 * CLIENTS if rep >= 0 else 0,
        )
        ctx.results.record(
            scenario=SCENARIO, case=CASE, server=server.name, rep=rep, **result.raw()
        )
        if rep >= 0 and result.requests == 0:
            raise BenchError("no image was put")
        return {RATE: result.rps, P50: result.p50_ms, P99: result.p99_ms}

    interleaved(ctx, [Case(CASE, (RATE, P50, P99))], servers, measure)
