"""Failures of the storage underneath (a full or read-only data directory or database), told
apart from bugs: they answer an error that names the cause and are logged once a minute, not
as a traceback per request."""

from __future__ import annotations

import errno
import logging
import threading
import time

from openecr.errors import StorageUnavailable

log = logging.getLogger("openecr.storage")

FULL = "no space left in the data directory"
READ_ONLY = "the data directory is read-only"
LOG_EVERY = 60.0  # seconds between two log lines about the same cause

_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("database or disk is full", "no space left on device")
_READ_ONLY_TEXTS = ("attempt to write a readonly database", "read-only file system")

_lock = threading.Lock()
_logged: dict[str, float] = {}


def _cause(error: BaseException) -> str | None:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL_ERRNOS:
            return FULL
        if isinstance(current, OSError) and current.errno == errno.EROFS:
            return READ_ONLY
        text = str(current).lower()
        if any(t in text for t in _FULL_TEXTS):
            return FULL
        if any(t in text for t in _READ_ONLY_TEXTS):
            return READ_ONLY
        current = current.__cause__ or current.__context__
    return None


def storage_error(error: BaseException) -> StorageUnavailable | None:
    """The error to answer when ``error`` comes from storage that is full or read-only (logged
    at most once per :data:`LOG_EVERY` seconds per cause), else None."""
    cause = _cause(error)
    if cause is None:
        return None
    now = time.monotonic()
    with _lock:
        last = _logged.get(cause)
        if last is None or now - last >= LOG_EVERY:
            _logged[cause] = now
            log.error("writes fail: %s (%s)", cause, error)
    return StorageUnavailable(f"The request failed: {cause}")
