"""Conversions between domain records and row values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from openecr.domain.model import ExclusionFilter, ImageRecord, Repository, TagMutability


def ts(value: datetime) -> float:
    return value.timestamp()


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def repository_from(row: Sequence[Any]) -> Repository:
    """A Repository from a row of ``REPOSITORY_COLUMNS``."""
    id_, registry_id, name, created_at, mutability, filters_json, scan, encryption, kms = row
    filters = tuple(
        ExclusionFilter(f["filter"], f.get("filterType", "WILDCARD"))
        for f in json.loads(filters_json or "[]")
    )
    return Repository(
        id=id_,
        registry_id=registry_id,
        name=name,
        created_at=dt(created_at),
        tag_mutability=TagMutability(mutability),
        exclusion_filters=filters,
        scan_on_push=bool(scan),
        encryption_type=encryption,
        kms_key=kms,
    )


def image_from(row: Sequence[Any]) -> ImageRecord:
    """An ImageRecord from a row of ``IMAGE_COLUMNS``."""
    seq, repo_id, digest, manifest, media_type, artifact_type, size, pushed, subject = row[:9]
    storage_class, archived, activated, pulled = row[9:13]
    return ImageRecord(
        repository_id=repo_id,
        digest=digest,
        manifest=bytes(manifest),
        media_type=media_type,
        artifact_media_type=artifact_type,
        size=size,
        pushed_at=dt(pushed),
        subject=subject,
        seq=seq,
        storage_class=storage_class or "STANDARD",
        last_archived_at=None if archived is None else dt(archived),
        last_activated_at=None if activated is None else dt(activated),
        last_pulled_at=None if pulled is None else dt(pulled),
    )


def filters_json(filters: Sequence[ExclusionFilter]) -> str:
    return json.dumps([{"filterType": f.filter_type, "filter": f.filter} for f in filters])
