"""``python -m bench.instructions``: CPU instructions per request, counted by valgrind, for the
small requests whose timings this machine blurs.

Wall-clock and CPU-time rates of one build moved by up to 40 % between processes and between
minutes on the shared 2-CPU machine the benchmarks run on, so a same-run ratio of two builds
can come out either way. Instructions executed are the same from run to run. This runs
openecr's app (the stack ``openecr serve`` builds: the shutdown drain, the access log to
/dev/null, metrics) in one process under ``valgrind --tool=callgrind``, with SQLite and file
stores in a fresh data directory, loads a repository of 100 images through the ECR API, warms
every case up, then runs each case's requests between two calls of ``os.getppid()``:
callgrind's ``--dump-before=getppid`` cuts its count there, so each case gets the instructions
(every thread's, user space) of exactly its requests. The HTTP server's parsing (uvicorn,
httptools) is not included: it is the same for both builds.

``--baseline-src DIR`` counts another build too (its ``src``, e.g. a ``git worktree`` of an
older commit) in the same way, and ``--no-pull-times`` adds this build with pull-time
recording off; the table gives each one's instructions over this build's (above 1: this build
executes fewer). A "close" row is the runtime's shutdown, which writes the pull times noted
during the cases. Results go to ``bench-results/instructions.md`` and ``instructions.json``.

    python -m bench.instructions [--baseline-src ../base/src] [--no-pull-times] [--scale 1.0]

About 5 minutes per build (valgrind runs Python about 50 times slower); builds run in parallel.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import RESULTS

TARGET = "AmazonEC2ContainerRegistry_V20150921."
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = f"{OCI_MANIFEST}, {DOCKER_MANIFEST}".encode()
IMAGES = 100
# case -> requests counted (scaled by --scale)
CASES = {
    "BatchGetImage, 1 id": 1000,
    "BatchGetImage, 100 ids": 60,
    "/v2 manifest GET by tag": 1000,
    "/v2 manifest HEAD by digest": 1000,
    "PutImage, a new image": 200,
}
REPO = "bench/instructions"


class _Client:
    """Calls into an ASGI app as uvicorn would, checking each answer's status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def request(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1:5000"), *headers],
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 5000),
            "state": {},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    async def ecr(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(params).encode()
        headers = [
            (b"x-amz-target", (TARGET + operation).encode()),
            (b"content-type", b"application/x-amz-json-1.1"),
            (b"content-length", str(len(body)).encode()),
            (
                b"authorization",
                b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/ecr/aws4_request, "
                b"SignedHeaders=host, Signature=0",
            ),
        ]
        status, answer = await self.request("POST", "/", headers, body)
        if status != 200:
            raise RuntimeError(f"{operation}: {status} {answer[:200]!r}")
        doc: dict[str, Any] = json.loads(answer)
        if doc.get("failures"):
            raise RuntimeError(f"{operation}: {doc['failures']}")
        return doc

    async def v2(self, method: str, path: str) -> None:
        headers = [(b"accept", ACCEPT), (b"authorization", b"Basic QVdTOmJlbmNo")]
        status, answer = await self.request(method, path, headers)
        if status != 200:
            raise RuntimeError(f"{method} {path}: {status} {answer[:200]!r}")


def _manifest(config_digest: str, size: int, index: int) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": size,
            },
            "layers": [],
            "annotations": {"bench.index": str(index)},
        }
    )


def _build(data_dir: Path, pull_times: bool) -> tuple[Any, Any]:
    """(app, runtime) as ``openecr serve`` builds them, on whichever build is importable."""
    import dataclasses
    import logging

    from openecr.bootstrap import build_app, build_runtime
    from openecr.config import Config

    fields = {f.name for f in dataclasses.fields(Config)}
    options: dict[str, Any] = {"data_dir": data_dir}
    for name, value in (("pull_times", pull_times), ("lifecycle_interval", 0), ("gc_interval", 0)):
        if name in fields:
            options[name] = value
    try:  # the access log as `openecr serve` installs it, into /dev/null
        from openecr.api.observe import AccessLogHandler

        handler = AccessLogHandler()
        # line-buffered, as stderr is: every line is written at once
        handler.setStream(open(os.devnull, "w", buffering=1))  # noqa: SIM115
        access = logging.getLogger("openecr.access")
        access.handlers[:] = [handler]
        access.setLevel(logging.INFO)
        access.propagate = False
    except ImportError:  # a build without one
        pass
    runtime = build_runtime(Config(**options))
    app = build_app(runtime)
    try:
        from openecr.api.draining import Drain, DrainingApp

        app = DrainingApp(app, Drain())
    except ImportError:
        pass
    return app, runtime


