"""Repositories through boto3 and the aws CLI: create, describe, delete, tag mutability and
resource tags."""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import datetime
from typing import Any

import pytest

from conftest import ACCOUNT, Server, make_image, run_aws, upload_blob
from conftest import client_error as error
from conftest import unvalidated_client as unvalidated

ARN_PREFIX = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"
NAME_REGEX = "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
FILTERS_REQUIRED = (
    "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
    "'ImageTagMutabilityExclusionFilters can't be null when imageTagMutability is set as {mode}'"
)
FILTERS_FORBIDDEN = (
    "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: "
    "'ImageTagMutabilityExclusionFilters can only be set when imageTagMutability is set as "
    "IMMUTABLE_WITH_EXCLUSION or MUTABLE_WITH_EXCLUSION'"
)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def repo_names(ecr: Any) -> set[str]:
    pages = ecr.get_paginator("describe_repositories").paginate()
    return {r["repositoryName"] for page in pages for r in page["repositories"]}


def push(ecr: Any, repo: str, tag: str | None, seed: str) -> str:
    manifest = make_image(ecr, repo, seed=seed)
    params: dict[str, Any] = {"repositoryName": repo, "imageManifest": manifest.decode()}
    if tag is not None:
        params["imageTag"] = tag
    return str(ecr.put_image(**params)["image"]["imageId"]["imageDigest"])


# --- CreateRepository ----------------------------------------------------------------------------


def test_create_returns_the_full_document_and_describe_agrees(
    ecr: Any, server: Server, repo_name: str
) -> None:
    created = ecr.create_repository(repositoryName=repo_name)["repository"]
    assert isinstance(created.pop("createdAt"), datetime)
    assert created == {
        "repositoryArn": ARN_PREFIX + repo_name,
        "registryId": ACCOUNT,
        "repositoryName": repo_name,
        "repositoryUri": f"127.0.0.1:{server.port}/{repo_name}",
        "imageTagMutability": "MUTABLE",
        "imageScanningConfiguration": {"scanOnPush": False},
        "encryptionConfiguration": {"encryptionType": "AES256"},
    }
    [described] = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"]
    described.pop("createdAt")
    assert described == created


@pytest.mark.parametrize(
    "suffix",
    ["ab", "a/b", "a.b_c-d", "a__b", "a---b", "team/app/web-1", "0/9"],
)
def test_valid_names_are_accepted(ecr: Any, suffix: str) -> None:
    name = f"{unique()}/{suffix}"
    assert ecr.create_repository(repositoryName=name)["repository"]["repositoryName"] == name


def test_the_longest_name_is_accepted(ecr: Any) -> None:
    prefix = unique() + "/"
    name = prefix + "a" * (256 - len(prefix))
    assert ecr.create_repository(repositoryName=name)["repository"]["repositoryName"] == name


