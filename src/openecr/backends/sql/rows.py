"""Conversions between domain records and row values."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from openecr.domain.model import ExclusionFilter, ImageRecord, Repository, TagMutability


def ts(value: datetime) -> float:
    return value.timestamp()


_fromtimestamp = datetime.fromtimestamp


def dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def repository_from(row: Sequence[Any]) -> Repository:
    """A Repository from a row of ``REPOSITORY_COLUMNS``."""
    id_, registry_id, name, created_at, mutability, filters_json, scan, encryption, kms = row
    filters = (
        tuple(
            ExclusionFilter(f["filter"], f.get("filterType", "WILDCARD"))
            for f in json.loads(filters_json)
        )
        if filters_json and filters_json != "[]"
        else ()
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
    """An ImageRecord from a row of ``IMAGE_COLUMNS`` (on every pull: positional, no helper
    calls)."""
    (seq, repo_id, digest, manifest, media_type, artifact_type, size, pushed, subject,
     storage_class, archived, activated, pulled) = row  # fmt: skip
    return ImageRecord(
        repo_id,
        digest,
        bytes(manifest),
        media_type,
        artifact_type,
        size,
        _fromtimestamp(pushed, UTC),
        subject,
        seq,
        storage_class or "STANDARD",
        None if archived is None else _fromtimestamp(archived, UTC),
        None if activated is None else _fromtimestamp(activated, UTC),
        None if pulled is None else _fromtimestamp(pulled, UTC),
    )


def filters_json(filters: Sequence[ExclusionFilter]) -> str:
    return json.dumps([{"filterType": f.filter_type, "filter": f.filter} for f in filters])
