"""Replication to another openecr (``--replication-peers``): real server processes, boto3, the
aws CLI and skopeo; a peer down and back; kill -9 of the source mid-transfer, restart,
convergence, the upload resumed where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ProcessServer, ServerFactory, aws_json, free_port, make_image, upload_blob

pytestmark = pytest.mark.slow

SOURCE = "123456789012"
DEST = "210987654321"
KEY, SECRET = "AKIDREPLICATOR", "replicator-secret"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"


def _wait(condition: Callable[[], Any], what: str, timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _peer_files(tmp_path: Path, port: int, *, auth: bool = True) -> tuple[Path, Path]:
    """The destination's credentials file and the source's peers file naming it."""
    credentials = tmp_path / "dest-credentials.toml"
    credentials.write_text(
        f'[[credentials]]\naccess_key_id = "{KEY}"\nsecret_access_key = "{SECRET}"\n'
        f'account_id = "{DEST}"\n'
    )
    peers = tmp_path / "peers.toml"
    lines = [
        "[[peers]]",
        f'registry_id = "{DEST}"',
        'region = "eu-west-1"',
        f'endpoint = "http://127.0.0.1:{port}"',
    ]
    if auth:
        lines += [f'access_key_id = "{KEY}"', f'secret_access_key = "{SECRET}"']
    peers.write_text("\n".join(lines) + "\n")
    return credentials, peers


def _dest_client(server: ProcessServer) -> Any:
    return server.client(
        region_name="eu-west-1", aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )


def _configure(source: Any) -> None:
    source.put_replication_configuration(
        replicationConfiguration={
            "rules": [{"destinations": [{"region": "eu-west-1", "registryId": DEST}]}]
        }
    )


def _status(client: Any, repo: str, digest: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = client.describe_image_replication_status(
        repositoryName=repo, imageId={"imageDigest": digest}
    )["replicationStatuses"]
    return found


def _complete(client: Any, repo: str, digest: str, timeout: float = 120) -> None:
    def done() -> bool:
        statuses = _status(client, repo, digest)
        assert all(s["status"] != "FAILED" for s in statuses), statuses
        return bool(statuses) and all(s["status"] == "COMPLETE" for s in statuses)

    _wait(done, f"{digest} replicated", timeout)


def _manifest(client: Any, repo: str, **image_id: str) -> bytes | None:
    images = client.batch_get_image(registryId=DEST, repositoryName=repo, imageIds=[image_id])[
        "images"
    ]
    return str(images[0]["imageManifest"]).encode() if images else None


def test_images_reach_a_peer_with_templates_tags_and_no_blob_twice(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    credentials, peers = _peer_files(tmp_path, port)
    dest = ProcessServer(tmp_path / "dest", port, ["--credentials", str(credentials)])
    dest.start()
    try:
        dest_ecr = _dest_client(dest)
        dest_ecr.create_repository_creation_template(
            prefix="team",
            appliedFor=["REPLICATION"],
            imageTagMutability="MUTABLE",
            resourceTags=[{"Key": "site", "Value": "b"}],
            lifecyclePolicy=json.dumps(
                {
                    "rules": [
                        {
                            "rulePriority": 1,
                            "selection": {
                                "tagStatus": "untagged",
                                "countType": "imageCountMoreThan",
                                "countNumber": 5,
                            },
                            "action": {"type": "expire"},
                        }
                    ]
                }
            ),
        )
        source = make_server("--replication-peers", str(peers), "--log-level", "info", process=True)
        ecr = source.client()
        _configure(ecr)
        ecr.create_repository(repositoryName="team/app")
        raw = make_image(ecr, "team/app", seed="first", layers=2)
        first = ecr.put_image(repositoryName="team/app", imageManifest=raw.decode(), imageTag="v1")
        digest = first["image"]["imageId"]["imageDigest"]
        _complete(ecr, "team/app", digest)
        assert _manifest(dest_ecr, "team/app", imageTag="v1") == raw
        [repo] = dest_ecr.describe_repositories(registryId=DEST)["repositories"]
        assert repo["repositoryName"] == "team/app"
        tags = dest_ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
        assert tags == [{"Key": "site", "Value": "b"}]
        assert dest_ecr.get_lifecycle_policy(registryId=DEST, repositoryName="team/app")

        # a second image sharing the first one's layers: only its new blobs travel
        doc = json.loads(raw)
        config = json.dumps({"architecture": "amd64", "os": "linux", "seed": "second"}).encode()
        doc["config"] = {
            "mediaType": doc["config"]["mediaType"],
            "size": len(config),
            "digest": upload_blob(ecr, "team/app", config),
        }
        raw2 = json.dumps(doc).encode()
        second = ecr.put_image(
            repositoryName="team/app", imageManifest=raw2.decode(), imageTag="v1"
        )
        digest2 = second["image"]["imageId"]["imageDigest"]
        _complete(ecr, "team/app", digest2)
        assert _manifest(dest_ecr, "team/app", imageTag="v1") == raw2  # the tag moved
        assert _manifest(dest_ecr, "team/app", imageDigest=digest) == raw
        assert source.log is not None
        sent = re.findall(r"blob (sha256:[0-9a-f]{64}) \d+/\d+ bytes", source.log.read_text())
        layer_digests = [layer["digest"] for layer in doc["layers"]]
        assert set(sent) == {
            *layer_digests,
            json.loads(raw)["config"]["digest"],
            doc["config"]["digest"],
        }
        assert all(sent.count(d) == 2 for d in layer_digests)  # started and finished, once
        # the same layers in another repository are mounted at the peer, not sent again
        ecr.create_repository(repositoryName="team/other")
        for digest_ in [*layer_digests, doc["config"]["digest"]]:
            blob = dest_ecr.get_download_url_for_layer(
                registryId=DEST, repositoryName="team/app", layerDigest=digest_
            )["downloadUrl"]
            upload_blob(ecr, "team/other", httpx.get(blob, timeout=60).content)
        third = ecr.put_image(repositoryName="team/other", imageManifest=raw2.decode())
        _complete(ecr, "team/other", third["image"]["imageId"]["imageDigest"])
        assert _manifest(dest_ecr, "team/other", imageDigest=digest2) == raw2
        text = source.log.read_text()
        sent = re.findall(r"blob (sha256:[0-9a-f]{64}) \d+/\d+ bytes", text)
        assert all(sent.count(d) == 2 for d in layer_digests)
        assert all(f"mounted {d} into team/other" in text for d in layer_digests)

        # the aws CLI reads the status and the configuration
        status = aws_json(
            source,
            "describe-image-replication-status",
            "--repository-name",
            "team/app",
            "--image-id",
            "imageTag=v1",
        )
        assert status["replicationStatuses"] == [
            {"region": "eu-west-1", "registryId": DEST, "status": "COMPLETE"}
        ]
        described = aws_json(source, "describe-registry")
        assert described["replicationConfiguration"]["rules"][0]["destinations"] == [
            {"region": "eu-west-1", "registryId": DEST}
        ]
    finally:
        dest.stop()


def test_a_peer_down_is_retried_until_it_is_back(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    _, peers = _peer_files(tmp_path, port, auth=False)
    source = make_server("--replication-peers", str(peers), "--log-level", "info", process=True)
    ecr = source.client()
    _configure(ecr)
    ecr.create_repository(repositoryName="later")
    raw = make_image(ecr, "later", seed="later")
    digest = ecr.put_image(repositoryName="later", imageManifest=raw.decode(), imageTag="v1")[
        "image"
    ]["imageId"]["imageDigest"]
    assert source.log is not None
    _wait(lambda: "retrying in" in source.log.read_text(), "a failed try is logged")  # type: ignore[union-attr]
    assert _status(ecr, "later", digest)[0]["status"] == "IN_PROGRESS"
    dest = ProcessServer(tmp_path / "dest", port, [])
    dest.start()
    try:
        _complete(ecr, "later", digest)
        client = dest.client(region_name="eu-west-1")
        assert _manifest(client, "later", imageTag="v1") == raw
    finally:
        dest.stop()


def test_kill_9_mid_transfer_then_restart_resumes_and_converges(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    credentials, peers = _peer_files(tmp_path, port)
    dest = ProcessServer(tmp_path / "dest", port, ["--credentials", str(credentials)])
    dest.start()
    try:
        source = make_server(
            "--replication-peers",
            str(peers),
            "--replication-chunk",
            "65536",
            "--replication-lease",
            "2",
            "--log-level",
            "info",
            process=True,
        )
        ecr = source.client()
        _configure(ecr)
        ecr.create_repository(repositoryName="big")
        big = os.urandom(12 * 1024 * 1024)
        big_digest = upload_blob(ecr, "big", big)
        config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": len(config),
                    "digest": upload_blob(ecr, "big", config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                        "size": len(big),
                        "digest": big_digest,
                    }
                ],
            }
        ).encode()
        digest = ecr.put_image(
            repositoryName="big", imageManifest=manifest.decode(), imageTag="v1"
        )["image"]["imageId"]["imageDigest"]
        assert source.log is not None and source.process is not None
        log = source.log

        def midway() -> int:
            found = re.findall(rf"blob {big_digest} (\d+)/{len(big)} bytes", log.read_text())
            done = [int(n) for n in found if 0 < int(n) < len(big)]
            return max(done, default=0)

        _wait(midway, "the big blob is partly sent")
        source.process.kill()  # SIGKILL: no shutdown, the lease stays taken
        source.process.wait()
        sent_before = midway()
        dest_ecr = _dest_client(dest)
        assert _manifest(dest_ecr, "big", imageTag="v1") is None  # never a partial image

        source.start()  # the same data directory: the queue is still there
        ecr = source.client()
        _complete(ecr, "big", digest)
        text = source.log.read_text()
        resumed = re.search(rf"resuming the upload of {big_digest} .* at byte (\d+)", text)
        assert resumed is not None, text
        assert int(resumed.group(1)) >= sent_before > 0
        assert _manifest(dest_ecr, "big", imageTag="v1") == manifest
        url = dest_ecr.get_download_url_for_layer(
            registryId=DEST, repositoryName="big", layerDigest=big_digest
        )["downloadUrl"]
        body = httpx.get(url, timeout=60).content
        assert hashlib.sha256(body).hexdigest() == big_digest.removeprefix("sha256:")
    finally:
        dest.stop()


@pytest.mark.e2e
def test_skopeo_push_to_the_source_is_pulled_from_the_peer(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    from e2e.images import small_image

    port = free_port()
    _, peers = _peer_files(tmp_path, port, auth=False)
    # the peer's default registry is the destination: /v2 without a regional host reaches it
    dest = ProcessServer(tmp_path / "dest", port, ["--account-id", DEST, "--region", "eu-west-1"])
    dest.start()
    try:
        source = make_server("--replication-peers", str(peers), process=True)
        ecr = source.client()
        _configure(ecr)
        ecr.create_repository(repositoryName="skopeo/app")
        image = small_image("replicated", oci=True)
        layout = image.write_oci_layout(tmp_path / "layout", "v1")
        skopeo = ["skopeo", "--tmpdir", str(tmp_path)]
        subprocess.run(
            [
                *skopeo,
                "copy",
                "--dest-tls-verify=false",
                "--preserve-digests",
                f"oci:{layout}:v1",
                f"docker://127.0.0.1:{source.port}/skopeo/app:v1",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        _complete(ecr, "skopeo/app", image.digest)
        raw = subprocess.run(
            [
                *skopeo,
                "inspect",
                "--tls-verify=false",
                "--raw",
                f"docker://127.0.0.1:{port}/skopeo/app:v1",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        ).stdout
        assert raw == image.manifest
        out = tmp_path / "pulled"
        subprocess.run(
            [
                *skopeo,
                "copy",
                "--src-tls-verify=false",
                f"docker://127.0.0.1:{port}/skopeo/app@{image.digest}",
                f"oci:{out}:v1",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        for digest, blob in image.blobs().items():
            assert (out / "blobs" / "sha256" / digest.removeprefix("sha256:")).read_bytes() == blob
    finally:
        dest.stop()


def test_a_peer_refusing_the_credentials_fails_the_destination(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    port = free_port()
    credentials, peers = _peer_files(tmp_path, port)
    peers.write_text(peers.read_text().replace(SECRET, "not-the-secret"))
    dest = ProcessServer(tmp_path / "dest", port, ["--credentials", str(credentials)])
    dest.start()
    try:
        source = make_server("--replication-peers", str(peers), process=True)
        ecr = source.client()
        _configure(ecr)
        ecr.create_repository(repositoryName="refused")
        raw = make_image(ecr, "refused", seed="refused")
        digest = ecr.put_image(repositoryName="refused", imageManifest=raw.decode())["image"][
            "imageId"
        ]["imageDigest"]

        def failed() -> list[dict[str, str]] | None:
            statuses = _status(ecr, "refused", digest)
            return statuses if statuses and statuses[0]["status"] == "FAILED" else None

        assert _wait(failed, "the destination fails") == [
            {
                "region": "eu-west-1",
                "registryId": DEST,
                "status": "FAILED",
                "failureCode": "DESTINATION_REFUSED",
            }
        ]
    finally:
        dest.stop()


def test_worker_processes_share_the_queue(make_server: ServerFactory) -> None:
    source = make_server("--workers", "2", process=True)
    ecr = source.client()
    west = source.client(region_name="eu-west-1")
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [{"destinations": [{"region": "eu-west-1", "registryId": SOURCE}]}]
        }
    )
    ecr.create_repository(repositoryName="shared-queue")
    pushed = {}
    for i in range(8):
        raw = make_image(ecr, "shared-queue", seed=f"w{i}")
        put = ecr.put_image(
            repositoryName="shared-queue", imageManifest=raw.decode(), imageTag=f"t{i}"
        )
        pushed[f"t{i}"] = (raw, put["image"]["imageId"]["imageDigest"])
    for tag, (raw, digest) in pushed.items():
        _complete(ecr, "shared-queue", digest)
        got = west.batch_get_image(repositoryName="shared-queue", imageIds=[{"imageTag": tag}])
        assert str(got["images"][0]["imageManifest"]).encode() == raw
