"""The process's Prometheus metrics (``GET /metrics``), and the hooks that feed them.

One :class:`Metrics` per app, each with its own ``CollectorRegistry`` (tests run many apps in
one process). The HTTP layer calls :meth:`Metrics.request`; services and schedulers call the
other hooks (:meth:`image_pushed`, :meth:`lifecycle_ran`, :meth:`gc_ran`). Storage totals are
read from the metadata store at scrape time.

With ``openecr serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start; prometheus_client then keeps each worker's counters in files there and any
worker's ``/metrics`` reports the sum over all of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from openecr.domain.storage import StorageTotals

disable_created_metrics()  # type: ignore[no-untyped-call]  # no *_created series: they double the exposition and say little

# seconds: from a cached manifest HEAD (~1 ms) to a large blob (minutes)
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)


class _StorageCollector(Collector):
    """Gauges of what the store holds, read when scraped."""

    def __init__(self, totals: Callable[[], StorageTotals]) -> None:
        self.totals = totals

    def collect(self) -> Iterator[Metric]:
        found = self.totals()
        for name, doc, value in (
            ("openecr_repositories", "Repositories, in every registry", found.repositories),
            ("openecr_images", "Images (manifests), in every repository", found.images),
            ("openecr_blobs", "Committed blobs, each digest once", found.blobs),
            ("openecr_blob_bytes", "Bytes of the committed blobs", found.blob_bytes),
            ("openecr_uploads_in_progress", "Upload sessions started, not ended", found.uploads),
        ):
            yield GaugeMetricFamily(name, doc, value=value)


class Metrics:
    """Counters and histograms of one app; :meth:`exposition` renders them."""

    def __init__(self, totals: Callable[[], StorageTotals] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.totals = totals
        r = self.registry
        self._requests = Counter(
            "openecr_requests",
            "HTTP requests answered, by API (ecr, oci, ops, other), operation and status",
            ["api", "operation", "status"],
            registry=r,
        )
        self._duration = Histogram(
            "openecr_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by API and operation",
            ["api", "operation"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._bytes_in = Counter(
            "openecr_request_body_bytes", "Request body bytes received, by API", ["api"], registry=r
        )
        self._bytes_out = Counter(
            "openecr_response_body_bytes", "Response body bytes sent, by API", ["api"], registry=r
        )
        self._pushes = Counter("openecr_image_pushes", "Images pushed (committed)", registry=r)
        self._lifecycle_runs = Counter(
            "openecr_lifecycle_runs", "Lifecycle policy runs (not dry runs)", registry=r
        )
        self._lifecycle_images = Counter(
            "openecr_lifecycle_images",
            "Images lifecycle runs acted on, by outcome (expired, transitioned, failed)",
            ["outcome"],
            registry=r,
        )
        self._gc_runs = Counter("openecr_gc_runs", "Garbage collection runs", registry=r)
        self._gc_blobs = Counter("openecr_gc_blobs_deleted", "Blobs GC deleted", registry=r)
        self._gc_bytes = Counter("openecr_gc_bytes_reclaimed", "Bytes GC reclaimed", registry=r)
        self._gc_uploads = Counter(
            "openecr_gc_uploads_expired", "Upload sessions GC expired", registry=r
        )
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._api_bytes: dict[str, tuple[Counter, Counter]] = {}
        if totals is not None:
            self.registry.register(_StorageCollector(totals))

    # --- hooks ------------------------------------------------------------------------------

    def request(
        self,
        api: str,
        operation: str,
        status: int,
        seconds: float,
        bytes_in: int,
        bytes_out: int,
    ) -> None:
        """Count one answered request (``operation`` must come from a bounded set)."""
        key = (api, operation, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self._requests.labels(api, operation, str(status)),
                self._duration.labels(api, operation),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        sizes = self._api_bytes.get(api)
        if sizes is None:
            sizes = (self._bytes_in.labels(api), self._bytes_out.labels(api))
            self._api_bytes[api] = sizes
        if bytes_in:
            sizes[0].inc(bytes_in)
        if bytes_out:
            sizes[1].inc(bytes_out)

    def image_pushed(self, _pushed: object = None) -> None:
        """An image was pushed (an ``ImageService.on_push`` listener)."""
        self._pushes.inc()

    def lifecycle_ran(self, expired: int, transitioned: int, failed: int) -> None:
        """A lifecycle run (not a dry run) ended having acted on these many images."""
        self._lifecycle_runs.inc()
        for outcome, count in (
            ("expired", expired),
            ("transitioned", transitioned),
            ("failed", failed),
        ):
            self._lifecycle_images.labels(outcome).inc(count)

    def gc_ran(self, blobs_deleted: int, bytes_reclaimed: int, uploads_expired: int = 0) -> None:
        """A garbage collection (not a dry run) ended having deleted these blobs and bytes and
        expired these upload sessions."""
        self._gc_runs.inc()
        self._gc_blobs.inc(blobs_deleted)
        self._gc_bytes.inc(bytes_reclaimed)
        self._gc_uploads.inc(uploads_expired)

    # --- exposition -------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition format (body, content type) of every metric."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            combined = CollectorRegistry()
            multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
            if self.totals is not None:
                combined.register(_StorageCollector(self.totals))
            return generate_latest(combined), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
