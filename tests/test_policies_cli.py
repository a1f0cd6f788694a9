"""The six policy operations through ``openecr <command>`` on the local store, and policy
enforcement across two accounts through the real aws CLI against a server with credentials."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import VENV_BIN, Server, ServerFactory
from test_cli import OPENECR, cli_env, run
from test_iam_policy import policy, statement
from test_policies import BOB, KEYS, PULL, A, B, credentials_file, denied, pushed

pytestmark = pytest.mark.slow  # every test runs a CLI as a process


def local(data: Path, *args: str) -> Any:
    done = run([OPENECR, "--data-dir", str(data), *args])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def local_error(data: Path, *args: str) -> str:
    done = run([OPENECR, "--data-dir", str(data), *args])
    assert done.returncode == 255, (done.returncode, done.stdout)
    return done.stderr.strip()


def test_policy_commands_on_the_local_store(tmp_path: Path) -> None:
    data = tmp_path / "store"
    local(data, "create-repository", "--repository-name", "team/app")
    text = policy(statement(Principal={"AWS": B}, Action=PULL))
    document = tmp_path / "policy.json"
    document.write_text(text)
    done = local(
        data,
        "set-repository-policy",
        "--repository-name",
        "team/app",
        "--policy-text",
        f"file://{document}",
    )
    assert done == {"registryId": "123456789012", "repositoryName": "team/app", "policyText": text}
    assert local(data, "get-repository-policy", "--repository-name", "team/app") == done
    assert local(data, "delete-repository-policy", "--repository-name", "team/app") == done
    assert local_error(data, "get-repository-policy", "--repository-name", "team/app") == (
        "An error occurred (RepositoryPolicyNotFoundException) when calling the "
        "GetRepositoryPolicy operation: Repository policy does not exist for the repository with "
        "name 'team/app' in the registry with id '123456789012'"
    )
    assert local_error(
        data, "set-repository-policy", "--repository-name", "team/app", "--policy-text", "{}"
    ) == (
        "An error occurred (InvalidParameterException) when calling the SetRepositoryPolicy "
        "operation: Invalid parameter at 'PolicyText' failed to satisfy constraint: "
        "'Invalid repository policy provided'"
    )
    registry = policy(statement(Principal={"AWS": B}, Action="ecr:ReplicateImage"))
    put = local(data, "put-registry-policy", "--policy-text", registry)
    assert put == {"registryId": "123456789012", "policyText": registry}
    assert local(data, "get-registry-policy") == put
    assert local(data, "delete-registry-policy") == put
    assert local_error(data, "get-registry-policy") == (
        "An error occurred (RegistryPolicyNotFoundException) when calling the GetRegistryPolicy "
        "operation: Registry policy does not exist in the registry with id '123456789012'"
    )


def aws(server: Server, key: str, *args: str) -> Any:
    env = cli_env(AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=KEYS[key][0])
    return run(
        [
            str(VENV_BIN / "aws"),
            "ecr",
            *args,
            "--endpoint-url",
            server.endpoint,
            "--output",
            "json",
        ],
        env=env,
    )


def test_cross_account_pull_through_the_aws_cli(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server("--credentials", str(credentials_file(tmp_path)))
    owner_key, bob_key = "AKIAAROOT00000000000", "AKIABOB000000000000B"
    owner = server.client(aws_access_key_id=owner_key, aws_secret_access_key=KEYS[owner_key][0])
    owner.create_repository(repositoryName="shared/app")
    digest, _ = pushed(owner, "shared/app")
    pull = ["batch-get-image", "--registry-id", A, "--repository-name", "shared/app"]
    pull += ["--image-ids", f"imageDigest={digest}"]
    refused = aws(server, bob_key, *pull)
    assert refused.returncode == 255
    assert refused.stderr.strip() == (
        "An error occurred (AccessDeniedException) when calling the BatchGetImage operation: "
        + denied(BOB, "BatchGetImage", "shared/app")
    )
    text = policy(statement(Principal={"AWS": BOB}, Action=PULL))
    done = aws(
        server,
        owner_key,
        "set-repository-policy",
        "--repository-name",
        "shared/app",
        "--policy-text",
        text,
    )
    assert done.returncode == 0, done.stderr
    allowed = aws(server, bob_key, *pull)
    assert allowed.returncode == 0, allowed.stderr
    assert [i["imageId"]["imageDigest"] for i in json.loads(allowed.stdout)["images"]] == [digest]
    got = aws(
        server,
        bob_key,
        "get-repository-policy",
        "--registry-id",
        A,
        "--repository-name",
        "shared/app",
    )
    assert got.returncode == 255  # GetRepositoryPolicy is not granted
    assert "ecr:GetRepositoryPolicy" in got.stderr
