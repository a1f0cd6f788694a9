"""An upload resumed on another replica after the one writing it was killed (SIGKILL) in the
middle of a chunk: the session (in PostgreSQL and the bucket) continues from the end of the
last acknowledged chunk; the killed chunk's bytes are dropped; the dead replica's hold on the
session lapses after the writer lease (20 s; a live writer renews it every 5 s), and until
then another writer is refused with 416 ``RANGE_INVALID`` "Another request is writing ..."."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import httpx
import pytest

from conftest import ServerFactory

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_an_upload_resumes_on_another_replica_after_its_writer_was_killed(
    make_server: ServerFactory, s3_blob_store: str, postgres_url: str
) -> None:
    args = ["--blob-store", s3_blob_store, "--s3-path-style", "--database-url", postgres_url]
    one, two = (make_server(*args, process=True) for _ in range(2))
    one.client().create_repository(repositoryName="team/resume")
    data = os.urandom(20 * MiB + 5)
    acknowledged = 6 * MiB
    location = httpx.post(f"{one.endpoint}/v2/team/resume/blobs/uploads/").headers["Location"]
    first = httpx.patch(
        one.endpoint + location.removeprefix(one.endpoint),
        content=data[:acknowledged],
        headers={"Content-Range": f"0-{acknowledged - 1}"},
        timeout=60,
    )
    assert first.status_code == 202, first.text
    location = first.headers["Location"].removeprefix(one.endpoint)

    def killed_midway() -> Iterator[bytes]:
        """The rest, streamed; replica one is killed after 11 MiB (two parts in the bucket)."""
        for offset in range(acknowledged, len(data), MiB):
            if offset - acknowledged == 11 * MiB:
                time.sleep(2)  # the replica puts the parts it has
                assert one.process is not None
                one.process.kill()
                one.process.wait()
            yield data[offset : offset + MiB]
            time.sleep(0.05)

    with pytest.raises(httpx.TransportError):
        httpx.patch(one.endpoint + location, content=killed_midway(), timeout=60)

    # through replica two: the session is where the last acknowledged chunk left it
    status = httpx.get(two.endpoint + location)
    assert status.status_code == 204
    assert status.headers["Range"] == f"0-{acknowledged - 1}"
    refused: list[httpx.Response] = []
    deadline = time.monotonic() + 60
    resume_at = acknowledged + MiB  # the first resumed chunk is small: it may be refused
    while True:
        resumed = httpx.patch(
            two.endpoint + location,
            content=data[acknowledged:resume_at],
            headers={"Content-Range": f"{acknowledged}-{resume_at - 1}"},
            timeout=60,
        )
        if resumed.status_code == 202 or time.monotonic() > deadline:
            break
        refused.append(resumed)
        time.sleep(1)
    assert resumed.status_code == 202, resumed.text
    resumed = httpx.patch(
        two.endpoint + resumed.headers["Location"].removeprefix(two.endpoint),
        content=data[resume_at:],
        headers={"Content-Range": f"{resume_at}-{len(data) - 1}"},
        timeout=60,
    )
    assert resumed.status_code == 202, resumed.text
    # until the dead writer's lease lapsed, the session was refused to another writer
    for response in refused:
        assert response.status_code == 416, response.text
        assert response.json()["errors"][0]["code"] == "RANGE_INVALID"
        assert "Another request is writing" in response.json()["errors"][0]["message"]
    path = resumed.headers["Location"].removeprefix(two.endpoint)
    done = httpx.put(two.endpoint + path, params={"digest": sha256(data)}, timeout=60)
    assert done.status_code == 201, done.text
    got = httpx.get(
        f"{two.endpoint}/v2/team/resume/blobs/{sha256(data)}", follow_redirects=True, timeout=60
    )
    assert got.content == data
