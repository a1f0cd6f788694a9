"""``openecr lifecycle run`` on a data directory (no server): dry run, then the real run; and
the periodic run of an ``openecr serve --workers 2`` process."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from conftest import VENV_BIN, ServerFactory
from lifecycle_examples import rule
from lifecycle_seed import runtime_on, seed, utcnow

pytestmark = pytest.mark.slow  # runs the openecr CLI or server as a process

OPENECR = str(VENV_BIN / "openecr")


def _openecr(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return subprocess.run(
        [OPENECR, *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def _digests(data_dir: Path, repo: str) -> set[str]:
    result = _openecr(data_dir, "describe-images", "--repository-name", repo)
    assert result.returncode == 0, result.stderr
    return {d["imageDigest"] for d in json.loads(result.stdout)["imageDetails"]}


def test_lifecycle_run_dry_then_for_real(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    repo = "team/app"
    created = _openecr(data_dir, "create-repository", "--repository-name", repo)
    assert created.returncode == 0, created.stderr
    with runtime_on(data_dir) as runtime:
        digests = seed(
            runtime,
            repo,
            [("old", [], 30), ("old-tagged", ["v1"], 30), ("new", [], 1)],
            utcnow(),
        )
    policy = json.dumps({"rules": [rule(1, "untagged", "sinceImagePushed", 7)]})
    put = _openecr(
        data_dir,
        "put-lifecycle-policy",
        "--repository-name",
        repo,
        "--lifecycle-policy-text",
        policy,
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["lifecyclePolicyText"] == policy

    dry = _openecr(data_dir, "lifecycle", "run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"would expire\tEXPIRE\t123456789012/{repo}\t{digests['old']}\ttags=-\trule=1",
        "dry run: 1 policy evaluated, 1 would expire, 0 would transition",
    ]
    assert _digests(data_dir, repo) == set(digests.values())

    other = _openecr(data_dir, "lifecycle", "run", "--repository-name", "team/other")
    assert other.stdout.splitlines() == [
        "0 policies evaluated, 0 expired, 0 transitioned, 0 failed"
    ]
    elsewhere = _openecr(data_dir, "lifecycle", "run", "--registry-id", "999999999999")
    assert elsewhere.stdout.splitlines() == [
        "0 policies evaluated, 0 expired, 0 transitioned, 0 failed"
    ]

    real = _openecr(data_dir, "lifecycle", "run", "--repository-name", repo)
    assert real.returncode == 0, real.stderr
    assert real.stdout.splitlines() == [
        f"expired\tEXPIRE\t123456789012/{repo}\t{digests['old']}\ttags=-\trule=1",
        "1 policy evaluated, 1 expired, 0 transitioned, 0 failed",
    ]
    assert _digests(data_dir, repo) == {digests["old-tagged"], digests["new"]}
    got = _openecr(data_dir, "get-lifecycle-policy", "--repository-name", repo)
    assert "lastEvaluatedAt" in json.loads(got.stdout)


def test_every_worker_runs_the_schedule_without_harm(make_server: ServerFactory) -> None:
    server = make_server("--workers", "2", "--lifecycle-interval", "1", process=True)
    ecr = server.client()
    ecr.create_repository(repositoryName="workers")
    with runtime_on(server.data_dir) as runtime:
        digests = seed(
            runtime, "workers", [("old", [], 30), ("older", [], 40), ("new", ["v1"], 0)], utcnow()
        )
    ecr.put_lifecycle_policy(
        repositoryName="workers",
        lifecyclePolicyText=json.dumps({"rules": [rule(1, "untagged", "sinceImagePushed", 7)]}),
    )
    deadline = time.monotonic() + 30
    while True:
        details = ecr.describe_images(repositoryName="workers")["imageDetails"]
        if {d["imageDigest"] for d in details} == {digests["new"]}:
            break
        assert time.monotonic() < deadline, "no worker expired the images"
        time.sleep(0.2)
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="workers")
    assert server.process is not None and server.process.poll() is None
