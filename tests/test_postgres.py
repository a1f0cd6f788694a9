"""The registry on PostgreSQL (a private cluster started by the ``postgres`` fixture): the API
tests that matter most for a second database, the schema of older PostgreSQL databases, and two
servers on one database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import create_engine, inspect

import test_persistence
from conftest import ServerFactory, make_image, upload_blob
from openecr.backends.sql import SqlMetadataStore
from openecr.bootstrap import open_metadata
from openecr.config import ConfigError
from openecr.domain.model import Repository

pytestmark = pytest.mark.slow  # a PostgreSQL server is a process


def on_postgres(make_server: ServerFactory, url: str) -> ServerFactory:
    def factory(*args: str, **kwargs: Any) -> Any:
        return make_server("--database-url", url, *args, **kwargs)

    return factory  # type: ignore[return-value]


def test_everything_survives_a_restart_on_postgresql(
    make_server: ServerFactory, postgres_url: str
) -> None:
    test_persistence.test_everything_survives_a_restart(on_postgres(make_server, postgres_url))


def test_plain_postgresql_urls_use_psycopg(postgres_url: str) -> None:
    for scheme in ("postgresql", "postgres"):
        store = open_metadata(postgres_url.replace("postgresql+psycopg", scheme))
        try:
            with store.read() as tx:
                assert tx.list_repositories("123456789012", None, 10) == []
        finally:
            store.close()
    with pytest.raises(ConfigError, match="psycopg 3"):
        open_metadata(postgres_url.replace("+psycopg", "+psycopg2"))


def test_a_registry_id_column_of_an_older_database_is_widened(postgres_url: str) -> None:
    """Databases made before regions have ``registry_id VARCHAR(12)``; a region's registry key
    (``<account>.<region>``) needs more."""
    dsn = postgres_url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE repositories (id SERIAL PRIMARY KEY, registry_id VARCHAR(12) NOT NULL,"
            " name VARCHAR(256) NOT NULL, created_at DOUBLE PRECISION NOT NULL,"
            " tag_mutability VARCHAR(32) NOT NULL, exclusion_filters TEXT NOT NULL,"
            " scan_on_push BOOLEAN NOT NULL, encryption_type VARCHAR(16) NOT NULL,"
            " kms_key VARCHAR(2048), CONSTRAINT uq_repository_name UNIQUE (registry_id, name))"
        )
        conn.execute(
            "INSERT INTO repositories (registry_id, name, created_at, tag_mutability,"
            " exclusion_filters, scan_on_push, encryption_type)"
            " VALUES ('123456789012', 'old/app', 1.0, 'MUTABLE', '[]', false, 'AES256')"
        )
    store = SqlMetadataStore(postgres_url)
    try:
        with store.write() as tx:
            created = tx.create_repository(
                Repository(0, "123456789012.eu-west-1", "new/app", datetime.now(UTC))
            )
        with store.read() as tx:
            assert tx.get_repository("123456789012", "old/app") is not None
            assert tx.get_repository("123456789012.eu-west-1", "new/app") == created
    finally:
        store.close()
    engine = create_engine(postgres_url)
    try:
        columns = {c["name"]: c["type"] for c in inspect(engine).get_columns("repositories")}
        assert columns["registry_id"].length == 64  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_two_servers_on_one_database_see_each_others_writes(
    make_server: ServerFactory, postgres_url: str, tmp_path: Path
) -> None:
    """Two servers on one PostgreSQL database and one blob directory: a push through one is a
    pull through the other; racing tag writers through both leave one consistent tag."""
    shared = tmp_path / "shared"
    one = make_server("--database-url", postgres_url, data_dir=shared)
    two = make_server("--database-url", postgres_url, data_dir=shared)
    a, b = one.client(), two.client()
    a.create_repository(repositoryName="team/app", imageTagMutability="IMMUTABLE")
    manifest = make_image(a, "team/app", seed="two", layers=2)
    a.put_image(repositoryName="team/app", imageManifest=manifest.decode(), imageTag="v1")
    got = b.batch_get_image(repositoryName="team/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    for digest in test_persistence.blobs_of(manifest):
        assert test_persistence.download(b, "team/app", digest)
    # IMMUTABLE: of many writers of one tag through both servers, exactly one wins
    images = [make_image(a, "team/app", seed=f"race{i}") for i in range(8)]
    outcomes: list[str] = []

    def put(client: Any, body: bytes) -> None:
        try:
            client.put_image(repositoryName="team/app", imageManifest=body.decode(), imageTag="x")
            outcomes.append("ok")
        except ClientError as error:
            outcomes.append(error.response["Error"]["Code"])

    threads = [
        threading.Thread(target=put, args=((a, b)[i % 2], body)) for i, body in enumerate(images)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["ImageTagAlreadyExistsException"] * 7 + ["ok"]
    # a blob uploaded through one server is linked for the other's /v2 API
    digest = upload_blob(b, "team/app", b"a layer from two")
    response = httpx.head(f"{one.endpoint}/v2/team/app/blobs/{digest}")
    assert response.status_code == 200


def waiting_for_a_lock(url: str) -> int:
    """How many sessions of the database wait for a lock."""
    dsn = url.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_writes_lock_their_repository_not_the_database(postgres_url: str) -> None:
    """A write transaction holding one repository does not stop writes to another; a second
    write to the same repository waits for the first to commit."""
    store = SqlMetadataStore(postgres_url)
    now = datetime.now(UTC)
    try:
        with store.write() as tx:
            one = tx.create_repository(Repository(0, "123456789012", "one", now))
            tx.create_repository(Repository(0, "123456789012", "two", now))
        holding, release = threading.Event(), threading.Event()
        order: list[str] = []

        def hold_one() -> None:
            with store.write() as tx:
                assert tx.get_repository("123456789012", "one") is not None
                tx.set_tag(one.id, "held", "sha256:" + "a" * 64, now)
                holding.set()
                release.wait(60)
                order.append("first committed")

        def second_write_to_one() -> None:
            with store.write() as tx:
                assert tx.get_repository("123456789012", "one") is not None
                order.append(f"second sees {tx.get_tag(one.id, 'held')}")

        holder = threading.Thread(target=hold_one)
        holder.start()
        assert holding.wait(60)
        with store.write() as tx:  # another repository: not blocked by the holder
            two = tx.get_repository("123456789012", "two")
            assert two is not None
            tx.set_tag(two.id, "free", "sha256:" + "b" * 64, now)
        second = threading.Thread(target=second_write_to_one)
        second.start()
        while waiting_for_a_lock(postgres_url) == 0:  # the second writer of "one" waits
            assert second.is_alive()
        release.set()
        holder.join(60)
        second.join(60)
        assert order == ["first committed", f"second sees sha256:{'a' * 64}"]
    finally:
        store.close()


def test_a_database_that_is_down_answers_clear_errors_and_is_reconnected(
    make_server: ServerFactory, postgres: Any, tmp_path: Path
) -> None:
    """PostgreSQL stopped under a running server: ECR answers ServerException naming the cause,
    /v2 answers 503 (never a traceback); once it is back, the server reconnects by itself."""
    url = postgres.database()
    server = make_server("--database-url", url)
    ecr = server.client()
    ecr.create_repository(repositoryName="team/app")
    manifest = make_image(ecr, "team/app", seed="down")
    ecr.put_image(repositoryName="team/app", imageManifest=manifest.decode(), imageTag="v1")
    with postgres.stopped():
        for _ in range(6):  # pooled and idle connections all fail the same way
            with pytest.raises(ClientError) as caught:
                ecr.describe_repositories()
            error = caught.value.response["Error"]
            assert error["Code"] == "ServerException"
            assert "metadata database is unavailable" in error["Message"]
            response = httpx.get(f"{server.endpoint}/v2/team/app/manifests/v1")
            assert response.status_code == 503
            assert response.json()["errors"][0]["code"] == "UNKNOWN"
            assert "metadata database is unavailable" in response.json()["errors"][0]["message"]
    assert ecr.describe_repositories()["repositories"][0]["repositoryName"] == "team/app"
    got = ecr.batch_get_image(repositoryName="team/app", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    response = httpx.get(
        f"{server.endpoint}/v2/team/app/manifests/v1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert response.status_code == 200
    postgres.drop(url)


def test_background_work_takes_a_lock_shared_by_replicas(postgres_url: str) -> None:
    """Garbage collection's lock on PostgreSQL is an advisory lock: one replica (here: one
    store of two) holds it, the other skips; it is free again when the holder is done."""
    one, two = SqlMetadataStore(postgres_url), SqlMetadataStore(postgres_url)
    try:
        first, second = one.locks(), two.locks()
        assert first is not None and second is not None
        with first.hold("gc", wait=False) as held:
            assert held
            with second.hold("gc", wait=False) as other:
                assert not other
            with second.hold("other", wait=False) as unrelated:
                assert unrelated
        with second.hold("gc", wait=False) as held:
            assert held
    finally:
        one.close()
        two.close()


def test_replicas_on_postgresql_share_their_secrets(
    make_server: ServerFactory, postgres_url: str, tmp_path: Path
) -> None:
    """Replicas with data dirs of their own: the URL-signing secret and the schema 1 key are in
    the database, so a layer URL one signs is good on the other."""
    blobs = (tmp_path / "blobs").absolute().as_uri()
    args = ["--database-url", postgres_url, "--blob-store", blobs]
    one = make_server(*args, data_dir=tmp_path / "one")
    two = make_server(*args, data_dir=tmp_path / "two")
    one.client().create_repository(repositoryName="team/app")
    digest = upload_blob(one.client(), "team/app", b"signed by one")
    url = one.client().get_download_url_for_layer(repositoryName="team/app", layerDigest=digest)[
        "downloadUrl"
    ]
    on_two = url.replace(one.endpoint, two.endpoint)
    assert httpx.get(on_two).content == b"signed by one"
    assert not (tmp_path / "one" / "secret.key").exists()
    assert not (tmp_path / "two" / "schema1-signing-key.pem").exists()
