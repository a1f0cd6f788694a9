"""oras (the ORAS Python SDK, PyPI `oras`): push and pull an OCI artifact by tag and by digest,
with monolithic (POST then PUT with the blob) and chunked (PATCH with Content-Range) uploads."""

from __future__ import annotations

import json
import random
from pathlib import Path

import oras.provider
import pytest

from e2e.conftest import Registry, unique
from e2e.images import MiB, sha256

ARTIFACT_TYPE = "application/vnd.openecr.e2e.data"
CHUNK = 1 * MiB


def _client(registry: Registry, config: Path) -> oras.provider.Registry:
    client = oras.provider.Registry(hostname=registry.host, insecure=True, auth_backend="basic")
    client.login(
        username="AWS",
        password=registry.token,
        hostname=registry.host,
        config_path=str(config),
    )
    return client


@pytest.mark.parametrize("chunked", [False, True], ids=["monolithic", "chunked"])
def test_push_pull_artifact(registry: Registry, tmp_path: Path, chunked: bool) -> None:
    repo = unique("oras")
    remote = registry.create_repository(repo)
    source = tmp_path / "src"
    source.mkdir()
    data = random.Random(repo).randbytes(3 * MiB + 12345)
    (source / "data.bin").write_bytes(data)
    (source / "notes.txt").write_text(f"artifact {repo}\n")
    config = tmp_path / "auth.json"
    client = _client(registry, config)
    mark = registry.proxy.mark()

    client.push(
        target=f"{remote}:v1",
        files=[f"{source / 'data.bin'}:{ARTIFACT_TYPE}", f"{source / 'notes.txt'}:text/plain"],
        config_path=str(config),
        disable_path_validation=True,
        manifest_annotations={"org.opencontainers.image.title": repo},
        do_chunked=chunked,
        chunk_size=CHUNK,
    )

    [put] = [e for e in registry.manifest_puts(mark, repo) if e.status != 401]
    assert put.status == 201
    assert put.body is not None
    digest = sha256(put.body)
    manifest = json.loads(put.body)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    blob_sizes = {d["digest"]: d["size"] for d in [manifest["config"], *manifest["layers"]]}

    # How each blob travelled: the shape of its upload session.
    sessions = [
        [e for e in session if e.status != 401] for session in registry.upload_sessions(mark, repo)
    ]
    assert len(sessions) == len(blob_sizes)
    for session in sessions:
        put_blob = session[-1]
        assert "digest" in put_blob.query, [str(e) for e in session]
        blob = put_blob.query["digest"]
        size = blob_sizes[blob]
        assert [e.method for e in session[:1]] == ["POST"]
        assert put_blob.method == "PUT"
        assert put_blob.status == 201
        if chunked and blob != manifest["config"]["digest"]:
            patches = session[1:-1]
            assert [e.method for e in patches] == ["PATCH"] * -(-size // CHUNK)
            assert all(e.status == 202 for e in patches)
            ranges = [e.headers["content-range"] for e in patches]
            assert ranges == [
                f"{start}-{min(start + CHUNK, size) - 1}" for start in range(0, size, CHUNK)
            ]
            assert put_blob.body_size == 0
        else:  # monolithic: the whole blob in the closing PUT
            assert len(session) == 2
            assert put_blob.body_size == size

    for i, reference in enumerate([f"{remote}:v1", f"{remote}@{digest}"]):
        out = tmp_path / f"out{i}"
        files = client.pull(target=reference, config_path=str(config), outdir=str(out))
        assert sorted(Path(f).name for f in files) == ["data.bin", "notes.txt"]
        assert (out / "data.bin").read_bytes() == data
        assert (out / "notes.txt").read_text() == f"artifact {repo}\n"

    got = registry.batch_get_manifest(repo, digest)
    assert got["imageManifest"].encode() == put.body
    assert got["imageManifestMediaType"] == "application/vnd.oci.image.manifest.v1+json"
