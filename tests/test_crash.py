"""kill -9 during pushes through both APIs and the server's garbage collections (every 0.2 s,
a grace period of 0.5 s), twice, then a restart: every acknowledged image is there and intact,
every blob's bytes hash to its name, and after a collection nothing is left in the blob store or
``uploads/`` that no image or live session needs (docs/garbage-collection.md)."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from pathlib import Path

import httpx
import pytest
from botocore.config import Config

from conftest import ProcessServer, Server, ServerFactory
from openecr.cli.main import main
from test_gc import upload
from test_persistence import kill_hard

pytestmark = pytest.mark.slow  # SIGKILL needs a process

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG = "application/vnd.docker.container.image.v1+json"
ROUNDS = 2
PUSHING_SECONDS = 5.0


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER,
            "config": {"mediaType": CONFIG, "size": len(config), "digest": sha256(config)},
            "layers": [{"mediaType": LAYER, "size": len(b), "digest": sha256(b)} for b in layers],
        }
    ).encode()


def ecr_pusher(server: Server, repo: str, acked: dict[str, bytes], stop: threading.Event) -> None:
    ecr = server.client(config=Config(retries={"total_max_attempts": 1}))
    i = 0
    while not stop.is_set():
        i += 1
        config = json.dumps({"ecr": i, "n": os.urandom(4).hex()}).encode()
        layers = [os.urandom(64 * 1024), os.urandom(1024)]
        try:
            for blob in (config, *layers):
                upload(ecr, repo, blob)
            raw = manifest_of(config, layers)
            ecr.put_image(repositoryName=repo, imageManifest=raw.decode(), imageTag=f"e{i}")
        except ecr.exceptions.LayersNotFoundException:
            continue  # a collection took a blob first: refused cleanly
        except Exception:  # the server died
            return
        acked[f"{repo}@{sha256(raw)}"] = raw


def v2_pusher(server: Server, repo: str, acked: dict[str, bytes], stop: threading.Event) -> None:
    with httpx.Client(base_url=server.endpoint, timeout=30) as v2:
        i = 0
        while not stop.is_set():
            i += 1
            config = json.dumps({"v2": i, "n": os.urandom(4).hex()}).encode()
            layers = [os.urandom(96 * 1024)]
            try:
                for blob in (config, *layers):
                    started = v2.post(f"/v2/{repo}/blobs/uploads/")
                    location = started.headers["location"]
                    half = len(blob) // 2
                    patched = v2.patch(location, content=blob[:half])
                    v2.put(
                        patched.headers["location"],
                        params={"digest": sha256(blob)},
                        content=blob[half:],
                    )
                raw = manifest_of(config, layers)
                put = v2.put(
                    f"/v2/{repo}/manifests/v{i}", content=raw, headers={"Content-Type": DOCKER}
                )
            except Exception:  # the server died
                return
            if put.status_code == 201:
                acked[f"{repo}@{sha256(raw)}"] = raw


def stored_blobs(data_dir: Path) -> dict[str, Path]:
    return {
        f"{p.parent.parent.name}:{p.name}": p
        for p in (data_dir / "blobs").rglob("*")
        if p.is_file()
    }


def referenced(server: Server, repositories: list[str]) -> set[str]:
    ecr = server.client()
    found: set[str] = set()
    for repo in repositories:
        paginator = ecr.get_paginator("list_images")
        ids = [i for page in paginator.paginate(repositoryName=repo) for i in page["imageIds"]]
        for start in range(0, len(ids), 100):
            images = ecr.batch_get_image(repositoryName=repo, imageIds=ids[start : start + 100])
            for image in images["images"]:
                doc = json.loads(image["imageManifest"])
                found |= {doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])}
    return found


def test_kill_9_during_pushes_and_collections(
    make_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = tmp_path / "crash"
    repositories = ["crash/ecr", "crash/v2"]
    acked: dict[str, bytes] = {}
    for round_ in range(ROUNDS):
        server: ProcessServer = make_server(
            "--gc-interval", "0.2", "--gc-grace", "0.5", data_dir=data_dir, process=True
        )
        if round_ == 0:
            for repo in repositories:
                server.client().create_repository(repositoryName=repo)
        stop = threading.Event()
        threads = [
            threading.Thread(target=ecr_pusher, args=(server, "crash/ecr", acked, stop)),
            threading.Thread(target=ecr_pusher, args=(server, "crash/ecr", acked, stop)),
            threading.Thread(target=v2_pusher, args=(server, "crash/v2", acked, stop)),
            threading.Thread(target=v2_pusher, args=(server, "crash/v2", acked, stop)),
        ]
        for thread in threads:
            thread.start()
        time.sleep(PUSHING_SECONDS)
        kill_hard(server)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        server.stop()

    server = make_server("--gc-interval", "0", data_dir=data_dir, process=True)
    # every acknowledged image is there, byte for byte, with every blob
    with httpx.Client(base_url=server.endpoint, timeout=30) as v2:
        for key, raw in acked.items():
            repo, digest = key.split("@")
            got = v2.get(f"/v2/{repo}/manifests/{digest}", headers={"Accept": DOCKER})
            assert got.status_code == 200 and got.content == raw, key
            doc = json.loads(raw)
            for blob in [doc["config"], *doc["layers"]]:
                content = v2.get(f"/v2/{repo}/blobs/{blob['digest']}")
                assert content.status_code == 200 and sha256(content.content) == blob["digest"]
    for name, path in stored_blobs(data_dir).items():
        assert sha256(path.read_bytes()) == name, path
    before = sum(p.stat().st_size for p in stored_blobs(data_dir).values())

    # a collection (while the server runs) leaves exactly what the images need
    capsys.readouterr()
    args = ["gc", "--data-dir", str(data_dir), "--grace", "0", "--upload-expiry", "0"]
    assert main(args) == 0
    out = capsys.readouterr().out
    needed = referenced(server, repositories)
    assert set(stored_blobs(data_dir)) == needed
    assert list((data_dir / "uploads").iterdir()) == []
    after = sum(p.stat().st_size for p in stored_blobs(data_dir).values())
    print(
        f"crash: {ROUNDS} kills, {len(acked)} acknowledged images intact "
        f"({sum(k.startswith('crash/v2') for k in acked)} through /v2), {before} blob bytes "
        f"after the crashes, {after} after a collection ({out.strip()})"
    )
