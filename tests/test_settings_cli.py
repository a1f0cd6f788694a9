"""``openecr <command>`` on the local store (no server) for the registry settings operations:
account settings, DescribeRegistry, the signing configuration, image signing status and
ListImageReferrers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from test_cli import OPENECR, cli_env, run

pytestmark = pytest.mark.slow  # every test runs the openecr CLI as a process

OCI = "application/vnd.oci.image.manifest.v1+json"
NOTATION = "application/vnd.cncf.notary.signature"
PROFILE = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/release_key"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def local(data: Path, *args: str) -> Any:
    """Run ``openecr --data-dir data <args>`` (lenient manifests: no layers are uploaded);
    it must succeed; its stdout as JSON (None when empty)."""
    done = run(
        [OPENECR, "--data-dir", str(data), *args], env=cli_env(OPENECR_LENIENT_MANIFESTS="1")
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


def local_error(data: Path, *args: str) -> str:
    done = run([OPENECR, "--data-dir", str(data), *args])
    assert done.returncode == 255, (done.returncode, done.stdout)  # aws CLI v1: a service error
    return done.stderr.strip()


def test_account_settings_and_describe_registry(tmp_path: Path) -> None:
    data = tmp_path / "store"
    got = local(data, "get-account-setting", "--name", "BLOB_MOUNTING")
    assert got == {"name": "BLOB_MOUNTING", "value": "ENABLED"}
    put = local(data, "put-account-setting", "--name", "BLOB_MOUNTING", "--value", "DISABLED")
    assert put == {"name": "BLOB_MOUNTING", "value": "DISABLED"}
    assert local(data, "get-account-setting", "--name", "BLOB_MOUNTING")["value"] == "DISABLED"
    assert local_error(data, "get-account-setting", "--name", "NOPE") == (
        "An error occurred (ValidationException) when calling the GetAccountSetting operation: "
        "Invalid account setting name 'NOPE': must be one of "
        "[BASIC_SCAN_TYPE_VERSION, REGISTRY_POLICY_SCOPE, BLOB_MOUNTING]"
    )
    assert local(data, "describe-registry") == {
        "registryId": "123456789012",
        "replicationConfiguration": {"rules": []},
    }


def test_signing_configuration_status_and_referrers(tmp_path: Path) -> None:
    data = tmp_path / "store"
    config = {
        "rules": [
            {
                "signingProfileArn": PROFILE,
                "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}],
            }
        ]
    }
    assert local_error(data, "get-signing-configuration") == (
        "An error occurred (SigningConfigurationNotFoundException) when calling the "
        "GetSigningConfiguration operation: Signing configuration does not exist in the "
        "registry with id '123456789012'"
    )
    put = local(data, "put-signing-configuration", "--signing-configuration", json.dumps(config))
    assert put == {"signingConfiguration": config}
    got = local(data, "get-signing-configuration")
    assert got == {"registryId": "123456789012", "signingConfiguration": config}

    local(data, "create-repository", "--repository-name", "team/app")
    blob = sha256(b"layer")
    image = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob,
                "size": 5,
            },
            "layers": [],
        }
    ).encode()
    manifest = tmp_path / "image.json"
    manifest.write_bytes(image)
    local(
        data,
        "put-image",
        "--repository-name",
        "team/app",
        "--image-tag",
        "v1",
        "--image-manifest",
        f"file://{manifest}",
    )
    signature = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "artifactType": NOTATION,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": blob, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": sha256(image), "size": len(image)},
        }
    ).encode()
    status_args = [
        "describe-image-signing-status",
        "--repository-name",
        "team/app",
        "--image-id",
        "imageTag=v1",
    ]
    before = local(data, *status_args)
    assert [s["status"] for s in before["signingStatuses"]] == ["FAILED"]
    sig_file = tmp_path / "signature.json"
    sig_file.write_bytes(signature)
    local(
        data, "put-image", "--repository-name", "team/app", "--image-manifest", f"file://{sig_file}"
    )
    after = local(data, *status_args)
    assert after == {
        "registryId": "123456789012",
        "repositoryName": "team/app",
        "imageId": {"imageDigest": sha256(image), "imageTag": "v1"},
        "signingStatuses": [{"signingProfileArn": PROFILE, "status": "COMPLETE"}],
    }
    referrers = local(
        data,
        "list-image-referrers",
        "--repository-name",
        "team/app",
        "--subject-id",
        f"imageDigest={sha256(image)}",
    )
    assert referrers == {
        "referrers": [
            {
                "digest": sha256(signature),
                "mediaType": OCI,
                "artifactType": NOTATION,
                "size": len(signature),
                "artifactStatus": "ACTIVE",
            }
        ]
    }
    deleted = local(data, "delete-signing-configuration")
    assert deleted == {"registryId": "123456789012", "signingConfiguration": config}
    assert local(data, *status_args)["signingStatuses"] == [{"status": "COMPLETE"}]
