"""``openecr image import`` of a ``docker save`` archive and ``docker load`` of an ``openecr image
export``, with the session's dockerd: docker save, import, export, load and pull all give back
the same image ID."""

from __future__ import annotations

import uuid
from pathlib import Path

from conftest import VENV_BIN
from e2e.conftest import Docker, Registry, docker_load, run, unique
from e2e.images import small_image


def openecr_image(registry: Registry, *args: str) -> str:
    data_dir = registry.workdir / "data"
    return run([str(VENV_BIN / "openecr"), "image", *args, "--data-dir", str(data_dir)]).stdout


def image_id(docker: Docker, reference: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def test_docker_save_import_export_load_and_pull_keep_the_image_id(
    docker: Docker, registry: Registry, tmp_path: Path
) -> None:
    image = small_image(uuid.uuid4().hex)
    local = f"archive-src-{uuid.uuid4().hex[:8]}:1"
    docker_load(docker, image, local, tmp_path)
    original = image_id(docker, local)
    assert original == image.config_digest

    name = unique("archive")
    uri = registry.create_repository(name)
    saved = tmp_path / "saved.tar"
    docker("save", "-o", str(saved), local)
    out = openecr_image(
        registry, "import", str(saved), "--repository-name", name, "--image-tag", "v1"
    )
    assert f"imported {name}:v1@sha256:" in out

    exported = tmp_path / "exported.tar"
    openecr_image(registry, "export", f"{name}:v1", "-o", str(exported))
    docker("rmi", local)
    loaded = docker("load", "-i", str(exported)).stdout
    assert f"{name}:v1" in loaded
    assert image_id(docker, f"{name}:v1") == original

    docker("pull", f"{uri}:v1")
    assert image_id(docker, f"{uri}:v1") == original
