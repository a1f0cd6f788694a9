"""Image scanning through the aws CLI (against a server) and ``openecr <command>`` (on the local
store, no server, and against a server)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import VENV_BIN, InProcessServer, ServerFactory, aws_json, free_port, run_aws
from scan_images import (
    ALPINE_FINDINGS,
    DATABASE,
    DEBIAN_FINDINGS,
    alpine_layers,
    debian_layers,
    findings_of,
    push,
)

pytestmark = pytest.mark.slow  # runs the aws CLI and the openecr CLI as processes

OPENECR = str(VENV_BIN / "openecr")


def _openecr(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))}
    clean.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        **(env or {}),
    )
    return subprocess.run([OPENECR, *args], capture_output=True, text=True, env=clean, timeout=120)


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else {}


def test_the_aws_cli_scans_and_waits(make_server: ServerFactory) -> None:
    server = make_server("--vulnerability-db", str(DATABASE))
    client = server.client()
    client.create_repository(repositoryName="team/app")
    digest = push(client, "team/app", debian_layers(), "v1")
    missing = run_aws(
        server,
        "describe-image-scan-findings",
        "--repository-name",
        "team/app",
        "--image-id",
        "imageTag=v1",
    )
    assert missing.returncode != 0 and "ScanNotFoundException" in missing.stderr
    started = aws_json(
        server, "start-image-scan", "--repository-name", "team/app", "--image-id", "imageTag=v1"
    )
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    waited = run_aws(
        server,
        "wait",
        "image-scan-complete",
        "--repository-name",
        "team/app",
        "--image-id",
        f"imageDigest={digest}",
    )
    assert waited.returncode == 0, waited.stderr
    found = aws_json(
        server,
        "describe-image-scan-findings",
        "--repository-name",
        "team/app",
        "--image-id",
        f"imageDigest={digest}",
    )
    assert findings_of(found) == DEBIAN_FINDINGS
    details = aws_json(server, "describe-images", "--repository-name", "team/app")
    assert details["imageDetails"][0]["imageScanFindingsSummary"]["findingSeverityCounts"] == {
        "CRITICAL": 1,
        "MEDIUM": 1,
        "LOW": 1,
        "UNDEFINED": 1,
    }
    again = run_aws(
        server, "start-image-scan", "--repository-name", "team/app", "--image-id", "imageTag=v1"
    )
    assert again.returncode != 0 and "LimitExceededException" in again.stderr
    put = aws_json(
        server,
        "put-image-scanning-configuration",
        "--repository-name",
        "team/app",
        "--image-scanning-configuration",
        "scanOnPush=true",
    )
    assert put["imageScanningConfiguration"] == {"scanOnPush": True}
    aws_json(
        server,
        "put-registry-scanning-configuration",
        "--scan-type",
        "BASIC",
        "--rules",
        json.dumps(
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "prod*", "filterType": "WILDCARD"}],
                }
            ]
        ),
    )
    got = aws_json(server, "get-registry-scanning-configuration")
    assert got["scanningConfiguration"]["rules"][0]["scanFrequency"] == "SCAN_ON_PUSH"
    batch = aws_json(
        server,
        "batch-get-repository-scanning-configuration",
        "--repository-names",
        "team/app",
        "no/such",
    )
    assert batch["scanningConfigurations"][0]["scanOnPush"] is True
    assert batch["failures"][0]["failureCode"] == "REPOSITORY_NOT_FOUND"


def test_openecr_on_the_local_store_and_against_a_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = InProcessServer(data, free_port()).start()
    try:
        client = server.client()
        client.create_repository(repositoryName="team/app")
        debian = push(client, "team/app", debian_layers(), "debian")
        alpine = push(client, "team/app", alpine_layers(), "alpine")
    finally:
        server.stop()
    local = ["--data-dir", str(data)]
    with_db = {"OPENECR_VULNERABILITY_DB": str(DATABASE)}
    missing = _openecr(
        "describe-image-scan-findings",
        "--repository-name",
        "team/app",
        "--image-id",
        "imageTag=debian",
        *local,
    )
    assert missing.returncode != 0 and "ScanNotFoundException" in missing.stderr
    started = _json(
        _openecr(
            "start-image-scan",
            "--repository-name",
            "team/app",
            "--image-id",
            "imageTag=debian",
            *local,
            env=with_db,
        )
    )
    assert started["imageScanStatus"]["status"] == "IN_PROGRESS"
    # the command waited for its scan before exiting: the next one reads it COMPLETE
    found = _json(
        _openecr(
            "describe-image-scan-findings",
            "--repository-name",
            "team/app",
            "--image-id",
            f"imageDigest={debian}",
            *local,
        )
    )
    assert found["imageScanStatus"]["status"] == "COMPLETE"
    assert findings_of(found) == DEBIAN_FINDINGS
    # without a database, the local store's scan fails saying so
    _json(
        _openecr(
            "start-image-scan",
            "--repository-name",
            "team/app",
            "--image-id",
            "imageTag=alpine",
            *local,
        )
    )
    failed = _json(
        _openecr(
            "describe-image-scan-findings",
            "--repository-name",
            "team/app",
            "--image-id",
            "imageTag=alpine",
            *local,
        )
    )
    assert failed["imageScanStatus"]["status"] == "FAILED"
    assert "--vulnerability-db" in failed["imageScanStatus"]["description"]
    put = _json(
        _openecr(
            "put-image-scanning-configuration",
            "--repository-name",
            "team/app",
            "--image-scanning-configuration",
            "scanOnPush=true",
            *local,
        )
    )
    assert put["imageScanningConfiguration"] == {"scanOnPush": True}
    _json(_openecr("put-registry-scanning-configuration", "--scan-type", "BASIC", *local))
    config = _json(_openecr("get-registry-scanning-configuration", *local))
    assert config["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
    batch = _json(
        _openecr(
            "batch-get-repository-scanning-configuration",
            "--repository-names",
            "team/app",
            *local,
        )
    )
    assert batch["scanningConfigurations"][0]["scanFrequency"] == "SCAN_ON_PUSH"
    # the same store served again, with the database: openecr against the server
    server = InProcessServer(data, free_port(), ["--vulnerability-db", str(DATABASE)]).start()
    try:
        remote = ["--endpoint-url", server.endpoint]
        _json(
            _openecr(
                "start-image-scan",
                "--repository-name",
                "team/app",
                "--image-id",
                f"imageDigest={alpine}",
                *remote,
            )
        )
        server.client().get_waiter("image_scan_complete").wait(
            repositoryName="team/app",
            imageId={"imageDigest": alpine},
            WaiterConfig={"Delay": 0.2, "MaxAttempts": 300},
        )
        found = _json(
            _openecr(
                "describe-image-scan-findings",
                "--repository-name",
                "team/app",
                "--image-id",
                f"imageDigest={alpine}",
                *remote,
            )
        )
        assert findings_of(found) == ALPINE_FINDINGS
    finally:
        server.stop()
