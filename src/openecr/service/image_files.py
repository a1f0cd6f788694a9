"""The few files of an image's file system that the scanner reads, from its layer blobs.

Layers are applied bottom to top, as a container runtime does: each is a tar archive,
uncompressed, gzip or zstd (told apart by their first bytes, whatever the media type says),
read as a stream; an ``.wh.<name>`` entry removes ``<name>`` (and everything below it) from the
layers beneath, ``.wh..wh..opq`` empties its directory of what the layers beneath put there, and
any entry of a layer replaces what the layers beneath had at its path. Only wanted paths are
kept (in memory, each at most ``MAX_FILE`` bytes); a symlink at a wanted path hides the file
beneath it and is not followed (``os-release`` falls back to ``usr/lib/os-release``).
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO, cast

import zstandard

from openecr.domain import mediatypes as mt
from openecr.domain.digest import Digest
from openecr.domain.manifest import Manifest
from openecr.domain.packages import APK_INSTALLED, DPKG_STATUS, DPKG_STATUS_DIR, OS_RELEASE
from openecr.service.blobstore import BlobStore

WANTED_FILES = frozenset({DPKG_STATUS, APK_INSTALLED, *OS_RELEASE})
WANTED_DIRS = (DPKG_STATUS_DIR,)
MAX_FILE = 64 * 1024 * 1024
_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"


class LayerUnreadable(ValueError):
    """A layer that is not a tar archive (plain, gzip or zstd) the scanner can read."""


def is_layer(media_type: str | None) -> bool:
    """Whether a manifest's layer descriptor holds a file system change set (a tar)."""
    if media_type is None:
        return True  # schema 1 layers carry no media type: they are gzip tars
    return media_type in (mt.DOCKER_LAYER, mt.DOCKER_FOREIGN_LAYER) or (
        ".layer." in media_type and ".tar" in media_type
    )


class _Chunks(io.RawIOBase):
    """A readable stream over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]  # a view: no copy of what is left
        return size


def _decompressed(raw: io.RawIOBase) -> IO[bytes]:
    buffered = io.BufferedReader(raw, 1 << 16)
    head = buffered.peek(4)[:4]
    if head.startswith(_GZIP):
        return cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
    if head.startswith(_ZSTD):
        return cast(IO[bytes], zstandard.ZstdDecompressor().stream_reader(buffered))
    return cast(IO[bytes], buffered)


def _normal(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/").rstrip("/")


def _wanted(path: str) -> bool:
    if path in WANTED_FILES:
        return True
    return any(path.startswith(d) and "/" not in path[len(d) :] for d in WANTED_DIRS)


def _below(path: str, directory: str) -> bool:
    return directory == "" or path == directory or path.startswith(directory + "/")


def apply_layer(files: dict[str, bytes], stream: io.RawIOBase) -> None:
    """Apply one layer (a tar, possibly compressed) to ``files`` (wanted path -> bytes)."""
    removed: set[str] = set()
    opaque: set[str] = set()
    added: dict[str, bytes | None] = {}  # None: something that is not a regular file
    try:
        with tarfile.open(fileobj=_decompressed(stream), mode="r|") as archive:
            for member in archive:
                path = _normal(member.name)
                parent, _, base = path.rpartition("/")
                if base == ".wh..wh..opq":
                    opaque.add(parent)
                elif base.startswith(".wh."):
                    removed.add(f"{parent}/{base[4:]}" if parent else base[4:])
                elif _wanted(path):
                    content: bytes | None = None
                    if member.isreg() and member.size <= MAX_FILE:
                        handle = archive.extractfile(member)
                        content = handle.read() if handle is not None else None
                    added[path] = content
    except (tarfile.TarError, OSError, EOFError, zstandard.ZstdError) as error:
        raise LayerUnreadable(f"a layer is not a readable tar archive: {error}") from error
    for path in list(files):
        if any(_below(path, d) for d in opaque) or any(_below(path, r) for r in removed):
            del files[path]
    for path, content in added.items():
        if content is None:
            files.pop(path, None)
        else:
            files[path] = content


def read_files(layers: Iterable[Callable[[], io.RawIOBase]]) -> dict[str, bytes]:
    """The wanted files of the file system that ``layers`` (openers, bottom first) build."""
    files: dict[str, bytes] = {}
    for opener in layers:
        apply_layer(files, opener())
    return files


def image_files(blobs: BlobStore, manifest: Manifest) -> dict[str, bytes] | None:
    """The wanted files of an image manifest's file system, read from ``blobs``; None when the
    manifest has no file system layers (an artifact, not a container image)."""
    if manifest.media_type in mt.SCHEMA1:  # fsLayers list the top layer first
        doc = json.loads(manifest.raw)
        digests = [str(layer["blobSum"]) for layer in reversed(doc["fsLayers"])]
    else:
        digests = [d.digest for d in manifest.layers if is_layer(d.media_type) and not d.external]
    if not digests:
        return None

    def opener(digest: str) -> Callable[[], io.RawIOBase]:
        return lambda: _Chunks(blobs.open(Digest(digest)))

    return read_files(opener(d) for d in digests)