@pytest.mark.parametrize(
    ("name", "constraint"),
    [
        ("a", "must have length greater than or equal to 2"),
        ("a" * 257, "must have length less than or equal to 256"),
        ("Upper", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("-ab", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("ab-", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("a//b", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("/ab", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("ab/", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("a..b", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("a_.b", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("a b", f"must satisfy regular expression '{NAME_REGEX}'"),
        ("caf\u00e9", f"must satisfy regular expression '{NAME_REGEX}'"),
    ],
)
def test_invalid_names_are_refused(server: Server, name: str, constraint: str) -> None:
    client = unvalidated(server)
    code, message, status = error(client.create_repository, repositoryName=name)
    assert (code, status) == ("InvalidParameterException", 400)
    assert message == (
        f"Invalid parameter at 'repositoryName' failed to satisfy constraint: '{constraint}'"
    )


def test_duplicate_name_is_refused(ecr: Any, repo: str) -> None:
    code, message, _ = error(ecr.create_repository, repositoryName=repo)
    assert code == "RepositoryAlreadyExistsException"
    assert message == (
        f"The repository with name '{repo}' already exists in the registry with id '{ACCOUNT}'"
    )


def test_tags_given_at_creation_are_listed(ecr: Any, repo_name: str) -> None:
    tags = [{"Key": "team", "Value": "web"}, {"Key": "env", "Value": ""}]
    ecr.create_repository(repositoryName=repo_name, tags=tags)
    listed = ecr.list_tags_for_resource(resourceArn=ARN_PREFIX + repo_name)["tags"]
    assert listed == [{"Key": "env", "Value": ""}, {"Key": "team", "Value": "web"}]


def test_scan_on_push_is_kept(ecr: Any, repo_name: str) -> None:
    created = ecr.create_repository(
        repositoryName=repo_name, imageScanningConfiguration={"scanOnPush": True}
    )["repository"]
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    [described] = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}


KMS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.mark.parametrize(
    "encryption",
    [
        {"encryptionType": "AES256"},
        {"encryptionType": "KMS", "kmsKey": KMS_KEY},
        {"encryptionType": "KMS_DSSE", "kmsKey": KMS_KEY},
    ],
)
def test_encryption_configuration_is_kept(
    ecr: Any, repo_name: str, encryption: dict[str, str]
) -> None:
    created = ecr.create_repository(repositoryName=repo_name, encryptionConfiguration=encryption)
    assert created["repository"]["encryptionConfiguration"] == encryption
    [described] = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"]
    assert described["encryptionConfiguration"] == encryption


@pytest.mark.parametrize(
    ("encryption", "message"),
    [
        (
            {"encryptionType": "AES256", "kmsKey": KMS_KEY},
            "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
            "'kmsKey can only be specified with KMS encryption'",
        ),
        (
            {"encryptionType": "ROT13"},
            "Invalid parameter at 'encryptionType' failed to satisfy constraint: "
            "'Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]'",
        ),
    ],
)
def test_bad_encryption_is_refused(
    ecr: Any, server: Server, repo_name: str, encryption: dict[str, str], message: str
) -> None:
    client = unvalidated(server)
    code, got, _ = error(
        client.create_repository, repositoryName=repo_name, encryptionConfiguration=encryption
    )
    assert (code, got) == ("InvalidParameterException", message)
    assert repo_name not in repo_names(ecr)


# --- tag mutability and exclusion filters --------------------------------------------------------

LATEST = {"filterType": "WILDCARD", "filter": "latest"}
DEV = {"filterType": "WILDCARD", "filter": "dev-*"}


def test_immutable_with_exclusions_lets_only_excluded_tags_move(ecr: Any, repo_name: str) -> None:
    created = ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[LATEST, DEV],
    )["repository"]
    assert created["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert created["imageTagMutabilityExclusionFilters"] == [LATEST, DEV]
    for tag in ("latest", "dev-1", "v1"):
        push(ecr, repo_name, tag, seed=f"{tag}-a")
    push(ecr, repo_name, "latest", seed="latest-b")
    push(ecr, repo_name, "dev-1", seed="dev-1-b")
    manifest = make_image(ecr, repo_name, seed="v1-b")
    code, message, _ = error(
        ecr.put_image, repositoryName=repo_name, imageManifest=manifest.decode(), imageTag="v1"
    )
    assert code == "ImageTagAlreadyExistsException"
    assert "'v1'" in message


def test_mutable_with_exclusions_freezes_only_excluded_tags(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
    )
    push(ecr, repo_name, "main", seed="a")
    push(ecr, repo_name, "main", seed="b")
    push(ecr, repo_name, "release-1", seed="c")
    manifest = make_image(ecr, repo_name, seed="d")
    code, _, _ = error(
        ecr.put_image,
        repositoryName=repo_name,
        imageManifest=manifest.decode(),
        imageTag="release-1",
    )
    assert code == "ImageTagAlreadyExistsException"


MUTABILITY_ERRORS = [
    ("IMMUTABLE_WITH_EXCLUSION", None, FILTERS_REQUIRED.format(mode="IMMUTABLE_WITH_EXCLUSION")),
    ("MUTABLE_WITH_EXCLUSION", None, FILTERS_REQUIRED.format(mode="MUTABLE_WITH_EXCLUSION")),
    ("MUTABLE", [LATEST], FILTERS_FORBIDDEN),
    ("IMMUTABLE", [LATEST], FILTERS_FORBIDDEN),
    (
        "IMMUTABLE_WITH_EXCLUSION",
        [{"filterType": "WILDCARD", "filter": "a b"}],
        "Invalid parameter at 'filter' failed to satisfy constraint: "
        "'must satisfy regular expression '^[0-9a-zA-Z._*-]{1,128}$''",
    ),
    (
        "IMMUTABLE_WITH_EXCLUSION",
        [{"filterType": "WILDCARD", "filter": "a" * 129}],
        "Invalid parameter at 'filter' failed to satisfy constraint: "
        "'must have length less than or equal to 128'",
    ),
    (
        "IMMUTABLE_WITH_EXCLUSION",
        [{"filterType": "WILDCARD", "filter": f"f{i}"} for i in range(6)],
        "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
        "constraint: 'Member must have length less than or equal to 5'",
    ),
    (
        "IMMUTABLE_WITH_EXCLUSION",
        [{"filterType": "REGEX", "filter": "latest"}],
        "Invalid parameter at 'filterType' failed to satisfy constraint: "
        "'Member must satisfy enum value set: [WILDCARD]'",
    ),
    (
        "SOMETIMES",
        None,
        "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: "
        "'Member must satisfy enum value set: "
        "[MUTABLE, IMMUTABLE, IMMUTABLE_WITH_EXCLUSION, MUTABLE_WITH_EXCLUSION]'",
    ),
]


@pytest.mark.parametrize(("mode", "filters", "message"), MUTABILITY_ERRORS)
def test_create_refuses_inconsistent_mutability(
    ecr: Any,
    server: Server,
    repo_name: str,
    mode: str,
    filters: list[dict[str, str]] | None,
    message: str,
) -> None:
    params: dict[str, Any] = {"repositoryName": repo_name, "imageTagMutability": mode}
    if filters is not None:
        params["imageTagMutabilityExclusionFilters"] = filters
    code, got, status = error(unvalidated(server).create_repository, **params)
    assert (code, got, status) == ("InvalidParameterException", message, 400)
    assert repo_name not in repo_names(ecr)


@pytest.mark.parametrize(("mode", "filters", "message"), MUTABILITY_ERRORS)
def test_put_mutability_refuses_inconsistent_mutability(
    ecr: Any,
    server: Server,
    repo: str,
    mode: str,
    filters: list[dict[str, str]] | None,
    message: str,
) -> None:
    params: dict[str, Any] = {"repositoryName": repo, "imageTagMutability": mode}
    if filters is not None:
        params["imageTagMutabilityExclusionFilters"] = filters
    code, got, _ = error(unvalidated(server).put_image_tag_mutability, **params)
    assert (code, got) == ("InvalidParameterException", message)
    [described] = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in described


def test_put_image_tag_mutability_round_trip(ecr: Any, repo: str) -> None:
    answer = ecr.put_image_tag_mutability(
        repositoryName=repo,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[LATEST],
    )
    answer.pop("ResponseMetadata")
    assert answer == {
        "registryId": ACCOUNT,
        "repositoryName": repo,
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [LATEST],
    }
    [described] = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutabilityExclusionFilters"] == [LATEST]
    push(ecr, repo, "v1", seed="a")
    manifest = make_image(ecr, repo, seed="b")
    code, _, _ = error(
        ecr.put_image, repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1"
    )
    assert code == "ImageTagAlreadyExistsException"

    answer = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    assert answer["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in answer
    [described] = ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    assert described["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in described
    ecr.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag="v1")


def test_put_image_tag_mutability_on_a_missing_repository(ecr: Any, repo_name: str) -> None:
    code, message, _ = error(
        ecr.put_image_tag_mutability, repositoryName=repo_name, imageTagMutability="IMMUTABLE"
    )
    assert code == "RepositoryNotFoundException"
    assert message == (
        f"The repository with name '{repo_name}' does not exist in the registry with id '{ACCOUNT}'"
    )


# --- DescribeRepositories ------------------------------------------------------------------------


def test_describe_named_repositories_keeps_request_order(ecr: Any) -> None:
    base = unique()
    names = [f"{base}/c", f"{base}/a", f"{base}/b"]
    for name in sorted(names):
        ecr.create_repository(repositoryName=name)
    found = ecr.describe_repositories(repositoryNames=names)["repositories"]
    assert [r["repositoryName"] for r in found] == names
    assert "nextToken" not in ecr.describe_repositories(repositoryNames=names)


def test_describe_a_missing_name_fails_the_whole_call(ecr: Any, repo: str) -> None:
    missing = repo + "-missing"
    code, message, status = error(
        ecr.describe_repositories, repositoryNames=[repo, missing, repo + "-other"]
    )
    assert (code, status) == ("RepositoryNotFoundException", 400)
    assert message == (
        f"The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT}'"
    )


@pytest.mark.parametrize("extra", [{"maxResults": 5}, {"nextToken": "abc"}])
def test_describe_names_cannot_be_paged(ecr: Any, repo: str, extra: dict[str, Any]) -> None:
    code, message, _ = error(ecr.describe_repositories, repositoryNames=[repo], **extra)
    assert code == "InvalidParameterException"
    assert "repositoryNames" in message


# --- DeleteRepository ----------------------------------------------------------------------------


def test_delete_empty_repository_returns_its_document(ecr: Any, repo_name: str) -> None:
    created = ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
    )["repository"]
    deleted = ecr.delete_repository(repositoryName=repo_name)["repository"]
    assert deleted == created
    code, _, _ = error(ecr.describe_repositories, repositoryNames=[repo_name])
    assert code == "RepositoryNotFoundException"


def test_delete_non_empty_needs_force(ecr: Any, repo: str) -> None:
    push(ecr, repo, "v1", seed="x")
    code, message, status = error(ecr.delete_repository, repositoryName=repo)
    assert (code, status) == ("RepositoryNotEmptyException", 400)
    assert message == (
        f"The repository with name '{repo}' in registry with id '{ACCOUNT}' cannot be deleted "
        "because it still contains images"
    )
    assert len(ecr.list_images(repositoryName=repo)["imageIds"]) == 1


def test_a_repository_with_only_layers_is_empty(ecr: Any, repo: str) -> None:
    upload_blob(ecr, repo, b"just a layer")
    assert ecr.delete_repository(repositoryName=repo)["repository"]["repositoryName"] == repo


def test_force_delete_takes_images_layers_and_tags_with_it(ecr: Any, repo: str) -> None:
    ecr.tag_resource(resourceArn=ARN_PREFIX + repo, tags=[{"Key": "k", "Value": "v"}])
    push(ecr, repo, "v1", seed="a")
    push(ecr, repo, None, seed="b")
    layer = upload_blob(ecr, repo, b"a lone layer")
    deleted = ecr.delete_repository(repositoryName=repo, force=True)["repository"]
    assert deleted["repositoryName"] == repo
    assert deleted["repositoryArn"] == ARN_PREFIX + repo
    for call, params in [
        (ecr.describe_repositories, {"repositoryNames": [repo]}),
        (ecr.list_images, {"repositoryName": repo}),
        (ecr.describe_images, {"repositoryName": repo}),
        (ecr.list_tags_for_resource, {"resourceArn": ARN_PREFIX + repo}),
    ]:
        assert error(call, **params)[0] == "RepositoryNotFoundException"

    # a new repository under the same name starts empty
    ecr.create_repository(repositoryName=repo)
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    assert ecr.list_tags_for_resource(resourceArn=ARN_PREFIX + repo)["tags"] == []
    checked = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[layer])
    assert checked["layers"] == []
    assert [f["layerDigest"] for f in checked["failures"]] == [layer]
    assert error(ecr.get_download_url_for_layer, repositoryName=repo, layerDigest=layer)[0] == (
        "LayersNotFoundException"
    )


def test_delete_a_missing_repository(ecr: Any, repo_name: str) -> None:
    code, message, _ = error(ecr.delete_repository, repositoryName=repo_name, force=True)
    assert code == "RepositoryNotFoundException"
    assert repo_name in message


# --- resource tags -------------------------------------------------------------------------------


def test_tag_untag_and_list(ecr: Any, repo: str) -> None:
    arn = ARN_PREFIX + repo
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "1"}, {"Key": "a", "Value": "2"}])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "3"}])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [
        {"Key": "a", "Value": "2"},
        {"Key": "b", "Value": "3"},
    ]
    ecr.untag_resource(resourceArn=arn, tagKeys=["a", "never-set"])
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == [{"Key": "b", "Value": "3"}]


