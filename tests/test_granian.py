"""``openecr serve --server granian``: the same registry under granian's workers.

Real ``openecr serve`` processes (so marked slow), real HTTP clients: uploads across both
workers, whole blobs sent by granian from their files (``http.response.pathsend``) and ranges
streamed by openecr, TLS, the access log, /metrics summed over the workers, and a clean stop.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import ssl
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conftest import VENV_BIN, ServerFactory
from test_observability import make_certificates
from test_workers import alive, answered_by, children, connection_to_each_worker

pytestmark = pytest.mark.slow  # starts openecr serve processes


def _requests_total(metrics: str, operation: str) -> float:
    pattern = rf'openecr_requests_total\{{[^}}]*operation="{operation}"[^}}]*\}} ([0-9.e+]+)'
    return sum(float(value) for value in re.findall(pattern, metrics))


def test_two_granian_workers_over_tls_push_and_pull_and_stop_cleanly(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    ca, cert, key = make_certificates(tmp_path / "tls", ["127.0.0.1"])
    server = make_server(
        "--server",
        "granian",
        "--workers",
        "2",
        "--create-on-push",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
        process=True,
    )
    assert server.process is not None and server.endpoint.startswith("https://")
    clients = connection_to_each_worker(server, ssl.create_default_context(cafile=str(ca)))
    first, second = (clients[pid] for pid in sorted(clients))
    try:
        data = os.urandom(3 * 1024 * 1024 + 5)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        started = first.post("/v2/granian/app/blobs/uploads/")
        assert started.status_code == 202, started.text
        half = len(data) // 2
        patched = second.patch(
            started.headers["location"],
            content=data[:half],
            headers={"Content-Range": f"0-{half - 1}"},
        )
        assert patched.status_code == 202, patched.text
        done = first.put(
            patched.headers["location"],
            params={"digest": digest},
            content=data[half:],
            headers={"Content-Range": f"{half}-{len(data) - 1}"},
        )
        assert done.status_code == 201, done.text
        assert {answered_by(server, r) for r in (started, patched, done)} == set(clients)
        for client in (first, second):
            whole = client.get(f"/v2/granian/app/blobs/{digest}")
            assert whole.status_code == 200
            assert whole.headers["content-length"] == str(len(data))
            assert whole.headers["docker-content-digest"] == digest
            assert whole.content == data
            span = client.get(f"/v2/granian/app/blobs/{digest}", headers={"Range": "bytes=7-"})
            assert span.status_code == 206 and span.content == data[7:]
        metrics = first.get("/metrics").text
        assert _requests_total(metrics, "GetBlob") == 4  # counted in both workers
        out = re.findall(r"GetBlob 200 ([0-9]+) ", server.log.read_text())
        assert out == [str(len(data))] * 2  # the access log, pathsend included
    finally:
        for client in clients.values():
            client.close()
    spawned = children(server.process.pid)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) == 0
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in spawned) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in spawned if alive(pid)] == []
    # every worker closed its runtime: the last SQLite close removes the WAL files
    assert sorted(p.name for p in server.data_dir.glob("metadata.db*")) == ["metadata.db"]


def test_a_granian_worker_serves_a_pull_that_the_client_reads_slowly(
    make_server: ServerFactory,
) -> None:
    """One worker (the default): a whole blob pulled in small reads arrives intact while the
    same worker answers other requests."""
    server = make_server("--server", "granian", "--create-on-push", process=True)
    data = os.urandom(2 * 1024 * 1024)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.endpoint, timeout=30) as client:
        done = client.post(
            "/v2/granian/slow/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert done.status_code == 201, done.text
        received = bytearray()
        with client.stream("GET", f"/v2/granian/slow/blobs/{digest}") as response:
            for chunk in response.iter_bytes(65536):
                received += chunk
                if len(received) < 256 * 1024:
                    assert httpx.get(f"{server.endpoint}/healthz").status_code == 200
        assert bytes(received) == data
        assert client.head(f"/v2/granian/slow/blobs/{digest}").headers["content-length"] == str(
            len(data)
        )


def test_an_unknown_server_is_refused_before_anything_starts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = subprocess.run(
        [str(VENV_BIN / "openecr"), "serve", "--data-dir", str(data_dir), "--port", "0"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPENECR_SERVER": "nginx"},
        timeout=60,
    )
    assert done.returncode == 2
    assert "openecr: OPENECR_SERVER must be uvicorn or granian, not 'nginx'" in done.stderr
    assert not data_dir.exists()
