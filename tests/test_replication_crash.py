"""A crash between a push's commit and everything after it loses no replication: the tasks are
queued in the push's own transaction (docs/replication.md, "The work queue").

Each push path (ECR PutImage, the /v2 manifest PUT, ``openecr image import``, a pull-through
cache's first pull) runs in a process whose ``ImageService`` is SIGKILLed the instant a push
into a ``crash/`` repository has committed, before any push listener runs (a ``sitecustomize``
injected with PYTHONPATH). A server restarted on the data then replicates the image."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import VENV_BIN, Server, ServerFactory, make_image
from openecr.cli.main import main

pytestmark = pytest.mark.slow  # SIGKILL needs a process

ACCOUNT = "123456789012"
DESTINATION = "us-west-2"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"

INJECTION = '''"""Crash injection (tests/test_replication_crash.py): SIGKILL the instant a push
into a crash/ repository has committed, before any push listener runs."""
import os
import signal

from openecr.service import images

_pushed = images.ImageService._pushed


def _crash(self, result):
    if result.changed and result.repository.name.startswith("crash/"):
        os.kill(os.getpid(), signal.SIGKILL)
    return _pushed(self, result)


images.ImageService._pushed = _crash
'''


def _injection(tmp_path: Path) -> dict[str, str]:
    directory = tmp_path / "inject"
    directory.mkdir(exist_ok=True)
    (directory / "sitecustomize.py").write_text(INJECTION)
    return {"PYTHONPATH": str(directory)}


def _prepare(make_server: ServerFactory, data_dir: Path) -> Server:
    """A server on ``data_dir`` replicating every repository to another region."""
    server = make_server(data_dir=data_dir)
    server.client().put_replication_configuration(
        replicationConfiguration={
            "rules": [{"destinations": [{"region": DESTINATION, "registryId": ACCOUNT}]}]
        }
    )
    return server


def _crashing_server(make_server: ServerFactory, data_dir: Path, tmp_path: Path) -> Server:
    return make_server(data_dir=data_dir, process=True, env=_injection(tmp_path))


def _wait_killed(server: Server) -> None:
    process = getattr(server, "process", None)
    assert process is not None
    assert process.wait(timeout=60) == -9, "the push did not reach the crash point"
    server.process = None  # type: ignore[attr-defined]


def _replicated(server: Server, repo: str, digest: str) -> list[dict[str, str]]:
    """The image's replication statuses (queued with the push: there at once) once settled
    (the restarted worker drains the queue)."""
    ecr = server.client()
    queued = ecr.describe_image_replication_status(
        repositoryName=repo, imageId={"imageDigest": digest}
    )["replicationStatuses"]
    assert queued, f"the replication of {repo}@{digest} was lost in the crash"
    deadline = time.monotonic() + 60
    while True:
        statuses: list[dict[str, str]] = ecr.describe_image_replication_status(
            repositoryName=repo, imageId={"imageDigest": digest}
        )["replicationStatuses"]
        if statuses and all(s["status"] != "IN_PROGRESS" for s in statuses):
            return statuses
        assert time.monotonic() < deadline, f"{repo}@{digest} never replicated: {statuses}"
        time.sleep(0.05)


def _at_destination(server: Server, repo: str, digest: str) -> bytes:
    got = server.client(region_name=DESTINATION).batch_get_image(
        repositoryName=repo, imageIds=[{"imageDigest": digest}]
    )["images"]
    assert got, f"{repo}@{digest} is not at the destination"
    return str(got[0]["imageManifest"]).encode()


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _put_image(server: Server, raw: bytes) -> None:
    with contextlib.suppress(Exception):  # the server dies answering
        server.client().put_image(repositoryName="crash/app", imageManifest=raw.decode())


def _v2_put(server: Server, raw: bytes) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server dies answering
        httpx.put(
            f"{server.endpoint}/v2/crash/app/manifests/v1",
            content=raw,
            headers={"Content-Type": DOCKER},
            timeout=30,
        )


@pytest.mark.parametrize("push", [_put_image, _v2_put], ids=["PutImage", "v2-manifest-put"])
def test_a_crash_right_after_a_push_commits_still_replicates(
    make_server: ServerFactory, tmp_path: Path, push: Callable[[Server, bytes], None]
) -> None:
    data_dir = tmp_path / "source"
    setup = _prepare(make_server, data_dir)
    client = setup.client()
    client.create_repository(repositoryName="crash/app")
    raw = make_image(client, "crash/app", seed="crash")
    setup.stop()

    crashing = _crashing_server(make_server, data_dir, tmp_path)
    push(crashing, raw)
    _wait_killed(crashing)

    server = make_server(data_dir=data_dir)
    digest = _digest(raw)
    assert [s["status"] for s in _replicated(server, "crash/app", digest)] == ["COMPLETE"]
    assert _at_destination(server, "crash/app", digest) == raw


def test_a_crash_right_after_an_import_commits_still_replicates(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "source"
    setup = _prepare(make_server, data_dir)
    client = setup.client()
    for name in ("team/src", "crash/app"):
        client.create_repository(repositoryName=name)
    raw = make_image(client, "team/src", seed="import")
    client.put_image(repositoryName="team/src", imageManifest=raw.decode(), imageTag="v1")
    archive = tmp_path / "image.tar"
    argv = ["image", "export", "team/src:v1", "-o", str(archive), "--data-dir", str(data_dir)]
    assert main(argv) == 0
    setup.stop()

    imported = subprocess.run(
        [
            str(VENV_BIN / "openecr"),
            "image",
            "import",
            str(archive),
            "--repository-name",
            "crash/app",
            "--data-dir",
            str(data_dir),
        ],
        env={**os.environ, **_injection(tmp_path)},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert imported.returncode == -9, imported.stderr

    server = make_server(data_dir=data_dir)
    digest = _digest(raw)
    assert [s["status"] for s in _replicated(server, "crash/app", digest)] == ["COMPLETE"]
    assert _at_destination(server, "crash/app", digest) == raw


def test_a_crash_right_after_a_pull_through_cache_write_still_replicates(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    upstream = make_server()
    source: Any = upstream.client()
    source.create_repository(repositoryName="library/app")
    raw = make_image(source, "library/app", seed="upstream")
    source.put_image(repositoryName="library/app", imageManifest=raw.decode(), imageTag="v1")
    data_dir = tmp_path / "mirror"
    setup = _prepare(make_server, data_dir)
    setup.client().create_pull_through_cache_rule(
        ecrRepositoryPrefix="crash", upstreamRegistryUrl=f"http://127.0.0.1:{upstream.port}"
    )
    setup.stop()

    crashing = _crashing_server(make_server, data_dir, tmp_path)
    # the first pull caches the image: the mirror dies as that write commits
    with contextlib.suppress(Exception):
        crashing.client().batch_get_image(
            repositoryName="crash/library/app", imageIds=[{"imageTag": "v1"}]
        )
    _wait_killed(crashing)

    server = make_server(data_dir=data_dir)
    digest = _digest(raw)
    # queued with the cached image; it settles (its layers come when pulled: the copy may be
    # refused for them, but it was not lost)
    [status] = _replicated(server, "crash/library/app", digest)
    assert status["region"] == DESTINATION and status["registryId"] == ACCOUNT
