"""Pull times on PostgreSQL: the background writer of ``lastRecordedPullTime`` never waits for a
lock a client's write holds (it skips those images and writes them at its next flush), so it
can never deadlock with a push, a delete or another replica's writer (docs/decisions.md)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, ServerFactory, make_image
from lifecycle_seed import DOCKER, manifest
from openecr.backends.sql import SqlMetadataStore
from openecr.service.images import ImageService
from openecr.service.pulls import PullRecorder
from openecr.service.repositories import NewRepository, RepositoryService

pytestmark = pytest.mark.slow  # a PostgreSQL server is a process

ACCOUNT = "123456789012"
PULLED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_the_pull_time_writer_never_waits_for_a_clients_lock(postgres_url: str) -> None:
    store = SqlMetadataStore(postgres_url)
    try:
        RepositoryService(store).create(ACCOUNT, NewRepository(name="team/app"))
        images = ImageService(store, lenient_manifests=True)
        pushed = [
            images.store_manifest(ACCOUNT, "team/app", manifest(n), DOCKER, n, None)
            for n in ("a", "b")
        ]
        repo = pushed[0].repository
        a, b = (p.image.digest for p in pushed)
        recorder = PullRecorder(store, clock=lambda: PULLED)
        with store.read() as tx:  # the images as a pull reads them: with their keys
            stored = [tx.get_image(repo.id, digest) for digest in (a, b)]
        recorder.note(repo.id, {i.seq: i.digest for i in stored if i is not None}, ACCOUNT)
        written: list[int] = []
        writer = threading.Thread(target=lambda: written.append(recorder.flush()))
        with store.write() as tx:
            # a client's write holds b (as UpdateImageStorageClass, a BatchDeleteImage or a
            # restoring push do) while the writer records a and b ...
            tx.set_storage_class(repo.id, b, "ARCHIVE", PULLED)
            writer.start()
            writer.join(timeout=60)
            assert not writer.is_alive(), "the pull-time writer waits for the client's lock"
            # ... and then takes a: had the writer kept a while waiting for b, one of the two
            # would now be aborted as a deadlock (the client's answer: 503)
            tx.set_storage_class(repo.id, a, "ARCHIVE", PULLED)
        assert written == [1]  # a; b was skipped ...
        assert recorder.flush() == 1  # ... and is written once free: no pull time is lost
        with store.read() as tx:
            for digest in (a, b):
                image = tx.get_image(repo.id, digest)
                assert image is not None and image.last_pulled_at == PULLED
        recorder.close()
    finally:
        store.close()


def _failures(errors: Counter[str], what: str, call: Any, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)
    except ClientError as error:
        code = error.response["Error"]["Code"]
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
        if status >= 500:
            errors[f"{what}: {status} {code}: {error.response['Error'].get('Message')}"] += 1
        return None


def test_pushes_pulls_and_deletes_on_two_replicas_never_answer_503(
    make_server: ServerFactory, postgres_url: str
) -> None:
    """Two replicas on one database, each with its pull-time writer: pushes (tags moving),
    pulls of many images at once (in opposite orders on the two replicas) and deletes of
    several images together run concurrently; no request fails and every pulled image that
    is still there has a pull time no older than its first pull."""
    replicas = [make_server("--database-url", postgres_url) for _ in range(2)]
    clients = [r.client() for r in replicas]
    names = ["load/a", "load/b"]
    stored: dict[str, list[str]] = {}
    for name in names:
        clients[0].create_repository(repositoryName=name)
        stored[name] = []
        for i in range(12):
            raw = make_image(clients[0], name, seed=f"{name}-{i}")
            answer = clients[0].put_image(
                repositoryName=name, imageManifest=raw.decode(), imageTag=f"t{i}"
            )
            stored[name].append(answer["image"]["imageId"]["imageDigest"])
    errors: Counter[str] = Counter()
    first_pull: dict[tuple[str, str], float] = {}
    deleted: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def pusher(client: Any, name: str) -> None:
        for i in range(8):
            raw = make_image(client, name, seed=f"{name}-more-{i}-{id(client)}")
            _failures(
                errors,
                "PutImage",
                client.put_image,
                repositoryName=name,
                imageManifest=raw.decode(),
                imageTag=f"t{i % 4}",
            )

    def puller(client: Any, reverse: bool) -> None:
        for _ in range(10):
            for name in names:
                digests = sorted(stored[name], reverse=reverse)
                started = time.time()
                got = _failures(
                    errors,
                    "BatchGetImage",
                    client.batch_get_image,
                    repositoryName=name,
                    imageIds=[{"imageDigest": d} for d in digests],
                )
                with lock:
                    for image in got["images"] if got else []:
                        first_pull.setdefault((name, image["imageId"]["imageDigest"]), started)

    def deleter(client: Any) -> None:
        for name in names:
            doomed = sorted(stored[name], reverse=True)[:6:2]
            with lock:
                deleted.update((name, d) for d in doomed)
            _failures(
                errors,
                "BatchDeleteImage",
                client.batch_delete_image,
                repositoryName=name,
                imageIds=[{"imageDigest": d} for d in doomed],
            )
            time.sleep(0.5)

    threads = [
        threading.Thread(target=pusher, args=(clients[0], names[0])),
        threading.Thread(target=pusher, args=(clients[1], names[1])),
        threading.Thread(target=puller, args=(clients[0], False)),
        threading.Thread(target=puller, args=(clients[1], True)),
        threading.Thread(target=deleter, args=(clients[1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert not any(t.is_alive() for t in threads)
    for replica in replicas:
        replica.stop()  # each writes what it noted
    assert not errors, dict(errors)

    check: Server = make_server("--database-url", postgres_url)
    ecr = check.client()
    for name in names:
        images = ecr.describe_images(repositoryName=name, maxResults=1000)["imageDetails"]
        times = {i["imageDigest"]: i.get("lastRecordedPullTime") for i in images}
        for (repo, digest), started in first_pull.items():
            if repo != name or (repo, digest) in deleted or digest not in times:
                continue
            recorded = times[digest]
            assert recorded is not None, f"the pull of {repo}@{digest} was lost"
            assert recorded.timestamp() >= started - 1, (repo, digest, recorded, started)