def test_more_than_50_tags_are_refused(ecr: Any, repo_name: str) -> None:
    many = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    code, _, _ = error(ecr.create_repository, repositoryName=repo_name, tags=many)
    assert code == "TooManyTagsException"
    assert repo_name not in repo_names(ecr)

    ecr.create_repository(repositoryName=repo_name, tags=many[:30])
    arn = ARN_PREFIX + repo_name
    code, _, _ = error(ecr.tag_resource, resourceArn=arn, tags=many[25:])
    assert code == "TooManyTagsException"
    assert len(ecr.list_tags_for_resource(resourceArn=arn)["tags"]) == 30
    ecr.tag_resource(resourceArn=arn, tags=many[10:50])  # 50 distinct keys in all
    assert len(ecr.list_tags_for_resource(resourceArn=arn)["tags"]) == 50


@pytest.mark.parametrize(
    ("tag", "needle"),
    [
        ({"Key": "aws:owner", "Value": "me"}, "aws:"),
        ({"Key": "AWS:owner", "Value": "me"}, "aws:"),
        ({"Key": "", "Value": "x"}, "128"),
        ({"Key": "k" * 129, "Value": "x"}, "128"),
        ({"Key": "k", "Value": "v" * 257}, "256"),
        ({"Key": "bad\u0000key", "Value": "x"}, "characters"),
        ({"Key": "k", "Value": "bad\nvalue"}, "characters"),
        ({"Key": "semi;colon", "Value": "x"}, "characters"),
    ],
)
def test_bad_resource_tags_are_refused(
    ecr: Any, server: Server, repo: str, tag: dict[str, str], needle: str
) -> None:
    client = unvalidated(server)
    arn = ARN_PREFIX + repo
    code, message, status = error(client.tag_resource, resourceArn=arn, tags=[tag])
    assert (code, status) == ("InvalidTagParameterException", 400)
    assert needle in message
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == []
    name = repo + "-tagged"
    code, _, _ = error(client.create_repository, repositoryName=name, tags=[tag])
    assert code == "InvalidTagParameterException"
    assert name not in repo_names(ecr)


