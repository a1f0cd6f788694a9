"""``openecr <command>`` on the local store (no server) for creation templates and pull time
update exclusions; then the same data directory, served, answers boto3 the same."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ACCOUNT, VENV_BIN, ServerFactory

pytestmark = pytest.mark.slow  # runs the openecr CLI as a process

OPENECR = str(VENV_BIN / "openecr")
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ci"


def openecr(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))}
    env.update(AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    return subprocess.run(
        [OPENECR, "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def ok(data: Path, *args: str) -> Any:
    result = openecr(data, *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_creation_templates_on_the_local_store(tmp_path: Path, make_server: ServerFactory) -> None:
    data = tmp_path / "store"
    made = ok(
        data,
        "create-repository-creation-template",
        "--prefix",
        "team/",
        "--applied-for",
        "CREATE_ON_PUSH",
        "REPLICATION",
        "--image-tag-mutability",
        "IMMUTABLE",
        "--resource-tags",
        "Key=team,Value=web",
        "--description",
        "team images",
    )
    assert made["registryId"] == ACCOUNT
    template = made["repositoryCreationTemplate"]
    assert template["prefix"] == "team"
    assert template["appliedFor"] == ["CREATE_ON_PUSH", "REPLICATION"]
    ok(
        data,
        "create-repository-creation-template",
        "--prefix",
        "ROOT",
        "--applied-for",
        "REPLICATION",
    )
    updated = ok(
        data,
        "update-repository-creation-template",
        "--prefix",
        "team",
        "--description",
        "changed",
        "--custom-role-arn",
        ROLE,
    )["repositoryCreationTemplate"]
    assert (updated["description"], updated["customRoleArn"]) == ("changed", ROLE)
    assert updated["imageTagMutability"] == "IMMUTABLE"
    described = ok(data, "describe-repository-creation-templates", "--prefixes", "team", "ROOT")[
        "repositoryCreationTemplates"
    ]
    assert [t["prefix"] for t in described] == ["ROOT", "team"]
    assert described[1] == updated
    deleted = ok(data, "delete-repository-creation-template", "--prefix", "ROOT")
    assert deleted["repositoryCreationTemplate"]["prefix"] == "ROOT"
    missing = openecr(data, "delete-repository-creation-template", "--prefix", "ROOT")
    assert missing.returncode == 255
    assert "TemplateNotFoundException" in missing.stderr
    duplicate = openecr(
        data,
        "create-repository-creation-template",
        "--prefix",
        "team",
        "--applied-for",
        "REPLICATION",
    )
    assert duplicate.returncode == 255
    assert "TemplateAlreadyExistsException" in duplicate.stderr

    served = make_server(data_dir=data).client()
    templates = served.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [t["prefix"] for t in templates] == ["team"]
    assert templates[0]["description"] == "changed"


def test_pull_time_exclusions_on_the_local_store(
    tmp_path: Path, make_server: ServerFactory
) -> None:
    data = tmp_path / "store"
    user = f"arn:aws:iam::{ACCOUNT}:user/scanner"
    made = ok(data, "register-pull-time-update-exclusion", "--principal-arn", ROLE)
    assert made["principalArn"] == ROLE and "createdAt" in made
    ok(data, "register-pull-time-update-exclusion", "--principal-arn", user)
    again = openecr(data, "register-pull-time-update-exclusion", "--principal-arn", ROLE)
    assert again.returncode == 255
    assert "ExclusionAlreadyExistsException" in again.stderr
    listed = ok(data, "list-pull-time-update-exclusions")
    assert listed["pullTimeUpdateExclusions"] == [ROLE, user]
    paged = ok(data, "list-pull-time-update-exclusions", "--max-results", "1")
    assert paged["pullTimeUpdateExclusions"] == [ROLE]
    rest = ok(data, "list-pull-time-update-exclusions", "--next-token", paged["nextToken"])
    assert rest == {"pullTimeUpdateExclusions": [user]}
    gone = ok(data, "deregister-pull-time-update-exclusion", "--principal-arn", ROLE)
    assert gone == {"principalArn": ROLE}
    missing = openecr(data, "deregister-pull-time-update-exclusion", "--principal-arn", ROLE)
    assert missing.returncode == 255
    assert "ExclusionNotFoundException" in missing.stderr
    invalid = openecr(data, "register-pull-time-update-exclusion", "--principal-arn", "nobody")
    assert invalid.returncode == 255
    assert "InvalidParameterException" in invalid.stderr

    served = make_server(data_dir=data).client()
    assert served.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == [user]
