"""Garbage collection: reclaim the blobs no image references and the upload sessions nobody
finishes, online, while pushes and pulls go on (docs/garbage-collection.md has the invariant
and why each step keeps it).

One run:

1. Upload sessions inactive for longer than ``upload_expiry`` are forgotten, then their bytes
   dropped; so are bytes the metadata knows no session of (a crash between a session's two
   halves, an interrupted write's leftovers) once unwritten for as long.
2. Mark: the digests some image keeps alive (``MetadataStore.blobs_in_use``).
3. Sweep: each stored blob neither marked nor modified within ``grace`` is, in one write
   transaction, checked again (no image references it, its mtime is still old) and forgotten
   (its row and every repository's link); after the commit its bytes are deleted unless a
   commit or put refreshed them meanwhile (``BlobDriver.delete(digest, older_than)``).

Runs take the ``gc`` lock, so a server's periodic run and ``openecr gc`` never overlap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from openecr.domain.digest import Digest
from openecr.ports.locks import Locks
from openecr.ports.metadata import MetadataStore
from openecr.service.blobstore import BlobStore

log = logging.getLogger("openecr.gc")

LOCK = "gc"
DEFAULT_GRACE = 3600.0
DEFAULT_UPLOAD_EXPIRY = 86400.0

Progress = Callable[[int, int], None]  # (blobs examined, blobs to examine)


@dataclass(slots=True)
class GcReport:
    """What a run reclaimed (with ``dry_run``: what it would reclaim)."""

    dry_run: bool = False
    blobs: int = 0
    bytes: int = 0
    uploads: int = 0  # upload sessions expired, and orphaned session bytes dropped
    upload_bytes: int = 0
    kept: int = 0  # blobs in use or younger than the grace period

    def summary(self) -> str:
        verb = "would reclaim" if self.dry_run else "reclaimed"
        return (
            f"{verb} {self.blobs} {'blob' if self.blobs == 1 else 'blobs'} ({self.bytes} bytes) "
            f"and {self.uploads} upload {'session' if self.uploads == 1 else 'sessions'} "
            f"({self.upload_bytes} bytes); {self.kept} blobs kept"
        )


class GarbageCollector:
    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        locks: Locks,
        *,
        grace: float = DEFAULT_GRACE,
        upload_expiry: float = DEFAULT_UPLOAD_EXPIRY,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.meta = meta
        self.blobs = blobs
        self.locks = locks
        self.grace = grace
        self.upload_expiry = upload_expiry
        self.now = now

    def run(
        self, *, dry_run: bool = False, wait: bool = False, progress: Progress | None = None
    ) -> GcReport | None:
        """One collection; None when another one holds the lock (and ``wait`` is false)."""
        with self.locks.hold(LOCK, wait=wait) as held:
            if not held:
                return None
            report = GcReport(dry_run=dry_run)
            self._uploads(report)
            self._blobs(report, progress)
        return report

    def run_logged(self) -> GcReport | None:
        """:meth:`run` for a server's schedule: logs what it reclaimed."""
        report = self.run()
        if report is None:
            log.info("garbage collection skipped: another one is running")
        elif report.blobs or report.uploads:
            log.info("garbage collection %s", report.summary())
        return report

    def _uploads(self, report: GcReport) -> None:
        now = self.now()
        on_store = list(self.blobs.list_uploads())  # listed before the sessions are read
        with self.meta.read() as tx:
            sessions = tx.list_uploads()
        live: set[str] = set()
        for session in sessions:
            if session.active_at.timestamp() >= now - self.upload_expiry:
                live.add(session.state.key)
                continue
            live.add(session.state.key)  # its bytes go below with the session, or stay
            if report.dry_run or self._expire(session.id, session.state.token):
                report.uploads += 1
                report.upload_bytes += session.state.size
                if not report.dry_run:
                    self.blobs.abort(session.state)
        for stored in on_store:
            if stored.name in live or stored.modified >= now - self.upload_expiry:
                continue
            report.uploads += 1
            report.upload_bytes += stored.size
            if not report.dry_run:
                self.blobs.discard_upload(stored.name)

    def _expire(self, upload_id: str, token: str) -> bool:
        """Forget a session unless a part changed it since it was read."""
        with self.meta.write() as tx:
            current = tx.get_upload(upload_id)
            if current is None or current.state.token != token:
                return False
            tx.delete_upload(upload_id)
        return True

    def _blobs(self, report: GcReport, progress: Progress | None) -> None:
        cutoff = self.now() - self.grace
        stored = list(self.blobs.list())
        with self.meta.read() as tx:
            in_use = tx.blobs_in_use()
        for done, blob in enumerate(stored, 1):
            digest = Digest.try_parse(blob.name)
            if digest is None or blob.name in in_use or blob.modified >= cutoff:
                report.kept += 1
            elif report.dry_run or self._reclaim(digest, cutoff):
                report.blobs += 1
                report.bytes += blob.size
            else:
                report.kept += 1
            if progress is not None:
                progress(done, len(stored))

    def _reclaim(self, digest: Digest, cutoff: float) -> bool:
        """Forget and delete one blob unless an image took it or a store refreshed it since
        the mark; see the module docstring."""
        with self.meta.write() as tx:
            if tx.blob_in_use(digest):
                return False
            modified = self.blobs.modified(digest)
            if modified is None or modified >= cutoff:
                return False
            tx.forget_blob(digest)
        return self.blobs.delete(digest, older_than=cutoff)
