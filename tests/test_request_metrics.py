"""The request metrics of one process (plain integers) read exactly as prometheus_client's
counters and histogram would, which a worker of several uses."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from openecr.service.metrics import _RequestCounts, _SharedRequestCounts

REQUESTS = [
    ("ecr", "BatchGetImage", 200, 0.0004, 61, 1200),
    ("ecr", "BatchGetImage", 200, 0.001, 61, 1200),  # on a bucket's bound: counted in it
    ("ecr", "BatchGetImage", 400, 0.0031, 12, 90),
    ("oci", "GetManifest", 200, 0.07, 0, 1300),
    ("oci", "PatchUpload", 202, 42.0, 26_214_400, 0),
    ("oci", "GetBlob", 200, 900.0, 0, 10),  # past the last bound: only in +Inf
    ("ops", "Metrics", 200, 0.0, 0, 0),
]


def _exposition(counts: object) -> str:
    registry = CollectorRegistry()
    if isinstance(counts, _RequestCounts):
        registry.register(counts)
    else:
        counts = _SharedRequestCounts(registry)
    for request in REQUESTS:
        counts.add(request)  # type: ignore[attr-defined]
    return generate_latest(registry).decode()


def test_one_process_counts_read_as_prometheus_clients_would() -> None:
    plain = _exposition(_RequestCounts())
    shared = _exposition(None)
    assert sorted(plain.splitlines()) == sorted(shared.splitlines())
    assert 'openecr_requests_total{api="ecr",operation="BatchGetImage",status="200"} 2.0' in plain
    assert (
        'openecr_request_duration_seconds_bucket{api="ecr",le="0.001",operation="BatchGetImage"}'
        " 2.0" in plain
    )
    assert (
        'openecr_request_duration_seconds_bucket{api="oci",le="300.0",operation="GetBlob"} 0.0'
        in plain
    )
    assert 'openecr_request_body_bytes_total{api="oci"} 2.62144e+07' in plain
