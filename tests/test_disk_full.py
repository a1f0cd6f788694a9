"""A full data directory (a small tmpfs): both APIs answer an error that names the cause (ECR
ServerException, /v2 507), nothing partial is stored, one log line instead of a traceback per
request, and writes work again once space returns. Needs root to mount a tmpfs."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import ServerFactory

pytestmark = pytest.mark.slow  # mount and umount are processes

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_full_data_directory(
    make_server: ServerFactory, small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server(data_dir=small_disk / "data")
    ecr = server.client()
    ecr.create_repository(repositoryName="full")
    caplog.set_level(logging.ERROR)

    big = os.urandom(6 * MiB)
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    v2 = httpx.post(
        f"{server.endpoint}/v2/full/blobs/uploads/", params={"digest": digest}, content=big
    )
    assert v2.status_code == 507
    [error] = v2.json()["errors"]
    assert error["code"] == "UNKNOWN" and "no space left in the data directory" in error["message"]

    upload = ecr.initiate_layer_upload(repositoryName="full")["uploadId"]
    with pytest.raises(ClientError) as caught:
        ecr.upload_layer_part(
            repositoryName="full",
            uploadId=upload,
            partFirstByte=0,
            partLastByte=len(big) - 1,
            layerPartBlob=big,
        )
    assert caught.value.response["Error"]["Code"] == "ServerException"
    assert "no space left in the data directory" in caught.value.response["Error"]["Message"]
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    # nothing partial: no blob, the failed part dropped, the session as it was
    assert httpx.head(f"{server.endpoint}/v2/full/blobs/{digest}").status_code == 404
    blobs = small_disk / "data" / "blobs"
    assert not any(p.is_file() for p in blobs.rglob("*"))
    sessions = [p for p in (small_disk / "data" / "uploads").iterdir() if p.suffix != ".token"]
    assert sessions and all(p.stat().st_size == 0 for p in sessions)
    storage_lines = [r for r in caplog.records if r.name == "openecr.storage"]
    assert len(storage_lines) <= 1  # at most one line a minute for the same cause
    assert not [r for r in caplog.records if r.exc_info]  # no traceback

    # the failed writes gave their space back: smaller writes work again by themselves
    small = os.urandom(MiB // 2)
    small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
    done = httpx.post(
        f"{server.endpoint}/v2/full/blobs/uploads/", params={"digest": small_digest}, content=small
    )
    assert done.status_code == 201
    part = ecr.upload_layer_part(
        repositoryName="full",
        uploadId=upload,
        partFirstByte=0,
        partLastByte=len(small) - 1,
        layerPartBlob=small,
    )
    assert part["lastByteReceived"] == len(small) - 1
