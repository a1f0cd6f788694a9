"""The access log and metrics of real ``openecr serve`` processes: on by default, on stderr,
summed over ``--workers``; and ``make serve`` installs only what serving needs."""

from __future__ import annotations

import json
import re
import subprocess
import time

import httpx
import pytest

from conftest import ROOT, ServerFactory
from test_observability import metric

pytestmark = pytest.mark.slow  # starts openecr serve and make


def test_the_access_log_is_on_by_default_at_any_log_level(make_server: ServerFactory) -> None:
    server = make_server(process=True)  # the tests' servers run at --log-level warning
    server.client(aws_access_key_id="AKIDPROCESS").create_repository(repositoryName="p/app")
    httpx.get(f"{server.endpoint}/v2/p/app/tags/list")
    server.stop()
    assert server.log is not None
    text = server.log.read_text()
    assert re.search(r' 123456789012 AKIDPROCESS "POST /" CreateRepository 200 \d+ ', text), text
    assert re.search(r' 123456789012 - "GET /v2/p/app/tags/list" ListTags 200 \d+ ', text), text
    assert "Invalid HTTP request" not in text


def test_access_log_json_and_off(make_server: ServerFactory) -> None:
    as_json = make_server("--access-log", "json", process=True)
    httpx.get(f"{as_json.endpoint}/v2/")
    off = make_server(process=True, env={"OPENECR_ACCESS_LOG": "off"})
    httpx.get(f"{off.endpoint}/v2/")
    as_json.stop()
    off.stop()
    assert as_json.log is not None and off.log is not None
    lines = [json.loads(line) for line in as_json.log.read_text().splitlines() if line[:1] == "{"]
    assert [(d["path"], d["operation"], d["status"]) for d in lines][-1] == ("/v2/", "Base", 200)
    assert '"GET /v2/"' not in off.log.read_text()


def test_metrics_sum_over_workers(make_server: ServerFactory) -> None:
    server = make_server("--workers", "2", process=True)
    ecr = server.client()
    for i in range(10):  # new connections: both workers answer some
        ecr.create_repository(repositoryName=f"w/app-{i}")
        with httpx.Client() as client:
            assert client.get(f"{server.endpoint}/v2/w/app-{i}/tags/list").status_code == 200
    for _ in range(5):  # whichever worker answers the scrape reports every worker's counts
        with httpx.Client() as client:
            text = client.get(f"{server.endpoint}/metrics").text
        assert (
            metric(
                text,
                "openecr_requests_total",
                api="ecr",
                operation="CreateRepository",
                status="200",
            )
            == 10
        )
        assert (
            metric(text, "openecr_requests_total", api="oci", operation="ListTags", status="200")
            == 10
        )
        assert metric(text, "openecr_repositories") == 10
        time.sleep(0.01)


def test_make_serve_installs_only_the_runtime_dependencies() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-B", "serve", "SERVE_ARGS=--access-log json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "pip install --quiet -e .\n" in done.stdout
    assert "[test]" not in done.stdout
    assert "export PATH=" in done.stdout  # it says how to put openecr on PATH
    assert done.stdout.rstrip().endswith("--access-log json")
