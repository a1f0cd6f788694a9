"""What the access log and the metrics cost per request, in CPU time.

Calls the app ``openecr serve`` builds (memory stores) directly through ASGI, N times per
variant, and reports process CPU microseconds per request: without the observation layer at
all, with metrics only (``--access-log off``), and with the text and JSON access logs (written
to /dev/null through the logging handler ``openecr serve`` installs). The difference between
two variants is what the feature costs; the network and uvicorn's parsing are not included
(they are the same for every variant).

    python -m bench.access_log_cost [--requests 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import statistics
import time
from typing import Any

from openecr.api.http import create_app
from openecr.api.observe import AccessLogHandler
from openecr.bootstrap import build_app, build_runtime
from openecr.config import Config

TARGET = "AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"


def _requests(kind: str) -> tuple[dict[str, Any], bytes]:
    if kind == "v2":
        headers = [(b"host", b"127.0.0.1:5000"), (b"user-agent", b"bench")]
        return {"method": "GET", "path": "/v2/", "headers": headers}, b""
    body = b"{}"
    headers = [
        (b"host", b"127.0.0.1:5000"),
        (b"x-amz-target", TARGET.encode()),
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"content-length", str(len(body)).encode()),
        (
            b"authorization",
            b"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261203/us-east-1/ecr/aws4_request, "
            b"SignedHeaders=host, Signature=0",
        ),
    ]
    return {"method": "POST", "path": "/", "headers": headers}, body


async def _drive(app: Any, kind: str, count: int) -> float:
    base, body = _requests(kind)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http",
        "query_string": b"",
        "raw_path": base["path"].encode(),
        "root_path": "",
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 5000),
        **base,
    }
    statuses: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    started = time.process_time()
    for _ in range(count):
        await app(dict(scope), receive, send)
    spent = time.process_time() - started
    assert set(statuses) == {200}, set(statuses)
    return spent / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    # what `openecr serve` installs (bootstrap.setup_logging), writing to /dev/null
    handler = AccessLogHandler()
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    access = logging.getLogger("openecr.access")
    access.handlers[:] = [handler]
    access.setLevel(logging.INFO)
    access.propagate = False
    config = Config(
        database_url="memory://", blob_store="memory://", lifecycle_interval=0, access_log="off"
    )
    runtime = build_runtime(config)
    variants = {
        "bare app (no metrics, no log)": create_app(runtime.registry),
        "metrics, access log off": build_app(runtime),
        "metrics, access log text": build_app(
            dataclasses.replace(runtime, config=dataclasses.replace(config, access_log="text"))
        ),
        "metrics, access log json": build_app(
            dataclasses.replace(runtime, config=dataclasses.replace(config, access_log="json"))
        ),
    }
    for kind in ("v2", "ecr"):
        label = "GET /v2/" if kind == "v2" else "POST / DescribeRepositories"
        print(f"{label}: CPU microseconds per request, median of {args.repeat} x {args.requests}")
        runs: dict[str, list[float]] = {name: [] for name in variants}
        for app in variants.values():
            asyncio.run(_drive(app, kind, 500))  # warm up
        for _ in range(args.repeat):  # variants interleaved: drifts of a shared machine spread
            for name, app in variants.items():
                runs[name].append(asyncio.run(_drive(app, kind, args.requests)))
        results = {name: statistics.median(values) for name, values in runs.items()}
        for name, value in results.items():
            print(f"  {name:32} {value:8.1f}")
        base = results["bare app (no metrics, no log)"]
        off = results["metrics, access log off"]
        print(f"  metrics cost:         {off - base:6.1f} us/request")
        for fmt in ("text", "json"):
            cost = results[f"metrics, access log {fmt}"] - off
            print(f"  access log {fmt} cost: {cost:6.1f} us/request")
    runtime.close()


if __name__ == "__main__":
    main()
