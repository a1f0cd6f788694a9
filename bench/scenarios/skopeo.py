"""Push and pull of a multi-layer image (at least 150 MiB in full mode) with skopeo, seconds.

Each repetition pushes a different image (so skopeo's blob-info cache can never turn a push
into cross-repository mounts) into a new repository on each server, then pulls it back into
an empty ``dir:``; servers alternate within a repetition, their order rotating."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench.clients import Ecr, sha256
from bench.common import BenchError, MiB
from bench.context import Context
from bench.images import Image
from bench.report import Key
from bench.servers import Server

SERVERS = ("openecr", "baseline", "openecr-2", "distribution")
SCENARIO = "skopeo"


def keys(ctx: Context) -> tuple[Key, Key]:
    s = ctx.settings
    size = s.skopeo_layers * s.skopeo_layer_size / MiB
    case = f"{s.skopeo_layers} layers, {size:,.0f} MiB"
    return Key(SCENARIO, f"push {case}", "s", "lower"), Key(SCENARIO, f"pull {case}", "s", "lower")


def skopeo(*args: str) -> float:
    started = time.monotonic()
    done = subprocess.run(
        ["skopeo", "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise BenchError(f"skopeo {' '.join(args)}: {done.stderr.strip()[-500:]}")
    return seconds


def push(server: Server, source: Path, repository: str) -> float:
    if server.ecr:
        ecr = Ecr(server.endpoint)
        try:
            ecr.create_repository(repository)
        finally:
            ecr.close()
    return skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"dir:{source}",
        f"docker://{server.host}/{repository}:v1",
    )


def pull(server: Server, repository: str, target: Path, image: Image) -> float:
    shutil.rmtree(target, ignore_errors=True)
    seconds = skopeo(
        "copy", "--src-tls-verify=false", f"docker://{server.host}/{repository}:v1", f"dir:{target}"
    )
    manifest = (target / "manifest.json").read_bytes()
    pulled = sorted(p.name for p in target.iterdir() if p.name not in ("manifest.json", "version"))
    expected = sorted(sha256(b).removeprefix("sha256:") for b in [image.config, *image.layers])
    if manifest != image.manifest or pulled != expected:
        raise BenchError("the image pulled is not the image pushed")
    shutil.rmtree(target, ignore_errors=True)
    return seconds


def run(ctx: Context, servers: list[Server]) -> None:
    s = ctx.settings
    push_key, pull_key = keys(ctx)
    for rep in range(s.reps):
        image = Image.big(f"skopeo-{rep}", s.skopeo_layers, s.skopeo_layer_size)
        source = image.write_dir(ctx.workdir / f"skopeo-{rep}")
        repository = f"bench/skopeo-{rep}"
        shift = rep % max(len(servers), 1)
        order = [*servers[shift:], *servers[:shift]]
        for key, action in ((push_key, "push"), (pull_key, "pull")):
            for server in order:
                if ctx.results.failed(push_key, server.name) or ctx.results.failed(
                    key, server.name
                ):
                    continue
                try:
                    if action == "push":
                        seconds = push(server, source, repository)
                    else:
                        seconds = pull(server, repository, ctx.workdir / "pulled", image)
                except BenchError as error:
                    ctx.log(f"{server.name} {action}: {error}")
                    ctx.results.fail(key, server.name, str(error))
                    continue
                ctx.results.add(key, server.name, seconds)
                ctx.results.record(
                    scenario=SCENARIO,
                    case=key.case,
                    server=server.name,
                    rep=rep,
                    seconds=seconds,
                    bytes=image.size,
                )
                ctx.log(f"rep {rep + 1} {key.case} {server.name}: {seconds:.2f} s")
        shutil.rmtree(source, ignore_errors=True)
