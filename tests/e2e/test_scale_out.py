"""Two stateless replicas on one PostgreSQL and one S3 bucket (SeaweedFS), behind haproxy on
loopback: skopeo pushes through replica 1 and pulls through replica 2 (blob GETs redirected to
presigned S3 URLs), and pushes and pulls through the load balancer, whose round robin sends
the requests of one upload to both replicas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ProcessServer, ServerFactory, free_port
from e2e.conftest import SKOPEO, run
from e2e.images import MiB, big_image, small_image
from storage_servers import Haproxy

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture
def replicas(
    make_server: ServerFactory, postgres_url: str, s3_blob_store: str, tmp_path: Path
) -> list[ProcessServer]:
    """Two ``openecr serve`` processes sharing the database, the bucket and (for the signing
    secret and key) one data dir."""
    args = ["--database-url", postgres_url, "--blob-store", s3_blob_store, "--s3-path-style"]
    shared = tmp_path / "shared"
    return [make_server(*args, data_dir=shared, process=True) for _ in range(2)]


@pytest.fixture
def balancer(replicas: list[ProcessServer]) -> Iterator[str]:
    """haproxy in front of the replicas (round robin, health-checked; the one ``make cluster``
    starts); its host:port."""
    proxy = Haproxy(free_port(), [f"127.0.0.1:{r.port}" for r in replicas]).start()
    yield proxy.host
    proxy.remove()


def copy(source: str, destination: str) -> None:
    run(
        [
            SKOPEO,
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--preserve-digests",
            source,
            destination,
        ],
        timeout=600,
    )


def test_push_through_one_replica_pull_through_another(
    replicas: list[ProcessServer], balancer: str, tmp_path: Path, seaweedfs: object
) -> None:
    one, two = replicas
    one.client().create_repository(repositoryName="scale/app")
    image = big_image("scale-out", oci=True, layers=2, layer_size=12 * MiB)
    source = image.write_oci_layout(tmp_path / "src", "v1")
    copy(f"oci:{source}:v1", f"docker://127.0.0.1:{one.port}/scale/app:v1")

    # replica 2 serves what replica 1 took; its blob GETs are redirects to the bucket
    layer = image.layers[1].digest
    redirect = httpx.get(f"{two.endpoint}/v2/scale/app/blobs/{layer}")
    assert redirect.status_code == 307
    assert redirect.headers["Location"].startswith(seaweedfs.endpoint)  # type: ignore[attr-defined]
    out = tmp_path / "out"
    copy(f"docker://127.0.0.1:{two.port}/scale/app:v1", f"oci:{out}:v1")
    pulled = {p.name: p.read_bytes() for p in (out / "blobs" / "sha256").iterdir()}
    for digest, blob in image.blobs().items():
        assert pulled[digest.removeprefix("sha256:")] == blob
    assert pulled[image.digest.removeprefix("sha256:")] == image.manifest

    # through the load balancer: the requests of each upload alternate between the replicas
    small = small_image("scale-out-lb", oci=True)
    copy(
        f"oci:{small.write_oci_layout(tmp_path / 'small', 'v2')}:v2",
        f"docker://{balancer}/scale/app:v2",
    )
    again = tmp_path / "again"
    copy(f"docker://{balancer}/scale/app:v2", f"oci:{again}:v2")
    pulled = {p.name: p.read_bytes() for p in (again / "blobs" / "sha256").iterdir()}
    assert pulled[small.digest.removeprefix("sha256:")] == small.manifest
    listed = one.client().describe_images(repositoryName="scale/app")["imageDetails"]
    assert sorted(tag for d in listed for tag in d.get("imageTags", [])) == ["v1", "v2"]