def test_unicode_tags_are_allowed(ecr: Any, repo: str) -> None:
    arn = ARN_PREFIX + repo
    tags = [{"Key": "Kostenstelle Größe", "Value": "ünïcödé @ 10:30 / a=b+c-d_e."}]
    ecr.tag_resource(resourceArn=arn, tags=tags)
    assert ecr.list_tags_for_resource(resourceArn=arn)["tags"] == tags


def test_untagging_aws_keys_is_refused(ecr: Any, repo: str) -> None:
    code, _, _ = error(ecr.untag_resource, resourceArn=ARN_PREFIX + repo, tagKeys=["aws:x"])
    assert code == "InvalidTagParameterException"


@pytest.mark.parametrize(
    "arn",
    [
        "nope",
        "",
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repo/x",
        f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/x",
        "arn:aws:s3:::bucket",
        "arn:aws:ecr:us-east-1:12345:repository/x",
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/",
        f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/../../etc",
    ],
)
@pytest.mark.parametrize("operation", ["list", "tag", "untag"])
def test_bad_arns_are_refused(server: Server, arn: str, operation: str) -> None:
    client = unvalidated(server)
    calls = {
        "list": (client.list_tags_for_resource, {}),
        "tag": (client.tag_resource, {"tags": [{"Key": "k", "Value": "v"}]}),
        "untag": (client.untag_resource, {"tagKeys": ["k"]}),
    }
    call, params = calls[operation]
    code, message, status = error(call, resourceArn=arn, **params)
    assert (code, status) == ("InvalidParameterException", 400)
    assert "resourceArn" in message


