"""Pull times (``lastRecordedPullTime``) recorded off the request path.

A pull notes ``(repository, digest, time)`` in memory, so a pull never waits on a write; a
background thread looks every :data:`FLUSH_SECONDS` and writes what was noted in one
transaction (at most :data:`FLUSH_MAX` images each, the rest at the next) once a look finds no
new note since the last (the pulls paused), or once the oldest note has waited
:data:`MAX_DELAY`. A burst of pulls is served without the writes beside it, and the time
written is still each image's pull time, not the time of the write. The times are rows of their own
(``image_pulls`` in the SQL store), so writing them leaves the pages of the images alone.

At most one write per image per window of ``interval`` and process (ECR refreshes the time at
least once every 24 hours): the process remembers which images were pulled in the current window
(one set of image keys per registry, principal and repository: the store's integer key of an
image, so the check hashes and compares no digest), and a pull notes only those not in it (a
subset check, no lock, no clock read when nothing is new). The writer starts a new window every
``interval``.
So a recorded time is that of the first pull of a window, at most ``interval`` before the last.
Notes not yet written when the process dies are lost; :meth:`PullRecorder.close` writes them at
shutdown.
The writer never waits for a lock a client's write holds (PostgreSQL): images it cannot lock at
once are written at the next flush, so it cannot deadlock with pushes, deletes or other replicas.

A pull is noted with the registry and the principal that pulled; the writer drops the notes of
principals on the registry's pull-time update exclusion list (``excluded``, asked once per
registry and principal per write) and takes them out of the window, so a pull by an excluded
principal never moves the time, the check costs the pull nothing, and the principal's next pull
is checked again (its exclusion may have been lifted).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from openecr.ports.metadata import MetadataStore
from openecr.service.common import Clock, utcnow

log = logging.getLogger("openecr.pulls")

FLUSH_SECONDS = 1.0
# the most images one flush writes; the rest wait for the next: a burst of first pulls (a new
# window over a large repository) is written over several seconds in short transactions, so
# the writer never holds the GIL and the database's write lock for long
FLUSH_MAX = 2000
# the window: an image's time is written at most once an hour (ECR refreshes it at least once a
# day); a one-minute window rewrote the times of every image still being pulled each minute,
# which cost 100-id BatchGetImage over a 10,000-image repository 2.5 % of its calls
DEFAULT_INTERVAL = timedelta(hours=1)
# while pulls keep coming, the longest a noted time waits to be written (it is written sooner,
# at the writer's next look, once a second passes without a new note)
MAX_DELAY = timedelta(minutes=1)

# (registry id, principal ARN) -> whether the principal's pulls leave pull times alone
Excluded = Callable[[str, str], bool]
Who = tuple[str, str | None, int]  # (registry id, principal or None, repository id)
Image = tuple[int, str]  # (repository id, digest)
# a pull's note for the writer: who pulled, the digests new in the window, their keys, when
Noted = tuple[Who, Sequence[str], Sequence[int], datetime]


class PullRecorder:
    def __init__(
        self,
        meta: MetadataStore,
        clock: Clock = utcnow,
        interval: timedelta = DEFAULT_INTERVAL,
        excluded: Excluded | None = None,
        max_delay: timedelta = MAX_DELAY,
    ) -> None:
        self.meta = meta
        self.clock = clock
        self.interval = interval
        self.excluded = excluded
        self._lock = threading.Lock()  # the writer's side: one flush at a time, the thread
        # the keys of the images noted in the current window, by who pulled them from which
        # repository; the writer replaces the whole dict to start a window (pulls read it and
        # add to its sets)
        self._window: dict[Who, set[int]] = {}
        self._window_started = clock()
        # what pulls noted, for the writer: deque.append and popleft are atomic
        self._queue: deque[Noted] = deque()
        self.max_delay = max_delay
        self._looked = 0  # the queue's length at the writer's last look
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def note(
        self,
        repository_id: int,
        images: Mapping[int, str],
        registry_id: str = "",
        principal: str | None = None,
    ) -> None:
        """Record that ``principal`` pulled ``images`` (each image's key in the store,
        ``ImageRecord.seq``, to its digest) of repository ``repository_id`` of registry
        ``registry_id`` now. The cheapest thing on a pull's path: a subset check of the keys
        (integers: no hashing of digests, no comparison of strings) against the images already
        noted in this window; exclusions and the write happen in the writer."""
        who = (registry_id, principal, repository_id)
        window = self._window
        seen = window.get(who)
        if seen is None:
            seen = window.setdefault(who, set())
        elif images.keys() <= seen:  # the common case: all noted already
            return
        new = [key for key in images if key not in seen]
        if not new:
            return
        seen.update(new)
        self._queue.append((who, [images[key] for key in new], new, self.clock()))
        if self._thread is None:
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(
                    target=self._run, name="openecr-pull-times", daemon=True
                )
                self._thread.start()

    def _rotate(self) -> None:
        """Start a new window once ``interval`` has passed (under ``_lock``)."""
        now = self.clock()
        if now - self._window_started >= self.interval:
            self._window = {}
            self._window_started = now

    def flush(self) -> int:
        """Write what was noted (starting a new window once ``interval`` has passed); return
        how many images it wrote."""
        with self._lock:
            self._rotate()
            due = self._included(self._take())
            if not due:
                return 0
            items = [(r, d, at) for (r, d), at in due.items()]
            items, later = items[:FLUSH_MAX], items[FLUSH_MAX:]
            self._requeue(later)  # written at the next flush
            try:
                with self.meta.write() as tx:
                    busy = tx.record_pulls(items)
            except Exception:  # the store is failing: keep the times for the next try
                log.exception("recording %d pull times failed", len(items))
                self._requeue(items)
                return 0
            # images another transaction held (it never waits for them): the next flush
            self._requeue(busy)
            return len(items) - len(busy)

    def _requeue(self, images: Sequence[tuple[int, str, datetime]]) -> None:
        """Put ``(repository id, digest, time)`` back for the next flush (exclusions were
        already applied: noted without a principal)."""
        for repo_id, digest, at in images:
            self._queue.append((("", None, repo_id), (digest,), (), at))

    def _take(self) -> list[Noted]:
        """What pulls noted since the last take."""
        taken = []
        queue = self._queue
        while True:
            try:
                taken.append(queue.popleft())
            except IndexError:
                return taken

    def _included(self, noted: list[Noted]) -> dict[Image, datetime]:
        """The latest pull of each image, leaving out pulls by excluded principals (taken out
        of the window: their next pull is noted and checked again)."""
        verdicts: dict[tuple[str, str], bool] = {}
        latest: dict[Image, datetime] = {}
        for who, digests, keys, at in noted:
            registry_id, principal, repo_id = who
            if principal is not None and self.excluded is not None:
                asked = (registry_id, principal)
                if asked not in verdicts:
                    try:
                        verdicts[asked] = self.excluded(registry_id, principal)
                    except Exception:  # the store is failing: record the pull
                        log.exception("checking pull-time exclusions failed")
                        verdicts[asked] = False
                if verdicts[asked]:
                    seen = self._window.get(who)
                    if seen is not None:
                        seen.difference_update(keys)
                    continue
            for digest in digests:
                image = (repo_id, digest)
                if image not in latest or latest[image] < at:
                    latest[image] = at
        return latest

    def _due(self) -> bool:
        """Whether the writer writes now: when nothing was noted since its last look (the
        pulls have paused), or when the oldest note has waited ``max_delay``. So a burst of
        pulls is served first and its times are written once it is over, and sustained pulls
        get their times written at least every ``max_delay``."""
        queue = self._queue
        size = len(queue)
        quiet = size == self._looked
        self._looked = size
        if not size:
            return False
        try:
            oldest = queue[0][3]
        except IndexError:  # taken meanwhile (close)
            return False
        return quiet or self.clock() - oldest >= self.max_delay

    def _run(self) -> None:
        while not self._wake.wait(FLUSH_SECONDS):
            if self._due():
                self.flush()
                self._looked = len(self._queue)  # what is left is written when quiet or old
            else:
                with self._lock:
                    self._rotate()

    def close(self) -> None:
        """Stop the thread and write what is left."""
        with self._lock:
            self._stopped = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join(timeout=10)
        self.flush()
