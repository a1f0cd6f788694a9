"""Pull times (``lastRecordedPullTime``) recorded off the request path.

A pull notes ``(repository, digest, time)`` in memory; a background thread writes what was
noted in one transaction every :data:`FLUSH_SECONDS`, so a pull never waits on a write. An
image whose recorded pull is less than ``interval`` old is not noted again: at most one write
per image per interval (ECR refreshes the time at least once every 24 hours). Notes not yet
written when the process dies are lost; :meth:`PullRecorder.close` writes them at shutdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from openecr.domain.model import ImageRecord
from openecr.ports.metadata import MetadataStore
from openecr.service.common import Clock, utcnow

log = logging.getLogger("openecr.pulls")

FLUSH_SECONDS = 1.0
DEFAULT_INTERVAL = timedelta(minutes=1)


class PullRecorder:
    def __init__(
        self,
        meta: MetadataStore,
        clock: Clock = utcnow,
        interval: timedelta = DEFAULT_INTERVAL,
    ) -> None:
        self.meta = meta
        self.clock = clock
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], datetime] = {}
        self._noted: dict[tuple[int, str], datetime] = {}  # last time this process noted one
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def note(self, images: Iterable[ImageRecord]) -> None:
        """Record that ``images`` were pulled now (cheap: no I/O on the caller's thread)."""
        now = self.clock()
        since = now - self.interval
        with self._lock:
            for image in images:
                last = image.last_pulled_at
                if last is not None and last > since:
                    continue
                key = (image.repository_id, image.digest)
                noted = self._noted.get(key)
                if noted is not None and noted > since:
                    continue
                self._noted[key] = now
                self._pending[key] = now
            if len(self._noted) > 100_000:  # forget the oldest half; they are in the store
                for old in list(self._noted)[:50_000]:
                    del self._noted[old]
            if self._pending and self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="openecr-pull-times", daemon=True
                )
                self._thread.start()

    def flush(self) -> int:
        """Write what was noted; return how many images it touched."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if pending:
            try:
                with self.meta.write() as tx:
                    tx.record_pulls([(r, d, at) for (r, d), at in pending.items()])
            except Exception:  # the store is failing: keep the times for the next try
                log.exception("recording %d pull times failed", len(pending))
                with self._lock:
                    for key, at in pending.items():
                        self._pending.setdefault(key, at)
                return 0
        return len(pending)

    def _run(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
