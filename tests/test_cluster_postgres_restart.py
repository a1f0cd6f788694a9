"""PostgreSQL restarted under load, with three replicas behind haproxy: requests in flight fail
with the protocols' clear errors (ECR ``ServerException``, /v2 503 with an OCI ``errors``
document; never a bare 500 or a traceback), the replicas reconnect by themselves (the same
processes serve afterwards), and every acknowledged image is intact."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ProcessServer, ServerFactory, free_port
from storage_servers import Haproxy, PostgresCluster

pytestmark = pytest.mark.slow

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORY = "cluster/load"


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass
class Pushed:
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]


@dataclass
class Load:
    """What the clients saw: acknowledged images, and every error answer."""

    acknowledged: list[Pushed] = field(default_factory=list)
    v2_errors: list[tuple[str, int, bytes]] = field(default_factory=list)
    ecr_errors: list[dict[str, Any]] = field(default_factory=list)
    other: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def image(worker: int, n: int) -> Pushed:
    layer = f"layer {worker}-{n} ".encode() * 64
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": sha256(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return Pushed(f"w{worker}-{n}", manifest, {sha256(config): config, sha256(layer): layer})


def push_v2(endpoint: str, load: Load, worker: int) -> None:
    """Push small images through /v2 (single-POST blobs, then the manifest) until stopped; an
    image counts as acknowledged when its manifest PUT answered 201."""
    n = 0
    with httpx.Client(base_url=endpoint, timeout=120) as client:  # a loaded machine
        while not load.stop.is_set():
            n += 1
            pushed = image(worker, n)
            requests = [
                ("POST", f"/v2/{REPOSITORY}/blobs/uploads/?digest={digest}", data, 201)
                for digest, data in pushed.blobs.items()
            ]
            requests.append(
                ("PUT", f"/v2/{REPOSITORY}/manifests/{pushed.tag}", pushed.manifest, 201)
            )
            for method, url, body, expected in requests:
                try:
                    response = client.request(
                        method,
                        url,
                        content=body,
                        headers={"Content-Type": OCI_MANIFEST}
                        if method == "PUT"
                        else {"Content-Type": "application/octet-stream"},
                    )
                except httpx.HTTPError as error:
                    with load.lock:
                        load.other.append(f"{method} {url}: {error!r}")
                    break
                if response.status_code != expected:
                    with load.lock:
                        load.v2_errors.append(
                            (f"{method} {url}", response.status_code, response.content)
                        )
                    time.sleep(0.05)
                    break
            else:
                with load.lock:
                    load.acknowledged.append(pushed)


def call_ecr(endpoint: str, load: Load) -> None:
    """ECR API reads and PutImage (a new tag on an acknowledged manifest) until stopped; no
    client retries, so every error answer is seen."""
    ecr = boto3.client(
        "ecr",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, read_timeout=120),
    )
    n = 0
    while not load.stop.is_set():
        n += 1
        try:
            ecr.describe_repositories(repositoryNames=[REPOSITORY])
            with load.lock:
                source = load.acknowledged[-1] if load.acknowledged else None
            if source is not None:
                ecr.put_image(
                    repositoryName=REPOSITORY,
                    imageManifest=source.manifest.decode(),
                    imageTag=f"ecr-{n}",
                )
                with load.lock:
                    load.acknowledged.append(Pushed(f"ecr-{n}", source.manifest, source.blobs))
        except ClientError as error:
            with load.lock:
                load.ecr_errors.append(
                    {
                        "status": error.response["ResponseMetadata"]["HTTPStatusCode"],
                        **error.response["Error"],
                    }
                )
            time.sleep(0.05)
        except Exception as error:  # a connection error, an unparsable answer
            with load.lock:
                load.other.append(repr(error))
    ecr.close()


def test_postgresql_restarted_under_load(
    make_server: ServerFactory, postgres: PostgresCluster, s3_blob_store: str
) -> None:
    url = postgres.database()
    args = ["--database-url", url, "--blob-store", s3_blob_store, "--s3-path-style"]
    replicas: list[ProcessServer] = [make_server(*args, process=True) for _ in range(3)]
    pids = [r.process.pid for r in replicas if r.process is not None]
    balancer = Haproxy(free_port(), [f"127.0.0.1:{r.port}" for r in replicas]).start()
    try:
        replicas[0].client().create_repository(repositoryName=REPOSITORY)
        load = Load()
        workers = [
            threading.Thread(target=push_v2, args=(balancer.endpoint, load, i)) for i in range(2)
        ]
        workers.append(threading.Thread(target=call_ecr, args=(balancer.endpoint, load)))
        for worker in workers:
            worker.start()
        try:
            deadline = time.monotonic() + 60
            while len(load.acknowledged) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            before = len(load.acknowledged)
            assert before >= 6, "the load did not get going"
            postgres.restart()  # fast shutdown: sessions and transactions in flight are cut
            restarted = len(load.acknowledged)
            deadline = time.monotonic() + 60
            while len(load.acknowledged) < restarted + 10 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            load.stop.set()
            for worker in workers:
                worker.join(timeout=60)
        assert len(load.acknowledged) >= restarted + 10, "the replicas did not reconnect"

        # the failures were the protocols' clear errors, nothing else
        assert load.other == []
        assert load.v2_errors or load.ecr_errors, "no request was in flight during the restart"
        for request, status, body in load.v2_errors:
            assert status == 503, (request, status, body)
            errors = json.loads(body)["errors"]
            assert errors and "metadata database is unavailable" in errors[0]["message"], body
        for error in load.ecr_errors:
            assert error["Code"] == "ServerException", error
            assert "metadata database is unavailable" in error["Message"], error
        # the same processes serve: they reconnected by themselves
        assert [r.process.pid for r in replicas if r.process and r.process.poll() is None] == pids

        # every acknowledged image is intact (the balancer spreads the reads over the replicas)
        with httpx.Client(base_url=balancer.endpoint) as client:
            for pushed in load.acknowledged:
                got = client.get(
                    f"/v2/{REPOSITORY}/manifests/{pushed.tag}", headers={"Accept": OCI_MANIFEST}
                )
                assert got.status_code == 200, (pushed.tag, got.text)
                assert got.content == pushed.manifest
        for pushed in load.acknowledged[:: max(1, len(load.acknowledged) // 10)]:
            for digest, data in pushed.blobs.items():
                blob = httpx.get(
                    f"{balancer.endpoint}/v2/{REPOSITORY}/blobs/{digest}", follow_redirects=True
                )
                assert blob.content == data
    finally:
        balancer.remove()
        postgres.drop(url)
