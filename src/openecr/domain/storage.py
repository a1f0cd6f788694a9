"""What a metadata store holds, counted (for ``/metrics``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StorageTotals:
    """Counts over every registry of one store."""

    repositories: int
    images: int
    blobs: int  # committed blobs, each digest once
    blob_bytes: int  # their sizes summed
    uploads: int  # upload sessions in progress
