"""Read-only browsing for the web page: registries, repositories with what they hold, a page of
a repository's images (newest first, or by tag prefix) and one image in detail.

Every read is bounded: a page of repositories or images costs a few indexed queries whatever
the size of the repository (keyset pagination, never OFFSET)."""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from openecr.domain import mediatypes as mt
from openecr.domain import names
from openecr.domain.digest import Digest
from openecr.domain.model import ImageRecord, ImageView, Repository, RepositoryStats
from openecr.domain.registries import account_of
from openecr.errors import ImageNotFound
from openecr.ports.metadata import MetadataStore
from openecr.service.blobstore import BlobStore
from openecr.service.common import require_repository
from openecr.service.lifecycle import POLICY_KIND

MAX_CONFIG_BYTES = 1 << 20  # a config larger than this is not shown
NO_STATS = RepositoryStats(0, 0, None)
# A tag is at most 300 characters of [A-Za-z0-9_.-]: no tag lies after this suffix
_PAST_EVERY_TAG = "~" * 301


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    repository: Repository
    stats: RepositoryStats
    lifecycle_policy: bool


@dataclass(frozen=True, slots=True)
class ImagePage:
    """A page of images; ``next`` resumes after it (an image seq, or the last tag when
    filtering by tag prefix), None on the last page."""

    repository: Repository
    stats: RepositoryStats
    images: list[ImageView]
    next: str | None


@dataclass(frozen=True, slots=True)
class Child:
    """An entry of an index: a platform's manifest (held here or not)."""

    digest: str
    media_type: str
    size: int
    platform: str
    held: bool


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    media_type: str
    size: int


@dataclass(frozen=True, slots=True)
class ImageDetail:
    repository: Repository
    view: ImageView
    manifest: str  # formatted JSON (or the raw text when it is not JSON)
    config: Layer | None
    config_text: str | None  # formatted, None when too large or not stored
    layers: list[Layer]
    children: list[Child]
    parents: list[str]  # indexes of the repository that list this image
    referrers: list[ImageRecord]


def tag_start(prefix: str) -> str | None:
    """The ``after`` argument of ``list_tags`` that starts at the first tag >= ``prefix`` in
    byte order (None: from the first tag)."""
    if not prefix:
        return None
    return prefix[:-1] + chr(ord(prefix[-1]) - 1) + _PAST_EVERY_TAG


def _platform(value: Any) -> str:
    if not isinstance(value, dict):
        return "unknown"
    parts = [str(value.get("os", "?")), str(value.get("architecture", "?"))]
    if value.get("variant"):
        parts.append(str(value["variant"]))
    return "/".join(parts)


def _pretty(raw: bytes) -> str:
    try:
        return json.dumps(json.loads(raw), indent=2, ensure_ascii=False)
    except ValueError:
        return raw.decode("utf-8", "replace")


class BrowseService:
    def __init__(self, meta: MetadataStore, blobs: BlobStore) -> None:
        self.meta = meta
        self.blobs = blobs

    def registries(self, accounts: Collection[str] | None = None) -> list[str]:
        """Keys of registries that hold repositories (of ``accounts`` only, unless None)."""
        with self.meta.read() as tx:
            keys = tx.registry_keys()
        return [k for k in keys if accounts is None or account_of(k) in accounts]

    def repositories(
        self, registry_id: str, after: str | None, limit: int
    ) -> tuple[list[RepositorySummary], str | None]:
        """A page of repositories by name with their statistics; the name to resume after."""
        with self.meta.read() as tx:
            repos = tx.list_repositories(registry_id, after, limit + 1)
            page = repos[:limit]
            stats = tx.repository_stats([r.id for r in page])
            policies = {r.id: tx.get_repository_document(r.id, POLICY_KIND) for r in page}
        summaries = [
            RepositorySummary(r, stats.get(r.id, NO_STATS), policies[r.id] is not None)
            for r in page
        ]
        return summaries, page[-1].name if len(repos) > limit else None

    def images(
        self, registry_id: str, name: str, after: str | None, limit: int, tag_prefix: str = ""
    ) -> ImagePage:
        """A page of a repository's images: newest first, or with ``tag_prefix`` the images
        of the tags that start with it in tag order (an image once per page). Raises
        RepositoryNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            stats = tx.repository_stats([repo.id]).get(repo.id, NO_STATS)
            if tag_prefix:
                start = after if after and names.is_tag(after) else tag_start(tag_prefix)
                found = [
                    t for t in tx.list_tags(repo.id, start, limit + 1) if t.startswith(tag_prefix)
                ]
                page_tags = found[:limit]
                snapshot = tx.snapshot(repo.id, page_tags, (), every_tag=True)
                views: list[ImageView] = []
                for tag in page_tags:
                    record = snapshot.images.get(snapshot.tags.get(tag, ""))
                    if record is not None and all(v.image.digest != record.digest for v in views):
                        views.append(
                            ImageView(record, tuple(snapshot.tags_of(repo.id, record.digest)))
                        )
                more = len(found) > limit
                return ImagePage(repo, stats, views, page_tags[-1] if more else None)
            before = int(after) if after and after.isdigit() and len(after) <= 18 else None
            views = tx.recent_images(repo.id, before, limit + 1)
        more = len(views) > limit
        views = views[:limit]
        return ImagePage(repo, stats, views, str(views[-1].image.seq) if more else None)

    def image(self, registry_id: str, name: str, digest: str) -> ImageDetail:
        """One image in detail. Raises RepositoryNotFound, ImageNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            record = tx.get_image(repo.id, digest) if Digest.try_parse(digest) else None
            if record is None:
                raise ImageNotFound("Requested image not found")
            tags = tuple(tx.tags_of(repo.id, digest))
            parents = tx.images_referencing(repo.id, digest)
            referrers = tx.images_with_subject(repo.id, digest)
            try:
                doc = json.loads(record.manifest)
            except ValueError:
                doc = {}
            doc = doc if isinstance(doc, dict) else {}
            children: list[Child] = []
            for entry in doc.get("manifests") or ():
                if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                    children.append(
                        Child(
                            entry["digest"],
                            str(entry.get("mediaType", "")),
                            int(entry.get("size", 0) or 0),
                            _platform(entry.get("platform")),
                            tx.get_image(repo.id, entry["digest"]) is not None,
                        )
                    )
        layers = [_layer(entry) for entry in doc.get("layers") or () if isinstance(entry, dict)]
        fs_layers = doc.get("fsLayers") or ()  # schema 1
        layers += [
            Layer(str(e.get("blobSum", "")), "schema 1 layer", 0)
            for e in fs_layers
            if isinstance(e, dict)
        ]
        config = _layer(doc["config"]) if isinstance(doc.get("config"), dict) else None
        config_text = None
        if config is not None and record.media_type in mt.IMAGE_MANIFESTS:
            config_text = self._config_text(config)
        return ImageDetail(
            repo,
            ImageView(record, tags),
            _pretty(record.manifest),
            config,
            config_text,
            layers,
            children,
            parents,
            referrers,
        )

    def _config_text(self, config: Layer) -> str | None:
        parsed = Digest.try_parse(config.digest)
        if parsed is None or not 0 <= config.size <= MAX_CONFIG_BYTES:
            return None
        try:
            return _pretty(b"".join(self.blobs.open(parsed, 0, config.size)))
        except Exception:  # a lost or unreadable blob: the page shows no config
            return None


def _layer(entry: dict[str, Any]) -> Layer:
    size = entry.get("size", 0)
    return Layer(
        str(entry.get("digest", "")),
        str(entry.get("mediaType", "")),
        size if isinstance(size, int) else 0,
    )
