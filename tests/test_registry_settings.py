"""Account settings, DescribeRegistry, the signing configuration, image signing status and
ListImageReferrers, through boto3 against a real server (fresh servers where a test changes
registry-wide state)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, ServerFactory, make_image, upload_blob
from openecr.service.signing import SigningRule

OCI = "application/vnd.oci.image.manifest.v1+json"
EMPTY = "application/vnd.oci.empty.v1+json"
NOTATION = "application/vnd.cncf.notary.signature"
COSIGN = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM = "application/vnd.example.sbom.v1"
PROFILE = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/my_profile"
OTHER_PROFILE = "arn:aws:signer:us-east-1:123456789012:/signing-profiles/other_profile"


def sha256(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def error_of(call: Callable[[], Any], status: int = 400) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


@pytest.fixture
def raw_ecr(server: Server) -> Any:
    """A client that leaves validation to the server."""
    return server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))


@pytest.fixture
def fresh(make_server: ServerFactory) -> Server:
    """A server of its own, for tests that change registry-wide settings."""
    return make_server()


def push_image(client: Any, repo: str, tag: str, seed: str) -> tuple[str, int]:
    """An OCI image put under ``tag``; its digest and manifest size."""
    raw = make_image(client, repo, seed=seed, media_type=OCI).decode()
    client.put_image(repositoryName=repo, imageManifest=raw, imageTag=tag)
    return sha256(raw), len(raw)


def push_referrer(
    client: Any,
    repo: str,
    subject: tuple[str, int],
    artifact_type: str,
    annotations: dict[str, str] | None = None,
) -> str:
    """An OCI artifact about ``subject`` (empty config), put untagged; its digest."""
    config = sha256(b"{}")
    if not client.batch_check_layer_availability(repositoryName=repo, layerDigests=[config])[
        "layers"
    ]:
        upload_blob(client, repo, b"{}")
    layer = upload_blob(client, repo, f"payload {artifact_type} {annotations}".encode())
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY, "digest": config, "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": layer, "size": 1}],
        "subject": {"mediaType": OCI, "digest": subject[0], "size": subject[1]},
    }
    if annotations:
        doc["annotations"] = annotations
    raw = json.dumps(doc)
    client.put_image(repositoryName=repo, imageManifest=raw)
    return sha256(raw)


# --- account settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("BASIC_SCAN_TYPE_VERSION", "AWS_NATIVE"),
        ("REGISTRY_POLICY_SCOPE", "V2"),
        ("BLOB_MOUNTING", "ENABLED"),
    ],
)
def test_account_setting_defaults(ecr: Any, name: str, default: str) -> None:
    got = ecr.get_account_setting(name=name)
    assert (got["name"], got["value"]) == (name, default)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BASIC_SCAN_TYPE_VERSION", "CLAIR"),
        ("REGISTRY_POLICY_SCOPE", "V1"),
        ("BLOB_MOUNTING", "DISABLED"),
    ],
)
def test_put_account_setting_is_kept_per_registry(fresh: Server, name: str, value: str) -> None:
    ecr = fresh.client()
    put = ecr.put_account_setting(name=name, value=value)
    assert (put["name"], put["value"]) == (name, value)
    assert ecr.get_account_setting(name=name)["value"] == value
    fresh.restart()
    assert fresh.client().get_account_setting(name=name)["value"] == value


def test_unknown_account_setting_name_is_a_validation_error(ecr: Any) -> None:
    message = (
        "Invalid account setting name 'NOPE': must be one of "
        "[BASIC_SCAN_TYPE_VERSION, REGISTRY_POLICY_SCOPE, BLOB_MOUNTING]"
    )
    assert error_of(lambda: ecr.get_account_setting(name="NOPE")) == (
        "ValidationException",
        message,
    )
    assert error_of(lambda: ecr.put_account_setting(name="NOPE", value="V2")) == (
        "ValidationException",
        message,
    )


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("BASIC_SCAN_TYPE_VERSION", "SNYK", "AWS_NATIVE, CLAIR"),
        ("REGISTRY_POLICY_SCOPE", "V3", "V1, V2"),
        ("BLOB_MOUNTING", "enabled", "ENABLED, DISABLED"),
    ],
)
def test_bad_account_setting_value_is_an_invalid_parameter(
    ecr: Any, name: str, value: str, allowed: str
) -> None:
    assert error_of(lambda: ecr.put_account_setting(name=name, value=value)) == (
        "InvalidParameterException",
        "Invalid parameter at 'value' failed to satisfy constraint: "
        f"'Member must satisfy enum value set: [{allowed}]'",
    )


def test_account_setting_name_length_follows_the_model(raw_ecr: Any) -> None:
    assert error_of(lambda: raw_ecr.get_account_setting(name="X" * 65)) == (
        "InvalidParameterException",
        "Invalid parameter at 'name' failed to satisfy constraint: "
        "'must have length less than or equal to 64'",
    )


def test_blob_mounting_disabled_turns_a_mount_into_an_upload(fresh: Server) -> None:
    ecr = fresh.client()
    ecr.create_repository(repositoryName="source/app")
    ecr.create_repository(repositoryName="target/app")
    digest = upload_blob(ecr, "source/app", b"a layer to mount")
    with httpx.Client(base_url=fresh.endpoint, timeout=30) as v2:
        query = {"mount": digest, "from": "source/app"}
        ecr.put_account_setting(name="BLOB_MOUNTING", value="DISABLED")
        refused = v2.post("/v2/target/app/blobs/uploads/", params=query)
        assert refused.status_code == 202
        assert "/v2/target/app/blobs/uploads/" in refused.headers["location"]
        assert v2.head(f"/v2/target/app/blobs/{digest}").status_code == 404
        ecr.put_account_setting(name="BLOB_MOUNTING", value="ENABLED")
        mounted = v2.post("/v2/target/app/blobs/uploads/", params=query)
        assert mounted.status_code == 201
        assert mounted.headers["docker-content-digest"] == digest
        assert v2.head(f"/v2/target/app/blobs/{digest}").status_code == 200


# --- DescribeRegistry ----------------------------------------------------------------------------


def test_describe_registry(ecr: Any) -> None:
    got = ecr.describe_registry()
    assert got["registryId"] == ACCOUNT
    assert got["replicationConfiguration"] == {"rules": []}


# --- signing configuration -----------------------------------------------------------------------


def test_signing_configuration_round_trip(fresh: Server) -> None:
    ecr = fresh.client()
    missing = f"Signing configuration does not exist in the registry with id '{ACCOUNT}'"
    assert error_of(ecr.get_signing_configuration) == (
        "SigningConfigurationNotFoundException",
        missing,
    )
    assert error_of(ecr.delete_signing_configuration) == (
        "SigningConfigurationNotFoundException",
        missing,
    )
    config = {
        "rules": [
            {
                "signingProfileArn": PROFILE,
                "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}],
            },
            {"signingProfileArn": OTHER_PROFILE},
        ]
    }
    put = ecr.put_signing_configuration(signingConfiguration=config)
    assert put["signingConfiguration"] == config
    got = ecr.get_signing_configuration()
    assert (got["registryId"], got["signingConfiguration"]) == (ACCOUNT, config)
    replaced = {"rules": [{"signingProfileArn": OTHER_PROFILE}]}
    ecr.put_signing_configuration(signingConfiguration=replaced)
    assert ecr.get_signing_configuration()["signingConfiguration"] == replaced
    deleted = ecr.delete_signing_configuration()
    assert (deleted["registryId"], deleted["signingConfiguration"]) == (ACCOUNT, replaced)
    assert error_of(ecr.get_signing_configuration)[0] == "SigningConfigurationNotFoundException"


def test_empty_signing_configuration_is_stored(fresh: Server) -> None:
    ecr = fresh.client()
    ecr.put_signing_configuration(signingConfiguration={"rules": []})
    assert ecr.get_signing_configuration()["signingConfiguration"] == {"rules": []}


@pytest.mark.parametrize(
    ("rule", "field", "constraint"),
    [
        (
            {"signingProfileArn": "arn:aws:iam::123456789012:role/x"},
            "signingProfileArn",
            "must satisfy regular expression "
            "'^arn:aws(-[a-z]+)*:signer:[a-z0-9-]+:[0-9]{12}:\\/signing-profiles\\/"
            "[a-zA-Z0-9_]{2,}$'",
        ),
        (
            {
                "signingProfileArn": PROFILE,
                "repositoryFilters": [{"filter": "team/*", "filterType": "PREFIX_MATCH"}],
            },
            "filterType",
            "Member must satisfy enum value set: [WILDCARD_MATCH]",
        ),
        (
            {"signingProfileArn": PROFILE, "repositoryFilters": []},
            "repositoryFilters",
            "Member must have length greater than or equal to 1",
        ),
        (
            {
                "signingProfileArn": PROFILE,
                "repositoryFilters": [{"filter": "Team/App", "filterType": "WILDCARD_MATCH"}],
            },
            "filter",
            "must satisfy regular expression "
            "'^(?:[a-z0-9*]+(?:[._-][a-z0-9*]+)*/)*[a-z0-9*]+(?:[._-][a-z0-9*]+)*$'",
        ),
    ],
)
def test_signing_configuration_is_validated(
    raw_ecr: Any, rule: dict[str, Any], field: str, constraint: str
) -> None:
    assert error_of(
        lambda: raw_ecr.put_signing_configuration(signingConfiguration={"rules": [rule]})
    ) == (
        "InvalidParameterException",
        f"Invalid parameter at '{field}' failed to satisfy constraint: '{constraint}'",
    )


def test_more_than_ten_signing_rules_are_refused(raw_ecr: Any) -> None:
    rules = [{"signingProfileArn": PROFILE}] * 11
    assert error_of(
        lambda: raw_ecr.put_signing_configuration(signingConfiguration={"rules": rules})
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'rules' failed to satisfy constraint: "
        "'Member must have length less than or equal to 10'",
    )


# --- DescribeImageSigningStatus ------------------------------------------------------------------


def test_signing_status_without_configuration(fresh: Server) -> None:
    ecr = fresh.client()
    ecr.create_repository(repositoryName="team/app")
    subject = push_image(ecr, "team/app", "v1", "signed")
    got = ecr.describe_image_signing_status(repositoryName="team/app", imageId={"imageTag": "v1"})
    assert got["repositoryName"] == "team/app"
    assert got["registryId"] == ACCOUNT
    assert got["imageId"] == {"imageDigest": subject[0], "imageTag": "v1"}
    assert got["signingStatuses"] == []
    push_referrer(ecr, "team/app", subject, SBOM)  # not a signature
    by_digest = {"imageDigest": subject[0]}
    got = ecr.describe_image_signing_status(repositoryName="team/app", imageId=by_digest)
    assert got["imageId"] == by_digest
    assert got["signingStatuses"] == []
    push_referrer(ecr, "team/app", subject, COSIGN)
    got = ecr.describe_image_signing_status(repositoryName="team/app", imageId=by_digest)
    assert got["signingStatuses"] == [{"status": "COMPLETE"}]


def test_signing_status_per_matching_profile(fresh: Server) -> None:
    ecr = fresh.client()
    ecr.create_repository(repositoryName="team/app")
    ecr.put_signing_configuration(
        signingConfiguration={
            "rules": [
                {
                    "signingProfileArn": PROFILE,
                    "repositoryFilters": [{"filter": "team/*", "filterType": "WILDCARD_MATCH"}],
                },
                {
                    "signingProfileArn": OTHER_PROFILE,
                    "repositoryFilters": [{"filter": "other*", "filterType": "WILDCARD_MATCH"}],
                },
                {"signingProfileArn": PROFILE},
            ]
        }
    )
    subject = push_image(ecr, "team/app", "v1", "to-sign")
    image_id = {"imageTag": "v1"}
    got = ecr.describe_image_signing_status(repositoryName="team/app", imageId=image_id)
    assert got["signingStatuses"] == [
        {
            "signingProfileArn": PROFILE,
            "status": "FAILED",
            "failureCode": "SignatureNotFound",
            "failureReason": "No signature of the image is stored: openecr does not sign "
            "images, push a notation or cosign signature with the image as its subject",
        }
    ]
    push_referrer(ecr, "team/app", subject, NOTATION)
    got = ecr.describe_image_signing_status(repositoryName="team/app", imageId=image_id)
    assert got["signingStatuses"] == [{"signingProfileArn": PROFILE, "status": "COMPLETE"}]


def test_cosign_simple_signing_config_counts_as_a_signature(ecr: Any, repo: str) -> None:
    """A cosign signature manifest without ``artifactType``: its config type says what it is."""
    subject = push_image(ecr, repo, "v1", "cosign")
    payload = b'{"critical": {}}'
    config = upload_blob(ecr, repo, payload)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": config,
            "size": len(payload),
        },
        "layers": [],
        "subject": {"mediaType": OCI, "digest": subject[0], "size": subject[1]},
    }
    ecr.put_image(repositoryName=repo, imageManifest=json.dumps(doc))
    got = ecr.describe_image_signing_status(repositoryName=repo, imageId={"imageTag": "v1"})
    assert got["signingStatuses"] == [{"status": "COMPLETE"}]


def test_signing_status_errors(ecr: Any, raw_ecr: Any, repo: str) -> None:
    push_image(ecr, repo, "v1", "errors")
    assert error_of(
        lambda: ecr.describe_image_signing_status(repositoryName=repo, imageId={"imageTag": "v2"})
    ) == (
        "ImageNotFoundException",
        f"The image with imageId {{imageDigest:'None', imageTag:'v2'}} does not exist within "
        f"the repository with name '{repo}' in the registry with id '{ACCOUNT}'",
    )
    assert error_of(
        lambda: ecr.describe_image_signing_status(
            repositoryName="no/such", imageId={"imageTag": "v1"}
        )
    ) == (
        "RepositoryNotFoundException",
        f"The repository with name 'no/such' does not exist in the registry with id '{ACCOUNT}'",
    )
    assert error_of(lambda: ecr.describe_image_signing_status(repositoryName=repo, imageId={})) == (
        "InvalidParameterException",
        "Invalid request parameters: both tag and digest cannot be null",
    )


# --- ListImageReferrers --------------------------------------------------------------------------


def test_list_image_referrers(ecr: Any, repo: str) -> None:
    subject = push_image(ecr, repo, "v1", "subject")
    sbom = push_referrer(ecr, repo, subject, SBOM, {"org.example": "yes"})
    signature = push_referrer(ecr, repo, subject, NOTATION)
    got = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject[0]})
    assert [r["digest"] for r in got["referrers"]] == [sbom, signature]
    first = got["referrers"][0]
    assert first["mediaType"] == OCI
    assert first["artifactType"] == SBOM
    assert first["annotations"] == {"org.example": "yes"}
    assert first["artifactStatus"] == "ACTIVE"
    assert first["size"] > 0
    assert "nextToken" not in got
    only = ecr.list_image_referrers(
        repositoryName=repo,
        subjectId={"imageDigest": subject[0]},
        filter={"artifactTypes": [NOTATION]},
    )
    assert [r["digest"] for r in only["referrers"]] == [signature]


def test_list_image_referrers_by_artifact_status(ecr: Any, repo: str) -> None:
    subject = push_image(ecr, repo, "v1", "archive")
    kept = push_referrer(ecr, repo, subject, SBOM)
    archived = push_referrer(ecr, repo, subject, NOTATION)
    ecr.update_image_storage_class(
        repositoryName=repo, imageId={"imageDigest": archived}, targetStorageClass="ARCHIVE"
    )
    where = {"repositoryName": repo, "subjectId": {"imageDigest": subject[0]}}

    def listed(**status: Any) -> list[tuple[str, str]]:
        got = ecr.list_image_referrers(**where, **status)["referrers"]
        return [(r["digest"], r["artifactStatus"]) for r in got]

    assert listed() == [(kept, "ACTIVE")], "without a filter only ACTIVE artifacts are listed"
    assert listed(filter={"artifactStatus": "ACTIVE"}) == [(kept, "ACTIVE")]
    assert listed(filter={"artifactStatus": "ARCHIVED"}) == [(archived, "ARCHIVED")]
    assert listed(filter={"artifactStatus": "ACTIVATING"}) == []
    assert listed(filter={"artifactStatus": "ANY"}) == [(kept, "ACTIVE"), (archived, "ARCHIVED")]
    # an archived signature is still a stored signature
    got = ecr.describe_image_signing_status(repositoryName=repo, imageId={"imageTag": "v1"})
    assert got["signingStatuses"] == [{"status": "COMPLETE"}]


def test_list_image_referrers_agrees_with_v2(server: Server, ecr: Any, repo: str) -> None:
    subject = push_image(ecr, repo, "v1", "both-apis")
    push_referrer(ecr, repo, subject, COSIGN)
    listed = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": subject[0]})
    index = httpx.get(f"{server.endpoint}/v2/{repo}/referrers/{subject[0]}").json()
    assert [(r["digest"], r["size"], r["artifactType"]) for r in listed["referrers"]] == [
        (m["digest"], m["size"], m["artifactType"]) for m in index["manifests"]
    ]


def test_list_image_referrers_pages(ecr: Any, repo: str) -> None:
    subject = push_image(ecr, repo, "v1", "paged")
    made = [push_referrer(ecr, repo, subject, SBOM, {"n": str(i)}) for i in range(5)]
    seen: list[str] = []
    kwargs: dict[str, Any] = {"maxResults": 2}
    pages = 0
    while True:
        got = ecr.list_image_referrers(
            repositoryName=repo, subjectId={"imageDigest": subject[0]}, **kwargs
        )
        pages += 1
        seen += [r["digest"] for r in got["referrers"]]
        if "nextToken" not in got:
            break
        kwargs = {"maxResults": 2, "nextToken": got["nextToken"]}
    assert (seen, pages) == (made, 3)


def test_list_image_referrers_errors(ecr: Any, raw_ecr: Any, repo: str) -> None:
    unknown = sha256(b"nothing refers to this")
    got = ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": unknown})
    assert got["referrers"] == []
    assert error_of(
        lambda: ecr.list_image_referrers(
            repositoryName="no/such", subjectId={"imageDigest": unknown}
        )
    ) == (
        "RepositoryNotFoundException",
        f"The repository with name 'no/such' does not exist in the registry with id '{ACCOUNT}'",
    )
    assert error_of(
        lambda: ecr.list_image_referrers(repositoryName=repo, subjectId={"imageDigest": "sha256:x"})
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
        "'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''",
    )
    assert error_of(
        lambda: ecr.list_image_referrers(
            repositoryName=repo, subjectId={"imageDigest": unknown}, nextToken="bogus"
        )
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
    )
    assert error_of(
        lambda: raw_ecr.list_image_referrers(
            repositoryName=repo, subjectId={"imageDigest": unknown}, maxResults=51
        )
    ) == (
        "InvalidParameterException",
        "Invalid parameter at 'maxResults' failed to satisfy constraint: "
        "'Member must have value less than or equal to 50'",
    )


# --- signing rules (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "repository", "expected"),
    [
        ((), "any/thing", True),
        (("team/*",), "team/app", True),
        (("team/*",), "team/app/nested", True),
        (("team/*",), "teams/app", False),
        (("team",), "team/app", False),
        (("*-prod",), "web-prod", True),
        (("*-prod",), "web-prod-old", False),
        (("a.b",), "axb", False),
        (("x", "web*"), "web", True),
    ],
)
def test_signing_rule_wildcards(filters: tuple[str, ...], repository: str, expected: bool) -> None:
    assert SigningRule(PROFILE, filters).matches(repository) is expected
