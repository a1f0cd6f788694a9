"""``python -m bench.profile``: where openecr spends its time under the benchmark's load.

Starts openecr alone, loads the benchmark's images (a 10,000-image repository and the ``/v2``
repository), then for each path (BatchGetImage, manifest GET, PutImage of new images) runs wrk
against it while py-spy samples the server, and
prints the functions with the most samples, by own time and by inclusive time. The collapsed
stacks go to ``bench-results/profile-<case>.txt`` for flame graphs (``flamegraph.pl``)."""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from bench import wrk
from bench.clients import Ecr
from bench.common import (
    AUTHORIZATION,
    CACHE,
    ECR_CONTENT_TYPE,
    ECR_TARGET,
    RESULTS,
    BenchError,
    Settings,
    pinned_cpus,
)
from bench.context import Context
from bench.images import Bulk, tag
from bench.scenarios import batch, manifests, writes
from bench.servers import Openecr, Server

PY_SPY = CACHE / "tools" / "bin" / "py-spy"
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _package(name: str) -> str:
    """The top-level package (or stdlib module) a ``file:function`` frame belongs to."""
    where = name.split(":", 1)[0]
    if where.startswith("<"):
        return where
    return where.split("/", 1)[0].removesuffix(".py")


def summarize(collapsed: Path, top: int) -> str:
    """Sample shares from py-spy raw output: own time by package and by function, and
    inclusive time of openecr's own functions (file:function)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = []
        for frame in stack.split(";"):
            match = FRAME.match(frame)
            name = frame
            if match is not None:
                where = match.group("file")
                where = where.split("site-packages/")[-1].split("/src/")[-1]
                where = re.sub(r"^.*/lib/python3\.\d+/", "", where)
                name = f"{where}:{match.group('function')}"
            frames.append(name)
        own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    if total == 0:
        return "no samples\n"
    packages: collections.Counter[str] = collections.Counter()
    for name, n in own.items():
        packages[_package(name)] += n
    ours = collections.Counter(
        {k: v for k, v in inclusive.items() if k.startswith("openecr/") and "cli/" not in k}
    )

    def share(counter: collections.Counter[str], limit: int) -> list[str]:
        return [f"  {100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(limit)]

    lines = [f"{total} samples", "", "own time by package:", *share(packages, 12)]
    lines += ["", "own time by function:", *share(own, top)]
    lines += ["", "inclusive time of openecr's functions:", *share(ours, top)]
    return "\n".join(lines) + "\n"


def profile(
    server: Server, script: Path, connections: int, seconds: int, out: Path, cpus: tuple[int, ...]
) -> Path:
    collapsed = out.with_suffix(".txt")
    record = ["record", "--pid", str(server.pid), "--duration", str(seconds), "--rate", "200"]
    spy = subprocess.Popen(
        [str(PY_SPY), *record, "--format", "raw", "--output", str(collapsed), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    load = threading.Thread(
        target=wrk.run,
        args=(server.host, script),
        kwargs={"connections": connections, "duration": seconds, "cpus": cpus},
    )
    load.start()
    _, errors = spy.communicate(timeout=seconds + 60)
    load.join()
    if spy.returncode != 0 or not collapsed.exists():
        raise BenchError(f"py-spy failed: {errors[-500:]}")
    return collapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--images", type=int, default=10_000, help="repository size")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if not PY_SPY.exists():
        print(f"missing {PY_SPY}: run `make bench-profile`", file=sys.stderr)
        return 2
    cpus = pinned_cpus()
    workdir = Path(tempfile.mkdtemp(prefix="openecr-profile-"))
    settings = Settings.full()
    ctx = Context(settings, cpus, workdir, ("openecr",))
    args.out.mkdir(parents=True, exist_ok=True)
    server = Openecr(workdir, cpus).start()
    try:
        ctx.log(f"loading {args.images} images")
        batch.load(server, (args.images,), Bulk.make())
        manifests.load(server, settings.manifest_images, Bulk.make())
        ecr_headers = {
            "Content-Type": ECR_CONTENT_TYPE,
            "X-Amz-Target": ECR_TARGET + "BatchGetImage",
            "Authorization": AUTHORIZATION,
        }
        cases = {}
        for ids in settings.batch_ids:
            requests = [wrk.Request("POST", "/", b) for b in batch.bodies(args.images, ids)]
            path = workdir / f"batch-{ids}.lua"
            cases[f"batch-get-image-{ids}"] = (
                wrk.write_script(path, requests, ecr_headers),
                settings.batch_connections,
            )
        gets = [
            wrk.Request("GET", f"/v2/{manifests.REPOSITORY}/manifests/{tag(i)}")
            for i in range(settings.manifest_images)
        ]
        cases["manifest-get"] = (
            wrk.write_script(workdir / "get.lua", gets, {"Accept": manifests.ACCEPT}),
            settings.manifest_connections,
        )
        putting = "bench/profile-writes"  # PutImage: every request a new image
        Ecr.make_repository(server.endpoint, putting, Bulk.make().blobs)
        cases["put-image"] = (writes.script(ctx, putting, Bulk.make()), writes.CLIENTS)
        for name, (script, connections) in cases.items():
            ctx.log(f"profiling {name} for {args.seconds} s")
            collapsed = profile(
                server, script, connections, args.seconds, args.out / f"profile-{name}", cpus
            )
            summary = summarize(collapsed, args.top)
            (args.out / f"profile-{name}-summary.txt").write_text(summary)
            print(f"## {name}\n\n{summary}")
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
