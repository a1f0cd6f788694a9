"""The process's Prometheus metrics (``GET /metrics``), and the hooks that feed them.

One :class:`Metrics` per app, each with its own ``CollectorRegistry`` (tests run many apps in
one process). The HTTP layer calls :meth:`Metrics.request`; services and schedulers call the
other hooks (:meth:`image_pushed`, :meth:`lifecycle_ran`, :meth:`gc_ran`). Storage totals are
read from the metadata store at scrape time.

With ``openecr serve --workers N`` the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start; prometheus_client then keeps each worker's counters in files there and any
worker's ``/metrics`` reports the sum over all of them. One process counts its requests in
plain integers instead (:class:`_RequestCounts`), read when scraped: prometheus_client's
counters take a lock and several calls per update, which cost more than a small request's
own work on the read path (four updates per request).
"""

from __future__ import annotations

import os
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


# the buckets' "le" labels, as prometheus_client's Histogram writes them
BUCKET_LABELS = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]
# one answered request: api, operation, status, seconds, request and response body bytes
Request = tuple[str, str, int, float, int, int]
REQUESTS = (
    "openecr_requests",
    "HTTP requests answered, by API (ecr, oci, ops, other), operation and status",
)
DURATION = (
    "openecr_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by API and operation",
)
BYTES_IN = ("openecr_request_body_bytes", "Request body bytes received, by API")
BYTES_OUT = ("openecr_response_body_bytes", "Response body bytes sent, by API")


class _RequestCounts(Collector):
    """The request metrics of one process, in plain integers (see the module docstring);
    :meth:`add` may be called from any thread. Exposed as prometheus_client's ``Counter`` and
    ``Histogram`` of the same names would be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (api, operation, status) -> [requests, observations per duration bucket (the last
        # one +Inf), their sum, request body bytes, response body bytes]: one row per request
        self._rows: dict[tuple[str, str, int], list[float]] = {}

    def add(self, request: Request) -> None:
        api, operation, status, seconds, bytes_in, bytes_out = request
        key = (api, operation, status)
        with self._lock:
            row = self._rows.get(key)
            if row is None:
                row = self._rows[key] = [0] * (len(DURATION_BUCKETS) + 5)
            row[0] += 1
            row[1 + bisect_left(DURATION_BUCKETS, seconds)] += 1  # le: seconds <= bound
            row[-3] += seconds
            row[-2] += bytes_in
            row[-1] += bytes_out

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows = {key: list(row) for key, row in self._rows.items()}
        counted = CounterMetricFamily(*REQUESTS, labels=["api", "operation", "status"])
        durations: dict[tuple[str, str], list[float]] = {}
        sizes: dict[str, list[float]] = {}
        for (api, operation, status), row in rows.items():
            counted.add_metric([api, operation, str(status)], row[0])
            histogram = durations.setdefault((api, operation), [0] * (len(DURATION_BUCKETS) + 2))
            for index, value in enumerate(row[1:-2]):
                histogram[index] += value
            api_sizes = sizes.setdefault(api, [0, 0])
            api_sizes[0] += row[-2]
            api_sizes[1] += row[-1]
        yield counted
        timed = HistogramMetricFamily(*DURATION, labels=["api", "operation"])
        for (api, operation), histogram in durations.items():
            cumulative: list[tuple[str, float]] = []
            observed = 0.0
            for bound, seen in zip(BUCKET_LABELS, histogram[:-1], strict=True):
                observed += seen
                cumulative.append((bound, observed))
            timed.add_metric([api, operation], cumulative, histogram[-1])
        yield timed
        for (name, doc), index in ((BYTES_IN, 0), (BYTES_OUT, 1)):
            family = CounterMetricFamily(name, doc, labels=["api"])
            for api, values in sizes.items():
                family.add_metric([api], values[index])
            yield family


class _SharedRequestCounts:
    """The request metrics of a worker of several (``PROMETHEUS_MULTIPROC_DIR``):
    prometheus_client's counters, which it keeps in files every worker's scrape reads."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter(*REQUESTS, ["api", "operation", "status"], registry=registry)
        self._duration = Histogram(
            *DURATION, ["api", "operation"], buckets=DURATION_BUCKETS, registry=registry
        )
        self._bytes_in = Counter(*BYTES_IN, ["api"], registry=registry)
        self._bytes_out = Counter(*BYTES_OUT, ["api"], registry=registry)
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._api_bytes: dict[str, tuple[Counter, Counter]] = {}

    def add(self, request: Request) -> None:
        api, operation, status, seconds, bytes_in, bytes_out = request
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


class Metrics:
    """Counters and histograms of one app; :meth:`exposition` renders them."""

    def __init__(self, totals: Callable[[], StorageTotals] | None = None) -> None:
        self.registry = CollectorRegistry()
        self.totals = totals
        r = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            self._request_counts: _RequestCounts | _SharedRequestCounts = _SharedRequestCounts(r)
        else:
            self._request_counts = _RequestCounts()
            r.register(self._request_counts)
        # count one answered request: (api, operation, status, seconds, request body bytes,
        # response body bytes); ``operation`` must come from a bounded set
        self.count_request: Callable[[Request], None] = self._request_counts.add
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
        if totals is not None:
            self.registry.register(_StorageCollector(totals))

    # --- hooks ------------------------------------------------------------------------------

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
