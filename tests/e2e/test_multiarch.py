"""Multi-architecture images: an OCI index and a Docker manifest list over linux/amd64 and
linux/arm64 children, pushed with `skopeo copy --all` and byte for byte as built; skopeo
(`--override-arch`), podman (`--arch` / `--platform`) and docker (`--platform`, and the host's
default, which it runs) each pull the child of the platform they ask for; and a list built
locally with `podman manifest create/add/push`.

Both children carry the static busybox layer and a marker layer of their own; only the child of
the host's architecture is run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.conftest import (
    PODMAN_RUN_LIMITS,
    Docker,
    Podman,
    Registry,
    Skopeo,
    read_dir_image,
    unique,
)
from e2e.images import Image, busybox_layer, goarch, marker_layer, sha256

DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ARCHES = ("amd64", "arm64")
HOST = goarch()
OTHER = "arm64" if HOST != "arm64" else "amd64"


@dataclass
class PlatformImage(Image):
    """An :class:`Image` whose config names ``arch`` rather than the host's architecture."""

    arch: str = "amd64"

    def __post_init__(self) -> None:
        super().__post_init__()
        config = json.loads(self.config)
        config["architecture"] = self.arch
        self.config = json.dumps(config, indent=2, sort_keys=True).encode()
        manifest = json.loads(self.manifest)
        manifest["config"].update(size=len(self.config), digest=sha256(self.config))
        self.manifest = json.dumps(manifest, indent=3).encode()


def platform_images(marker: str, *, oci: bool) -> dict[str, PlatformImage]:
    return {
        arch: PlatformImage(
            [busybox_layer(), marker_layer(f"{marker} {arch}")],
            f"{marker} {arch}",
            oci=oci,
            arch=arch,
        )
        for arch in ARCHES
    }


def index_of(children: dict[str, PlatformImage], media_type: str) -> bytes:
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": child.media_type,
                "digest": child.digest,
                "size": len(child.manifest),
                "platform": {"architecture": arch, "os": "linux"},
            }
            for arch, child in children.items()
        ],
    }
    return json.dumps(doc, indent=3).encode()  # bytes no client would re-serialize to


def write_source(
    directory: Path, children: dict[str, PlatformImage], index: bytes, media_type: str
) -> str:
    """A skopeo source holding ``index`` and its children, byte for byte: an OCI image layout
    (tag ``multi``) for an OCI index; containers/image's ``dir:`` layout (the list as
    ``manifest.json``, each instance as ``<hex>.manifest.json``) for a Docker list, which
    skopeo does not read from an OCI layout."""
    oci = media_type == OCI_INDEX
    blobs = directory / "blobs" / "sha256" if oci else directory
    blobs.mkdir(parents=True)
    for child in children.values():
        for digest, data in child.blobs().items():
            (blobs / digest.removeprefix("sha256:")).write_bytes(data)
        name = child.digest.removeprefix("sha256:")
        (blobs / (name if oci else f"{name}.manifest.json")).write_bytes(child.manifest)
    if not oci:
        (directory / "version").write_text("Directory Transport Version: 1.1\n")
        (directory / "manifest.json").write_bytes(index)
        return f"dir:{directory}"
    (blobs / sha256(index).removeprefix("sha256:")).write_bytes(index)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    top = {
        "mediaType": media_type,
        "digest": sha256(index),
        "size": len(index),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    return f"oci:{directory}:multi"


def manifest_gets(registry: Registry, mark: int, repo: str) -> set[str]:
    """The references of ``repo``'s manifests clients fetched (GET, answered 200) since ``mark``."""
    prefix = f"/v2/{repo}/manifests/"
    return {
        e.path.removeprefix(prefix)
        for e in registry.proxy.since(mark)
        if e.method == "GET" and e.path.startswith(prefix) and e.status == 200
    }


@pytest.mark.parametrize(
    ("media_type", "oci"),
    [(OCI_INDEX, True), (DOCKER_LIST, False)],
    ids=["oci-index", "docker-list"],
)
def test_push_with_skopeo_and_pull_each_platform(
    registry: Registry,
    skopeo: Skopeo,
    podman: Podman,
    docker: Docker,
    tmp_path: Path,
    media_type: str,
    oci: bool,
) -> None:
    repo = unique("multiarch")
    children = platform_images(repo, oci=oci)
    index = index_of(children, media_type)
    remote = registry.create_repository(repo)
    source = write_source(tmp_path / "source", children, index, media_type)
    mark = registry.proxy.mark()

    skopeo.copy(source, f"docker://{remote}:multi", "--all")

    # the children went up by digest, then the index by tag, all as built
    puts = registry.manifest_puts(mark, repo)
    assert [p.body for p in puts] == [c.manifest for c in children.values()] + [index]
    assert [p.path.rsplit("/", 1)[1] for p in puts] == [c.digest for c in children.values()] + [
        "multi"
    ]
    assert puts[-1].headers["content-type"] == media_type
    got = registry.ecr().batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "multi"}, {"imageDigest": sha256(index)}]
    )
    assert got["failures"] == []
    assert [i["imageManifest"].encode() for i in got["images"]] == [index]  # one result
    assert got["images"][0]["imageManifestMediaType"] == media_type
    assert got["images"][0]["imageId"] == {"imageDigest": sha256(index), "imageTag": "multi"}
    details = registry.ecr().describe_images(repositoryName=repo)["imageDetails"]
    assert {d["imageDigest"]: d.get("imageTags") for d in details} == {
        children["amd64"].digest: None,
        children["arm64"].digest: None,
        sha256(index): ["multi"],
    }

    # skopeo: the host's platform by default, another with --override-arch
    for arch, extra in ((HOST, ()), (OTHER, ("--override-arch", OTHER))):
        out = tmp_path / f"skopeo-{arch}"
        skopeo(
            *extra,
            "copy",
            "--authfile",
            str(skopeo.authfile),
            "--src-tls-verify=false",
            f"docker://{remote}:multi",
            f"dir:{out}",
        )
        assert read_dir_image(out) == (children[arch].manifest, children[arch].blobs())

    # podman: --arch and --platform
    for arch, option in ((OTHER, ("--arch", OTHER)), (HOST, ("--platform", f"linux/{HOST}"))):
        mark = registry.proxy.mark()
        podman("pull", "--tls-verify=false", *option, f"{remote}:multi")
        [pulled] = json.loads(podman("image", "inspect", f"{remote}:multi").stdout)
        assert "sha256:" + pulled["Id"] == children[arch].config_digest
        assert pulled["Architecture"] == arch
        fetched = manifest_gets(registry, mark, repo)
        assert children[arch].digest in fetched
        assert children[OTHER if arch == HOST else HOST].digest not in fetched
    podman("rmi", "--all", "--force")

    # docker: --platform for the other architecture, then the default, which runs
    for arch, option in ((OTHER, ("--platform", f"linux/{OTHER}")), (HOST, ())):
        mark = registry.proxy.mark()
        docker("pull", *option, f"{remote}:multi")
        inspect = json.loads(docker("image", "inspect", f"{remote}:multi").stdout)[0]
        assert inspect["Id"] == children[arch].config_digest
        assert inspect["Architecture"] == arch
        fetched = manifest_gets(registry, mark, repo)
        assert children[arch].digest in fetched
        assert children[OTHER if arch == HOST else HOST].digest not in fetched
    run = docker("run", "--rm", "--network", "none", f"{remote}:multi")
    assert run.stdout == f"{repo} {HOST}\n"
    docker("rmi", "--force", f"{remote}:multi", children[OTHER].config_digest)


def test_podman_manifest_push(
    registry: Registry, podman: Podman, skopeo: Skopeo, tmp_path: Path
) -> None:
    """A list made locally from two images podman holds, pushed with every instance."""
    repo = unique("podman-manifest")
    remote = registry.create_repository(repo)
    children = platform_images(repo, oci=False)
    local = f"localhost/{repo}"
    for arch, child in children.items():
        archive = child.write_docker_archive(tmp_path / f"{arch}.tar", f"{local}:{arch}")
        podman("load", "-i", str(archive))
    podman("manifest", "create", f"{local}:list")
    for arch in ARCHES:
        podman("manifest", "add", f"{local}:list", f"containers-storage:{local}:{arch}")
    mark = registry.proxy.mark()

    podman(
        "manifest",
        "push",
        "--all",
        "--tls-verify=false",
        f"{local}:list",
        f"docker://{remote}:multi",
    )

    puts = registry.manifest_puts(mark, repo)
    assert puts and puts[-1].path.endswith("/manifests/multi")
    sent = puts[-1].body
    assert sent is not None
    media_type = puts[-1].headers["content-type"]
    assert media_type in (DOCKER_LIST, OCI_INDEX)
    listed = {m["platform"]["architecture"]: m["digest"] for m in json.loads(sent)["manifests"]}
    assert set(listed) == set(ARCHES)
    # each instance went up by digest before the list
    assert {p.path.rsplit("/", 1)[1] for p in puts[:-1]} == set(listed.values())
    got = registry.batch_get_manifest(repo, sha256(sent))
    assert got["imageManifest"].encode() == sent
    assert got["imageManifestMediaType"] == media_type
    assert got["imageId"] == {"imageDigest": sha256(sent), "imageTag": "multi"}

    # each instance is the image podman held (same config), for its platform
    for arch in ARCHES:
        out = tmp_path / f"back-{arch}"
        skopeo(
            "--override-arch",
            arch,
            "copy",
            "--authfile",
            str(skopeo.authfile),
            "--src-tls-verify=false",
            f"docker://{remote}:multi",
            f"dir:{out}",
        )
        manifest, blobs = read_dir_image(out)
        assert sha256(manifest) == listed[arch]
        assert json.loads(manifest)["config"]["digest"] == children[arch].config_digest
        assert json.loads(blobs[children[arch].config_digest])["architecture"] == arch

    podman("rmi", "--all", "--force")
    podman("pull", "--tls-verify=false", "--arch", HOST, f"{remote}:multi")
    run = podman("run", "--rm", "--network", "none", *PODMAN_RUN_LIMITS, f"{remote}:multi")
    assert run.stdout == f"{repo} {HOST}\n"
    podman("rmi", "--all", "--force")
