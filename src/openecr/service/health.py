"""Liveness and readiness of one registry process, and the totals of what it stores.

Readiness means both stores answer: the metadata store serves a read, and the blob store
creates and drops an (empty) upload session, which proves it is reachable and writable.
"""

from __future__ import annotations

import logging

from openecr.domain.storage import StorageTotals
from openecr.ports.metadata import MetadataStore
from openecr.service.blobstore import BlobStore

log = logging.getLogger("openecr.health")


class HealthService:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore) -> None:
        self.metadata = metadata
        self.blobs = blobs

    def readiness(self) -> dict[str, str]:
        """``{"database": ..., "blobs": ...}``: ``"ok"`` for a store that answered, else why
        it did not (never raises)."""
        checks: dict[str, str] = {}
        try:
            with self.metadata.read() as tx:
                tx.get_document("000000000000", "readiness", "")
            checks["database"] = "ok"
        except Exception as error:
            log.warning("readiness: the metadata store failed: %s", error)
            checks["database"] = f"{type(error).__name__}: {error}"
        try:
            self.blobs.abort(self.blobs.begin())
            checks["blobs"] = "ok"
        except Exception as error:
            log.warning("readiness: the blob store failed: %s", error)
            checks["blobs"] = f"{type(error).__name__}: {error}"
        return checks

    def totals(self) -> StorageTotals:
        """What the metadata store holds, over every registry."""
        with self.metadata.read() as tx:
            return tx.storage_totals()