def test_arn_of_a_missing_repository(ecr: Any, repo_name: str) -> None:
    for call, params in [
        (ecr.list_tags_for_resource, {}),
        (ecr.tag_resource, {"tags": [{"Key": "k", "Value": "v"}]}),
        (ecr.untag_resource, {"tagKeys": ["k"]}),
    ]:
        code, message, _ = error(call, resourceArn=ARN_PREFIX + repo_name, **params)
        assert code == "RepositoryNotFoundException"
        assert repo_name in message


# --- the aws CLI ---------------------------------------------------------------------------------


def aws(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run_aws(server, *args)


@pytest.mark.slow  # the aws CLI
def test_aws_cli_repository_lifecycle(server: Server, ecr: Any, repo_name: str) -> None:
    created = aws(
        server,
        "create-repository",
        "--repository-name",
        repo_name,
        "--image-tag-mutability",
        "IMMUTABLE_WITH_EXCLUSION",
        "--image-tag-mutability-exclusion-filters",
        "filterType=WILDCARD,filter=latest",
        "--tags",
        "Key=team,Value=web",
    )
    assert created.returncode == 0, created.stderr
    repository = json.loads(created.stdout)["repository"]
    assert repository["imageTagMutabilityExclusionFilters"] == [LATEST]

    again = aws(server, "create-repository", "--repository-name", repo_name)
    assert again.returncode == 255
    assert "RepositoryAlreadyExistsException" in again.stderr

    push(ecr, repo_name, "v1", seed="cli")
    refused = aws(server, "delete-repository", "--repository-name", repo_name)
    assert refused.returncode == 255
    assert "(RepositoryNotEmptyException)" in refused.stderr

    deleted = aws(server, "delete-repository", "--repository-name", repo_name, "--force")
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["repository"]["repositoryName"] == repo_name
    assert repo_name not in repo_names(ecr)


# --- what a repository holds: ListImages and DescribeImages --------------------------------------

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"


def layer_sizes(manifest: bytes) -> int:
    return sum(layer["size"] for layer in json.loads(manifest)["layers"])


def test_describe_images_fields(ecr: Any, repo: str) -> None:
    before = datetime.now().astimezone()
    docker = make_image(ecr, repo, seed="docker", layers=3)
    docker_digest = ecr.put_image(
        repositoryName=repo, imageManifest=docker.decode(), imageTag="v1"
    )["image"]["imageId"]["imageDigest"]
    ecr.put_image(repositoryName=repo, imageManifest=docker.decode(), imageTag="stable")
    oci = make_image(ecr, repo, seed="oci", media_type=OCI, layers=2)
    oci_digest = ecr.put_image(
        repositoryName=repo, imageManifest=oci.decode(), imageManifestMediaType=OCI
    )["image"]["imageId"]["imageDigest"]
    after = datetime.now().astimezone()

    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert set(details) == {docker_digest, oci_digest}
    for detail in details.values():
        pushed = detail.pop("imagePushedAt")
        assert before.replace(microsecond=0) <= pushed <= after
    tags = details[docker_digest].pop("imageTags")
    assert sorted(tags) == ["stable", "v1"]
    assert details[docker_digest] == {
        "registryId": ACCOUNT,
        "repositoryName": repo,
        "imageDigest": docker_digest,
        "imageSizeInBytes": layer_sizes(docker),
        "imageManifestMediaType": DOCKER,
        "artifactMediaType": "application/vnd.docker.container.image.v1+json",
        "imageStatus": "ACTIVE",
    }
    assert details[oci_digest] == {  # untagged: no imageTags member at all
        "registryId": ACCOUNT,
        "repositoryName": repo,
        "imageDigest": oci_digest,
        "imageSizeInBytes": layer_sizes(oci),
        "imageManifestMediaType": OCI,
        "artifactMediaType": "application/vnd.oci.image.config.v1+json",
        "imageStatus": "ACTIVE",
    }


def test_list_and_describe_filter_by_tag_status(ecr: Any, repo: str) -> None:
    manifest = make_image(ecr, repo, seed="tagged").decode()
    tagged = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v1")["image"]
    ecr.put_image(repositoryName=repo, imageManifest=manifest, imageTag="v2")
    tagged_digest = tagged["imageId"]["imageDigest"]
    untagged = push(ecr, repo, None, seed="untagged")
    moved = push(ecr, repo, "moving", seed="moved-from")
    moved_to = push(ecr, repo, "moving", seed="moved-to")  # "moved" is untagged now

    def listed(status: str) -> set[tuple[str, str | None]]:
        ids = ecr.list_images(repositoryName=repo, filter={"tagStatus": status})["imageIds"]
        assert all(
            set(i) == ({"imageDigest", "imageTag"} if i.get("imageTag") else {"imageDigest"})
            for i in ids
        )
        return {(i["imageDigest"], i.get("imageTag")) for i in ids}

    def described(status: str) -> set[str]:
        answer = ecr.describe_images(repositoryName=repo, filter={"tagStatus": status})
        return {d["imageDigest"] for d in answer["imageDetails"]}

    assert listed("TAGGED") == {(tagged_digest, "v1"), (tagged_digest, "v2"), (moved_to, "moving")}
    assert listed("UNTAGGED") == {(untagged, None), (moved, None)}
    assert listed("ANY") == listed("TAGGED") | listed("UNTAGGED")
    assert described("TAGGED") == {tagged_digest, moved_to}
    assert described("UNTAGGED") == {untagged, moved}
    assert described("ANY") == {tagged_digest, moved_to, untagged, moved}


@pytest.mark.parametrize(
    ("status", "expected"), [("ACTIVE", 1), ("ANY", 1), ("ARCHIVED", 0), ("ACTIVATING", 0)]
)
def test_image_status_filter(ecr: Any, repo: str, status: str, expected: int) -> None:
    push(ecr, repo, "v1", seed="status")
    listed = ecr.list_images(repositoryName=repo, filter={"imageStatus": status})["imageIds"]
    assert len(listed) == expected
    details = ecr.describe_images(repositoryName=repo, filter={"imageStatus": status})
    assert len(details["imageDetails"]) == expected


def test_describe_named_images(ecr: Any, repo: str) -> None:
    digest = push(ecr, repo, "v1", seed="named")
    by_tag = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    by_digest = ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    assert by_tag["imageDetails"] == by_digest["imageDetails"]
    assert [d["imageDigest"] for d in by_tag["imageDetails"]] == [digest]
    code, message, _ = error(
        ecr.describe_images, repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageTag": "no"}]
    )
    assert code == "ImageNotFoundException"
    assert "'no'" in message and repo in message


def test_bad_tag_status_is_refused(server: Server, repo: str) -> None:
    client = unvalidated(server)
    for call in (client.list_images, client.describe_images):
        code, message, _ = error(call, repositoryName=repo, filter={"tagStatus": "SOME"})
        assert code == "InvalidParameterException"
        assert "tagStatus" in message


def test_an_empty_repository_lists_nothing(ecr: Any, repo: str) -> None:
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []
