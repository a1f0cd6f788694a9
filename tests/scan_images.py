"""Container images with real package databases, built here (tar layers, no network), and the
findings the test OSV database (tests/vulnerability_db) must give for them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import zstandard

from conftest import upload_blob

DATABASE = Path(__file__).parent / "vulnerability_db"
OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
TAR = "application/vnd.oci.image.layer.v1.tar"

DEBIAN_OS_RELEASE = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""

ALPINE_OS_RELEASE = """NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.19.1
PRETTY_NAME="Alpine Linux v3.19"
"""


def _dpkg(name: str, version: str, source: str | None = None, status: str = "installed") -> str:
    lines = [
        f"Package: {name}",
        f"Status: {'install ok installed' if status == 'installed' else status}",
        "Priority: optional",
        "Architecture: amd64",
    ]
    if source:
        lines.append(f"Source: {source}")
    lines += [
        f"Version: {version}",
        "Description: a package of the scanning tests",
        " with a continuation line",
    ]
    return "\n".join(lines) + "\n"


# the final dpkg database of the Debian image
DEBIAN_STATUS = "\n".join(
    [
        _dpkg("libssl3", "3.0.11-1~deb12u1", "openssl"),
        _dpkg("openssl", "3.0.11-1~deb12u1"),
        _dpkg("libc6", "2.36-9+deb12u9", "glibc"),
        _dpkg("zlib1g", "1:1.2.13.dfsg-1", "zlib (1:1.2.13.dfsg-1)"),
        _dpkg("curl", "7.88.1-10+deb12u5"),
        _dpkg("tar", "1.34+dfsg-1.2", status="deinstall ok config-files"),
    ]
)


def _apk(name: str, version: str, origin: str) -> str:
    return (
        f"C:Q1abc=\nP:{name}\nV:{version}\nA:x86_64\nS:1000\nI:2000\nT:a test package\no:{origin}\n"
    )


ALPINE_INSTALLED = "\n".join(
    [
        _apk("busybox", "1.36.1-r9", "busybox"),
        _apk("libcrypto3", "3.1.4-r5", "openssl"),
        _apk("zlib", "1.3.1_rc1-r0", "zlib"),
    ]
)

# name -> (severity, package_name, package_version), in the order the findings are listed
DEBIAN_FINDINGS = [
    ("CVE-2099-1001", "CRITICAL", "openssl", "3.0.11-1~deb12u1"),
    ("CVE-2099-1007", "MEDIUM", "openssl", "3.0.11-1~deb12u1"),
    ("CVE-2099-1002", "LOW", "glibc", "2.36-9+deb12u9"),
    ("CVE-2099-1003", "UNDEFINED", "zlib", "1:1.2.13.dfsg-1"),
]
ALPINE_FINDINGS = [
    ("CVE-2099-2001", "HIGH", "busybox", "1.36.1-r9"),
    ("CVE-2099-2004", "MEDIUM", "zlib", "1.3.1_rc1-r0"),
]


def tar_layer(entries: list[tuple[str, str | None, str]]) -> bytes:
    """An uncompressed tar of (path, content or None for a directory, symlink target or '')."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path, content, link in entries:
            info = tarfile.TarInfo(path)
            info.mtime = 1_700_000_000
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link
                archive.addfile(info)
            elif content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                data = content.encode()
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def gzip_layer(entries: list[tuple[str, str | None, str]]) -> bytes:
    return gzip.compress(tar_layer(entries), mtime=0)


def zstd_layer(entries: list[tuple[str, str | None, str]]) -> bytes:
    return zstandard.ZstdCompressor().compress(tar_layer(entries))


def debian_layers() -> list[tuple[str, bytes]]:
    """Layer 1 (gzip): os-release (etc/os-release a symlink), an older dpkg database and a
    distroless-style status.d entry for bash; layer 2 (zstd): the final database, and a
    whiteout that deletes status.d."""
    first = gzip_layer(
        [
            ("usr/lib/os-release", DEBIAN_OS_RELEASE, ""),
            ("etc/os-release", None, "../usr/lib/os-release"),
            ("var/lib/dpkg/", None, ""),
            ("var/lib/dpkg/status", _dpkg("libssl3", "3.0.0-1", "openssl"), ""),
            ("var/lib/dpkg/status.d/", None, ""),
            ("var/lib/dpkg/status.d/bash", "Package: bash\nVersion: 5.2.15-2\n", ""),
        ]
    )
    second = zstd_layer(
        [
            ("./var/lib/dpkg/status", DEBIAN_STATUS, ""),
            ("./var/lib/dpkg/.wh.status.d", "", ""),
        ]
    )
    return [(TAR + "+gzip", first), (TAR + "+zstd", second)]


def alpine_layers() -> list[tuple[str, bytes]]:
    """Layer 1 (plain tar): os-release and a database with musl; layer 2 (gzip): an opaque
    whiteout of lib/apk/db and the final database."""
    first = tar_layer(
        [
            ("etc/os-release", ALPINE_OS_RELEASE, ""),
            ("lib/apk/db/installed", _apk("musl", "1.2.4-r2", "musl"), ""),
        ]
    )
    second = gzip_layer(
        [
            ("lib/apk/db/.wh..wh..opq", "", ""),
            ("lib/apk/db/installed", ALPINE_INSTALLED, ""),
        ]
    )
    return [(TAR, first), (TAR + "+gzip", second)]


def unsupported_layers() -> list[tuple[str, bytes]]:
    """A scratch image with one file and no package database."""
    return [(TAR + "+gzip", gzip_layer([("app/hello.txt", "hello\n", "")]))]


def _upload(client: Any, repository: str, data: bytes) -> str:
    """``upload_blob``, unless the repository holds the blob already."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    held = client.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
    if held["layers"]:
        return digest
    return upload_blob(client, repository, data)


def build_image(client: Any, repository: str, layers: list[tuple[str, bytes]]) -> str:
    """Upload the config and ``layers`` (media type, bytes) to ``repository``; return the OCI
    manifest (text, not yet put)."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}
    ).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": _upload(client, repository, config),
        },
        "layers": [
            {
                "mediaType": media_type,
                "size": len(data),
                "digest": _upload(client, repository, data),
            }
            for media_type, data in layers
        ],
    }
    return json.dumps(manifest)


def push(client: Any, repository: str, layers: list[tuple[str, bytes]], tag: str) -> str:
    """Build and put an image; return its digest."""
    manifest = build_image(client, repository, layers)
    put = client.put_image(repositoryName=repository, imageManifest=manifest, imageTag=tag)
    return str(put["image"]["imageId"]["imageDigest"])


def index_of(client: Any, repository: str, digest: str, size: int, tag: str) -> str:
    """Put an OCI index listing the image ``digest``; return its digest."""
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {
                    "mediaType": OCI,
                    "digest": digest,
                    "size": size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    )
    put = client.put_image(repositoryName=repository, imageManifest=index, imageTag=tag)
    return str(put["image"]["imageId"]["imageDigest"])


def findings_of(response: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, severity, package_name, package_version) of each finding of a response."""
    found = []
    for finding in response["imageScanFindings"]["findings"]:
        attributes = {a["key"]: a["value"] for a in finding["attributes"]}
        found.append(
            (
                finding["name"],
                finding["severity"],
                attributes["package_name"],
                attributes["package_version"],
            )
        )
    return found
