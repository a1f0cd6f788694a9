"""Pull times (``lastRecordedPullTime``) recorded off the request path.

A pull notes ``(repository, digest, time)`` in memory; a background thread writes what was
noted in one transaction every :data:`FLUSH_SECONDS`, so a pull never waits on a write. The
writer skips an image this process recorded less than ``interval`` ago: at most one write per
image per interval and process (ECR refreshes the time at least once every 24 hours). Notes not yet
written when the process dies are lost; :meth:`PullRecorder.close` writes them at shutdown.

A pull is noted with the registry and the principal that pulled; the writer drops the notes of
principals on the registry's pull-time update exclusion list (``excluded``, asked once per
registry and principal per write), so a pull by an excluded principal never moves the time and
the check costs the pull nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from openecr.domain.model import ImageRecord
from openecr.ports.metadata import MetadataStore
from openecr.service.common import Clock, utcnow

log = logging.getLogger("openecr.pulls")

FLUSH_SECONDS = 1.0
DEFAULT_INTERVAL = timedelta(minutes=1)

# (registry id, principal ARN) -> whether the principal's pulls leave pull times alone
Excluded = Callable[[str, str], bool]


class PullRecorder:
    def __init__(
        self,
        meta: MetadataStore,
        clock: Clock = utcnow,
        interval: timedelta = DEFAULT_INTERVAL,
        excluded: Excluded | None = None,
    ) -> None:
        self.meta = meta
        self.clock = clock
        self.interval = interval
        self.excluded = excluded
        self._lock = threading.Lock()
        # (repository id, digest, registry id, principal or None) -> when it was pulled
        self._pending: dict[tuple[int, str, str, str | None], datetime] = {}
        self._noted: dict[tuple[int, str], datetime] = {}  # last time this process noted one
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def note(
        self, images: Iterable[ImageRecord], registry_id: str = "", principal: str | None = None
    ) -> None:
        """Record that ``principal`` pulled ``images`` of registry ``registry_id`` now. The
        cheapest thing on a pull's path: one clock read and a dictionary update; exclusions,
        the throttle and the write happen in the writer."""
        now = self.clock()
        with self._lock:
            self._pending.update(
                ((i.repository_id, i.digest, registry_id, principal), now) for i in images
            )
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="openecr-pull-times", daemon=True
                )
                self._thread.start()

    def flush(self) -> int:
        """Write what was noted, less the images this process recorded within ``interval``;
        return how many images it wrote."""
        with self._lock:
            noted_by, self._pending = self._pending, {}
        pending = self._included(noted_by)
        due = {
            key: at
            for key, at in pending.items()
            if (noted := self._noted.get(key)) is None or at - noted >= self.interval
        }
        if due:
            try:
                with self.meta.write() as tx:
                    tx.record_pulls([(r, d, at) for (r, d), at in due.items()])
            except Exception:  # the store is failing: keep the times for the next try
                log.exception("recording %d pull times failed", len(due))
                with self._lock:
                    for (repo_id, digest), at in due.items():
                        self._pending.setdefault((repo_id, digest, "", None), at)
                return 0
            self._noted.update(due)
            if len(self._noted) > 100_000:  # forget the oldest half: they are in the store
                for old in list(self._noted)[:50_000]:
                    del self._noted[old]
        return len(due)

    def _included(
        self, noted: dict[tuple[int, str, str, str | None], datetime]
    ) -> dict[tuple[int, str], datetime]:
        """The latest pull of each image, leaving out pulls by excluded principals."""
        verdicts: dict[tuple[str, str], bool] = {}
        latest: dict[tuple[int, str], datetime] = {}
        for (repo_id, digest, registry_id, principal), at in noted.items():
            if principal is not None and self.excluded is not None:
                key = (registry_id, principal)
                if key not in verdicts:
                    try:
                        verdicts[key] = self.excluded(registry_id, principal)
                    except Exception:  # the store is failing: record the pull
                        log.exception("checking pull-time exclusions failed")
                        verdicts[key] = False
                if verdicts[key]:
                    continue
            image = (repo_id, digest)
            if image not in latest or latest[image] < at:
                latest[image] = at
        return latest

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
