"""Group commit on SQLite (backends/sql/group_commit.py): PutImages that run at the same time
share one transaction and one fsync; one that fails rolls back alone and gets its own error,
the others are stored; every acknowledged image survives kill -9."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import InProcessServer, ProcessServer, ServerFactory, upload_blob
from openecr.backends.sql.group_commit import GroupCommitter
from openecr.backends.sql.store import SqlMetadataStore
from test_persistence import kill_hard

OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ABSENT = "sha256:" + "e" * 64


def manifest(config: str, layer: str, note: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {"mediaType": OCI_CONFIG, "size": 1, "digest": config},
            "layers": [{"mediaType": OCI_LAYER, "size": 1, "digest": layer}],
            "annotations": {"note": note},
        }
    )


def committer(server: InProcessServer) -> GroupCommitter:
    store = server.runtime.metadata
    assert isinstance(store, SqlMetadataStore) and store._group is not None
    return store._group


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_one_group_with_failing_puts_answers_each_on_its_own(
    make_server: ServerFactory,
) -> None:
    server = make_server("--gc-interval", "0")
    assert isinstance(server, InProcessServer)
    ecr = server.client()
    ecr.create_repository(repositoryName="group/mutable")
    ecr.create_repository(repositoryName="group/immutable", imageTagMutability="IMMUTABLE")
    blobs = {}
    for repo in ("group/mutable", "group/immutable"):
        blobs[repo] = (upload_blob(ecr, repo, b"{}"), upload_blob(ecr, repo, b"layer"))
    first = {repo: manifest(*blobs[repo], "first") for repo in blobs}
    for repo, raw in first.items():
        ecr.put_image(repositoryName=repo, imageManifest=raw, imageTag="v1")

    mutable = blobs["group/mutable"]
    puts: dict[str, dict[str, Any]] = {
        "new": {"repositoryName": "group/mutable", "imageTag": "a"},
        "again": {"repositoryName": "group/mutable", "imageTag": "v1"},  # same image, same tag
        "immutable": {"repositoryName": "group/immutable", "imageTag": "v1"},  # moves v1
        "missing layer": {"repositoryName": "group/mutable", "imageTag": "m"},
        "other": {"repositoryName": "group/mutable", "imageTag": "d"},
    }
    puts["new"]["imageManifest"] = manifest(*mutable, "new")
    puts["again"]["imageManifest"] = first["group/mutable"]
    puts["immutable"]["imageManifest"] = manifest(*blobs["group/immutable"], "second")
    puts["missing layer"]["imageManifest"] = manifest(mutable[0], ABSENT, "missing")
    puts["other"]["imageManifest"] = manifest(*mutable, "other")
    answers: dict[str, str] = {}
    clients = {name: server.client() for name in puts}

    def put(name: str) -> None:
        try:
            clients[name].put_image(**puts[name])
            answers[name] = "ok"
        except ClientError as error:
            answers[name] = error.response["Error"]["Code"]

    group = committer(server)
    groups, writers = group.groups, group.writers
    # hold the writer's turn until every PutImage waits for it: they all join one group
    with server.runtime.metadata.write():
        threads = [threading.Thread(target=put, args=(name,)) for name in puts]
        for thread in threads:
            thread.start()
        wait_for(lambda: group._waiting == len(puts), "every PutImage waits for its turn")
    for thread in threads:
        thread.join(timeout=60)
    assert answers == {
        "new": "ok",
        "again": "ImageAlreadyExistsException",
        "immutable": "ImageTagAlreadyExistsException",
        "missing layer": "LayersNotFoundException",
        "other": "ok",
    }
    assert (group.groups - groups, group.writers - writers) == (1, len(puts) + 1)

    # what succeeded is stored, what failed left nothing behind
    def tags(repo: str) -> dict[str, str]:
        ids = ecr.list_images(repositoryName=repo)["imageIds"]
        return {i["imageTag"]: i["imageDigest"] for i in ids if "imageTag" in i}

    got = ecr.batch_get_image(
        repositoryName="group/mutable", imageIds=[{"imageTag": "a"}, {"imageTag": "d"}]
    )
    assert sorted(i["imageManifest"] for i in got["images"]) == sorted(
        [puts["new"]["imageManifest"], puts["other"]["imageManifest"]]
    )
    assert set(tags("group/mutable")) == {"v1", "a", "d"}
    immutable = ecr.batch_get_image(
        repositoryName="group/immutable", imageIds=[{"imageTag": "v1"}]
    )["images"]
    assert [i["imageManifest"] for i in immutable] == [first["group/immutable"]]
    assert len(ecr.list_images(repositoryName="group/immutable")["imageIds"]) == 1


def test_a_failed_group_fails_every_member_and_the_next_write_works(
    make_server: ServerFactory,
) -> None:
    """A writer after which the database rolled the whole transaction back (as SQLite does on
    some errors, such as a full disk) fails the writers before it in its group with its error;
    nothing of the group is stored; the next writers start a fresh group on a fresh
    connection."""
    server = make_server("--gc-interval", "0")
    assert isinstance(server, InProcessServer)
    ecr = server.client()
    ecr.create_repository(repositoryName="group/broken")
    config = upload_blob(ecr, "group/broken", b"{}")
    layer = upload_blob(ecr, "group/broken", b"x")
    ecr.put_image(
        repositoryName="group/broken", imageManifest=manifest(config, layer, "w"), imageTag="w"
    )
    group = committer(server)
    store = server.runtime.metadata
    assert isinstance(store, SqlMetadataStore)
    breaking = ValueError("this writer fails after the database rolled everything back")
    raised: list[BaseException] = []

    def breaker() -> None:
        try:
            with store.write() as tx:
                tx.conn.exec_driver_sql("ROLLBACK")
                raise breaking
        except BaseException as error:
            raised.append(error)

    with pytest.raises(ValueError) as first, store.write() as tx:
        tx.conn.exec_driver_sql("DELETE FROM tags")  # the group's first writer: succeeds
        thread = threading.Thread(target=breaker)
        thread.start()
        wait_for(lambda: group._waiting == 1, "the second writer waits for its turn")
    thread.join(timeout=60)
    assert first.value is breaking and raised == [breaking]

    answers: dict[str, str] = {}

    def put(tag: str) -> None:
        try:
            server.client().put_image(
                repositoryName="group/broken",
                imageManifest=manifest(config, layer, tag),
                imageTag=tag,
            )
            answers[tag] = "ok"
        except ClientError as error:
            answers[tag] = error.response["Error"]["Code"]

    threads = [threading.Thread(target=put, args=(t,)) for t in ("x1", "x2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert answers == {"x1": "ok", "x2": "ok"}
    listed = ecr.list_images(repositoryName="group/broken")["imageIds"]
    assert {i.get("imageTag") for i in listed} == {"w", "x1", "x2"}


@pytest.mark.slow  # SIGKILL needs a process
def test_acknowledged_concurrent_puts_survive_kill_9(make_server: ServerFactory) -> None:
    server: ProcessServer = make_server("--gc-interval", "0", process=True)
    setup = server.client()
    setup.create_repository(repositoryName="group/crash")
    config = upload_blob(setup, "group/crash", b"{}")
    layer = upload_blob(setup, "group/crash", b"layer")
    acked: dict[str, str] = {}
    stop = threading.Event()
    enough = threading.Event()

    def pusher(n: int) -> None:
        ecr = server.client(config=Config(retries={"total_max_attempts": 1}))
        i = 0
        while not stop.is_set():
            tag = f"p{n}-{i}"
            try:
                ecr.put_image(
                    repositoryName="group/crash",
                    imageManifest=manifest(config, layer, tag),
                    imageTag=tag,
                )
            except Exception:  # the server died
                return
            acked[tag] = manifest(config, layer, tag)
            if len(acked) >= 200:
                enough.set()
            i += 1

    threads = [threading.Thread(target=pusher, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        assert enough.wait(timeout=120)
        kill_hard(server)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    server.start()
    ecr = server.client()
    tags = list(acked)
    for start in range(0, len(tags), 100):
        got = ecr.batch_get_image(
            repositoryName="group/crash",
            imageIds=[{"imageTag": t} for t in tags[start : start + 100]],
        )
        assert got["failures"] == []
        notes = {json.loads(i["imageManifest"])["annotations"]["note"] for i in got["images"]}
        assert notes == set(tags[start : start + 100])
    # and the server takes new pushes
    ecr.put_image(
        repositoryName="group/crash", imageManifest=manifest(config, layer, "after"), imageTag="z"
    )
