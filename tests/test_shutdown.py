"""Ctrl-C (SIGINT) and SIGTERM during a long upload: the server ends the streaming part (503,
the part dropped whole), stops with exit code 0 and no traceback, and after a restart the
upload resumes where its last finished part left it."""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Iterator

import httpx
import pytest

from conftest import ProcessServer, ServerFactory

pytestmark = pytest.mark.slow  # signals need a process


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_long_upload_stops_cleanly_and_keeps_it_resumable(
    make_server: ServerFactory, sig: signal.Signals
) -> None:
    server: ProcessServer = make_server(process=True)
    server.client().create_repository(repositoryName="stop/app")
    first, rest = b"a" * 1000, b"b" * 5000
    with httpx.Client(base_url=server.endpoint, timeout=60) as v2:
        started = v2.post("/v2/stop/app/blobs/uploads/")
        location = v2.patch(started.headers["location"], content=first).headers["location"]
    sent = threading.Event()
    release = threading.Event()
    outcome: list[object] = []

    def slow_body() -> Iterator[bytes]:
        yield b"c" * 4096
        sent.set()
        release.wait(60)  # the client stalls mid-body, as a long push does
        yield b"c" * 4096

    def stream() -> None:
        try:
            with httpx.Client(base_url=server.endpoint, timeout=60) as client:
                outcome.append(client.patch(location, content=slow_body()).status_code)
        except httpx.HTTPError as error:  # the connection closed under it: also fine
            outcome.append(error)

    streaming = threading.Thread(target=stream)
    streaming.start()
    assert sent.wait(30)
    assert server.process is not None
    server.process.send_signal(sig)
    assert server.process.wait(timeout=60) == 0
    release.set()
    streaming.join(timeout=60)
    assert (outcome and outcome[0] in (503,)) or isinstance(outcome[0], httpx.HTTPError), outcome
    assert server.log is not None
    log = server.log.read_text()
    assert "Traceback" not in log and "CancelledError" not in log, log

    server.process = None
    server.start()
    with httpx.Client(base_url=server.endpoint, timeout=60) as v2:
        status = v2.get(location)
        assert status.status_code == 204 and status.headers["range"] == "0-999"
        digest = "sha256:" + hashlib.sha256(first + rest).hexdigest()
        patched = v2.patch(location, content=rest)
        done = v2.put(patched.headers["location"], params={"digest": digest})
        assert done.status_code == 201, done.text