async def _child(scale: float, pull_times: bool) -> None:
    """Runs inside valgrind: load, warm up, then each case between two ``os.getppid()``."""
    data_dir = Path(tempfile.mkdtemp(prefix="openecr-instructions-"))
    app, runtime = _build(data_dir, pull_times)
    client = _Client(app)
    await client.ecr("CreateRepository", {"repositoryName": REPO})
    config = b'{"architecture":"amd64","os":"linux"}'
    digest = "sha256:" + hashlib.sha256(config).hexdigest()
    upload = await client.ecr("InitiateLayerUpload", {"repositoryName": REPO})
    part = {
        "repositoryName": REPO,
        "uploadId": upload["uploadId"],
        "partFirstByte": 0,
        "partLastByte": len(config) - 1,
        "layerPartBlob": base64.b64encode(config).decode(),
    }
    await client.ecr("UploadLayerPart", part)
    done = {"repositoryName": REPO, "uploadId": upload["uploadId"], "layerDigests": [digest]}
    await client.ecr("CompleteLayerUpload", done)
    digests = []
    for i in range(IMAGES):
        image = {"repositoryName": REPO, "imageManifest": _manifest(digest, len(config), i)}
        image["imageTag"] = f"t{i}"
        digests.append((await client.ecr("PutImage", image))["image"]["imageId"]["imageDigest"])
    new_images = iter(range(IMAGES, 10**9))

    async def one_id(i: int) -> None:
        ids = [{"imageTag": f"t{i % IMAGES}"}]
        await client.ecr("BatchGetImage", {"repositoryName": REPO, "imageIds": ids})

    async def hundred_ids(i: int) -> None:
        ids = [{"imageTag": f"t{(i + k) % IMAGES}"} for k in range(100)]
        await client.ecr("BatchGetImage", {"repositoryName": REPO, "imageIds": ids})

    async def get(i: int) -> None:
        await client.v2("GET", f"/v2/{REPO}/manifests/t{i % IMAGES}")

    async def head(i: int) -> None:
        await client.v2("HEAD", f"/v2/{REPO}/manifests/{digests[i % IMAGES]}")

    async def put(_i: int) -> None:
        index = next(new_images)
        params = {"repositoryName": REPO, "imageManifest": _manifest(digest, len(config), index)}
        await client.ecr("PutImage", {**params, "imageTag": f"n{index}"})

    runs: list[Callable[[int], Awaitable[None]]] = [one_id, hundred_ids, get, head, put]
    for run in runs:  # warm: every code path loaded and every cache filled
        for i in range(20):
            await run(i)
    for run, count in zip(runs, CASES.values(), strict=True):
        os.getppid()  # callgrind cuts here
        for i in range(max(1, round(count * scale))):
            await run(i)
    os.getppid()
    runtime.close()
    os.getppid()
    shutil.rmtree(data_dir, ignore_errors=True)


def _count(label: str, src: Path | None, scale: float, pull_times: bool, work: Path) -> list[int]:
    """Instructions of each part (setup, the cases in order, close) of one build's run."""
    out = work / f"{label}.callgrind"
    env = dict(os.environ, PYTHONHASHSEED="0")
    repo = Path(__file__).resolve().parent.parent
    paths = [str(src)] if src is not None else []
    env["PYTHONPATH"] = os.pathsep.join([*paths, str(repo), env.get("PYTHONPATH", "")])
    command = [
        "valgrind",
        "--tool=callgrind",
        "--dump-before=getppid",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        "--scale",
        str(scale),
    ]
    if not pull_times:
        command.append("--no-pull-times")
    log = work / f"{label}.log"
    with log.open("w") as handle:
        return_code = subprocess.run(
            command, env=env, stdout=handle, stderr=subprocess.STDOUT
        ).returncode
    if return_code != 0:
        raise SystemExit(f"{label}: valgrind run failed, see {log}")
    parts = []
    for path in sorted(work.glob(f"{label}.callgrind.*"), key=lambda p: int(p.suffix[1:])):
        found = re.search(r"^summary: (\d+)", path.read_text(), re.MULTILINE)
        parts.append(int(found.group(1)) if found else 0)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--baseline-src", type=Path, help="another build's src directory")
    parser.add_argument(
        "--no-pull-times", action="store_true", help="add this build, pull times off"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="requests per case, scaled")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.scale, not args.no_pull_times))
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    builds: dict[str, tuple[Path | None, bool]] = {"openecr": (None, True)}
    if args.baseline_src is not None:
        builds["baseline"] = (args.baseline_src.resolve(), True)
    if args.no_pull_times:
        builds["no-pull-times"] = (None, False)
    work = Path(tempfile.mkdtemp(prefix="openecr-callgrind-"))
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:  # two CPUs
        futures = {
            label: pool.submit(_count, label, src, args.scale, pull_times, work)
            for label, (src, pull_times) in builds.items()
        }
        parts = {label: future.result() for label, future in futures.items()}
    shutil.rmtree(work, ignore_errors=True)
    names = ["setup", *CASES, "close"]
    counts = {name: max(1, round(n * args.scale)) for name, n in CASES.items()}
    table: dict[str, dict[str, float]] = {}
    for label, values in parts.items():
        # the dumps: before each case's first getppid (setup), after each case, after close
        by_part = dict(zip(names, values, strict=False))
        table[label] = {
            name: by_part[name] / counts.get(name, 1) for name in names[1:] if name in by_part
        }
    others = [label for label in table if label != "openecr"]
    lines = [
        "# openecr: CPU instructions per request (valgrind callgrind, in process)",
        "",
        f"Build: {_version()}; requests per case: "
        + ", ".join(f"{name} {count}" for name, count in counts.items())
        + f"; repository of {IMAGES} images. `vs X`: X's instructions over openecr's (above 1:"
        " openecr executes fewer).",
        "",
        "| case | " + " | ".join(table) + " | " + " | ".join(f"vs {o}" for o in others) + " |",
        "|---|" + "---:|" * (len(table) + len(others)),
    ]
    for name in names[1:]:
        row = [f"{table[label].get(name, 0):,.0f}" for label in table]
        mine = table["openecr"].get(name, 0)
        ratios = [f"{table[o].get(name, 0) / mine:.2f}x" if mine else "" for o in others]
        lines.append(f"| {name} | " + " | ".join(row + ratios) + " |")
    lines.append("")
    lines.append('"close" is one row for the whole run: the shutdown, with its pull-time flush.')
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instructions.md").write_text(text)
    (args.out / "instructions.json").write_text(json.dumps({"counts": counts, "table": table}))


def _version() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    main()
