"""Repository creation templates through boto3: create, describe, update, delete, and what a
template gives the repositories create-on-push makes."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest

from conftest import ACCOUNT, InProcessServer, Server, ServerFactory
from conftest import client_error as error
from conftest import unvalidated_client as raw_client
from openecr.domain.creation_templates import (
    AppliedFor,
    CreationTemplate,
    choose_template,
    normalize_prefix,
    prefix_matches,
)

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "pull",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            }
        ],
    }
)
LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)
ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecr-templates"
KMS = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def unique() -> str:
    return f"tpl{uuid.uuid4().hex[:10]}"


# --- the domain: prefixes -----------------------------------------------------------------------


def _template(prefix: str, *applied: AppliedFor) -> CreationTemplate:
    return CreationTemplate(prefix, applied or (AppliedFor.CREATE_ON_PUSH,), 0.0, 0.0)


def test_a_prefix_covers_the_names_below_it() -> None:
    assert normalize_prefix("prod/") == "prod"
    assert normalize_prefix("ROOT") == "ROOT"
    assert prefix_matches("prod", "prod/app")
    assert prefix_matches("prod", "prod/team/app")
    assert not prefix_matches("prod", "prod")
    assert not prefix_matches("prod", "production/app")
    assert prefix_matches("ROOT", "anything")


def test_the_longest_prefix_applied_for_the_scenario_wins() -> None:
    templates = [
        _template("ROOT"),
        _template("team"),
        _template("team/web", AppliedFor.REPLICATION),
        _template("team/web/app"),
    ]
    push = AppliedFor.CREATE_ON_PUSH

    def chosen(name: str, scenario: AppliedFor = push) -> str | None:
        found = choose_template(templates, name, scenario)
        return None if found is None else found.prefix

    assert chosen("team/web/app/x") == "team/web/app"
    assert chosen("team/web/x") == "team"  # team/web is for replication only
    assert chosen("team/web/x", AppliedFor.REPLICATION) == "team/web"
    assert chosen("team") == "ROOT"
    assert chosen("other/app") == "ROOT"
    assert chosen("other/app", AppliedFor.PULL_THROUGH_CACHE) is None


# --- create and describe ------------------------------------------------------------------------


def test_create_returns_the_template_and_describe_finds_it(ecr: Any) -> None:
    prefix = unique()
    made = ecr.create_repository_creation_template(
        prefix=prefix,
        description="team images",
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": KMS},
        resourceTags=[{"Key": "team", "Value": "web"}],
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "latest*"}],
        repositoryPolicy=POLICY,
        lifecyclePolicy=LIFECYCLE,
        appliedFor=["CREATE_ON_PUSH", "REPLICATION", "CREATE_ON_PUSH"],
        customRoleArn=ROLE,
    )
    assert made["registryId"] == ACCOUNT
    template = made["repositoryCreationTemplate"]
    assert template["createdAt"] == template["updatedAt"]
    assert {k: v for k, v in template.items() if k not in ("createdAt", "updatedAt")} == {
        "prefix": prefix,
        "description": "team images",
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KMS},
        "resourceTags": [{"Key": "team", "Value": "web"}],
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest*"}],
        "repositoryPolicy": POLICY,
        "lifecyclePolicy": LIFECYCLE,
        "appliedFor": ["CREATE_ON_PUSH", "REPLICATION"],
        "customRoleArn": ROLE,
    }
    described = ecr.describe_repository_creation_templates(prefixes=[prefix])
    assert described["registryId"] == ACCOUNT
    assert described["repositoryCreationTemplates"] == [template]
    assert "nextToken" not in described


def test_defaults_of_a_minimal_template(ecr: Any) -> None:
    prefix = unique() + "/sub"
    template = ecr.create_repository_creation_template(
        prefix=prefix + "/", appliedFor=["PULL_THROUGH_CACHE"]
    )["repositoryCreationTemplate"]
    assert {k: v for k, v in template.items() if k not in ("createdAt", "updatedAt")} == {
        "prefix": prefix,  # the implied trailing / is dropped
        "appliedFor": ["PULL_THROUGH_CACHE"],
        "encryptionConfiguration": {"encryptionType": "AES256"},
        "resourceTags": [],
        "imageTagMutability": "MUTABLE",
    }


def test_a_prefix_twice_is_template_already_exists(ecr: Any) -> None:
    prefix = unique()
    ecr.create_repository_creation_template(prefix=prefix, appliedFor=["REPLICATION"])
    for again in (prefix, prefix + "/"):
        assert error(
            ecr.create_repository_creation_template, prefix=again, appliedFor=["REPLICATION"]
        ) == (
            "TemplateAlreadyExistsException",
            f"The repository creation template with prefix '{prefix}' already exists in the "
            f"registry with id '{ACCOUNT}'",
            400,
        )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"prefix": "Bad_Prefix", "appliedFor": ["REPLICATION"]},
            "Invalid parameter at 'prefix' failed to satisfy constraint: 'must satisfy regular "
            "expression '^([a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(\\/[a-z0-9]+((\\.|_|__|-+)"
            "[a-z0-9]+)*)*\\/?|ROOT)$''",
        ),
        (
            {"prefix": "team"},
            "Invalid parameter at 'appliedFor' failed to satisfy constraint: "
            "'Member must not be null'",
        ),
        (
            {"prefix": "team", "appliedFor": []},
            "Invalid parameter at 'appliedFor' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'",
        ),
        (
            {"prefix": "team", "appliedFor": ["ON_PULL"]},
            "Invalid parameter at 'appliedFor' failed to satisfy constraint: "
            "'Member must satisfy enum value set: [REPLICATION, PULL_THROUGH_CACHE, "
            "CREATE_ON_PUSH]'",
        ),
        (
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            },
            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
            "constraint: 'ImageTagMutabilityExclusionFilters can't be null when "
            "imageTagMutability is set as IMMUTABLE_WITH_EXCLUSION'",
        ),
        (
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "encryptionConfiguration": {"encryptionType": "AES256", "kmsKey": KMS},
            },
            "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
            "'kmsKey can only be specified with KMS encryption'",
        ),
        (
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "resourceTags": [{"Key": "aws:owner", "Value": "x"}],
            },
            "Tag keys that start with 'aws:' are reserved for AWS use",
        ),
        (
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "resourceTags": [{"Key": f"k{i}", "Value": ""} for i in range(51)],
            },
            "Invalid parameter at 'resourceTags' failed to satisfy constraint: "
            "'Member must have length less than or equal to 50'",
        ),
        (
            {"prefix": "team", "appliedFor": ["REPLICATION"], "repositoryPolicy": "{not json"},
            "Invalid parameter at 'repositoryPolicy' failed to satisfy constraint: "
            "'Invalid repository policy provided'",
        ),
        (  # a JSON object that is no IAM policy (no statement) is refused like SetRepositoryPolicy
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "repositoryPolicy": '{"Version": "2012-10-17", "Statement": []}',
            },
            "Invalid parameter at 'repositoryPolicy' failed to satisfy constraint: "
            "'Invalid repository policy provided'",
        ),
        (
            {"prefix": "team", "appliedFor": ["REPLICATION"], "lifecyclePolicy": "{}"},
            "Invalid parameter at 'lifecyclePolicy' failed to satisfy constraint: "
            "'Invalid lifecycle policy provided'",
        ),
        (
            {"prefix": "team", "appliedFor": ["REPLICATION"], "customRoleArn": "role"},
            "Invalid parameter at 'customRoleArn' failed to satisfy constraint: 'Invalid role ARN'",
        ),
        (
            {
                "prefix": "team",
                "appliedFor": ["REPLICATION"],
                "customRoleArn": "arn:aws:iam::999999999999:role/elsewhere",
            },
            "Invalid parameter at 'customRoleArn' failed to satisfy constraint: "
            "'The role must be in the same account as the registry'",
        ),
    ],
    ids=[
        "prefix-pattern",
        "no-applied-for",
        "empty-applied-for",
        "unknown-scenario",
        "exclusion-mode-without-filters",
        "aes-with-kms-key",
        "aws-tag-key",
        "51-tags",
        "policy-not-json",
        "policy-without-statements",
        "lifecycle-without-rules",
        "role-not-an-arn",
        "role-of-another-account",
    ],
)
def test_invalid_templates(server: Server, params: dict[str, Any], message: str) -> None:
    client = raw_client(server)
    assert error(client.create_repository_creation_template, **params) == (
        "InvalidParameterException",
        message,
        400,
    )
    described = client.describe_repository_creation_templates(prefixes=["team"])
    assert described["repositoryCreationTemplates"] == []


# --- update and delete --------------------------------------------------------------------------


def test_update_changes_only_what_it_names(ecr: Any) -> None:
    prefix = unique()
    made = ecr.create_repository_creation_template(
        prefix=prefix,
        description="first",
        appliedFor=["REPLICATION"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "a", "Value": "1"}],
        repositoryPolicy=POLICY,
    )["repositoryCreationTemplate"]
    time.sleep(1.05)  # timestamps are whole seconds
    updated = ecr.update_repository_creation_template(
        prefix=prefix,
        description="second",
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "dev-*"}],
        repositoryPolicy="",  # an empty text clears it
    )
    assert updated["registryId"] == ACCOUNT
    template = updated["repositoryCreationTemplate"]
    assert template["createdAt"] == made["createdAt"]
    assert template["updatedAt"] > made["updatedAt"]
    assert template["description"] == "second"
    assert template["appliedFor"] == ["REPLICATION"]
    assert template["resourceTags"] == [{"Key": "a", "Value": "1"}]
    assert template["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert template["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "dev-*"}
    ]
    assert "repositoryPolicy" not in template
    described = ecr.describe_repository_creation_templates(prefixes=[prefix])
    assert described["repositoryCreationTemplates"] == [template]
    # filters alone are checked against the stored mode
    assert (
        error(
            ecr.update_repository_creation_template,
            prefix=prefix,
            imageTagMutability="MUTABLE",
            imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x"}],
        )[0]
        == "InvalidParameterException"
    )
    reverted = ecr.update_repository_creation_template(prefix=prefix, imageTagMutability="MUTABLE")
    assert "imageTagMutabilityExclusionFilters" not in reverted["repositoryCreationTemplate"]


def test_update_and_delete_of_a_missing_template(ecr: Any) -> None:
    prefix = unique()
    expected = (
        "TemplateNotFoundException",
        f"The repository creation template with prefix '{prefix}' does not exist in the "
        f"registry with id '{ACCOUNT}'",
        400,
    )
    assert error(ecr.update_repository_creation_template, prefix=prefix, description="x") == (
        expected
    )
    assert error(ecr.delete_repository_creation_template, prefix=prefix) == expected


def test_delete_returns_the_template(ecr: Any) -> None:
    prefix = unique()
    made = ecr.create_repository_creation_template(prefix=prefix, appliedFor=["CREATE_ON_PUSH"])
    deleted = ecr.delete_repository_creation_template(prefix=prefix + "/")
    assert deleted == {
        "registryId": ACCOUNT,
        "repositoryCreationTemplate": made["repositoryCreationTemplate"],
        "ResponseMetadata": deleted["ResponseMetadata"],
    }
    assert (
        ecr.describe_repository_creation_templates(prefixes=[prefix])["repositoryCreationTemplates"]
        == []
    )
    assert error(ecr.delete_repository_creation_template, prefix=prefix)[0] == (
        "TemplateNotFoundException"
    )


def test_describe_pages_in_prefix_order(make_server: ServerFactory) -> None:
    server = make_server()
    client = raw_client(server)
    prefixes = ["b/x", "a", "ROOT", "c", "b"]
    for prefix in prefixes:
        client.create_repository_creation_template(prefix=prefix, appliedFor=["REPLICATION"])
    every = client.describe_repository_creation_templates()["repositoryCreationTemplates"]
    assert [t["prefix"] for t in every] == ["ROOT", "a", "b", "b/x", "c"]
    seen: list[str] = []
    token = None
    while True:
        page = client.describe_repository_creation_templates(
            maxResults=2, **({"nextToken": token} if token else {})
        )
        assert len(page["repositoryCreationTemplates"]) <= 2
        seen += [t["prefix"] for t in page["repositoryCreationTemplates"]]
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == ["ROOT", "a", "b", "b/x", "c"]
    # named prefixes: unknown ones are skipped, a trailing / is the same prefix
    named = client.describe_repository_creation_templates(prefixes=["c", "nope", "a/"])
    assert [t["prefix"] for t in named["repositoryCreationTemplates"]] == ["a", "c"]
    paged = client.describe_repository_creation_templates(prefixes=["c", "a", "b"], maxResults=1)
    assert [t["prefix"] for t in paged["repositoryCreationTemplates"]] == ["a"]
    rest = client.describe_repository_creation_templates(
        prefixes=["c", "a", "b"], maxResults=5, nextToken=paged["nextToken"]
    )
    assert [t["prefix"] for t in rest["repositoryCreationTemplates"]] == ["b", "c"]
    assert error(client.describe_repository_creation_templates, nextToken="bogus") == (
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
        400,
    )
    # a token of this listing is refused by another
    assert error(client.list_pull_time_update_exclusions, nextToken=paged["nextToken"]) == (
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
        400,
    )


def test_templates_survive_a_restart(make_server: ServerFactory) -> None:
    server = make_server()
    made = server.client().create_repository_creation_template(
        prefix="kept", appliedFor=["CREATE_ON_PUSH"], lifecyclePolicy=LIFECYCLE
    )["repositoryCreationTemplate"]
    server.restart()
    described = server.client().describe_repository_creation_templates()
    assert described["repositoryCreationTemplates"] == [made]


# --- create on push -----------------------------------------------------------------------------


def _push_blob(server: Server, name: str) -> None:
    """A monolithic blob upload: the first push to ``name``, which creates it."""
    data = name.encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with httpx.Client(base_url=server.endpoint) as client:
        response = client.post(
            f"/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data
        )
    assert response.status_code == 201, response.text


def _documents(server: Server, name: str) -> tuple[str | None, str | None]:
    """The repository and lifecycle policy documents stored with a repository."""
    assert isinstance(server, InProcessServer) and server._runtime is not None
    with server._runtime.metadata.read() as tx:
        repo = tx.get_repository(ACCOUNT, name)
        assert repo is not None
        return (
            tx.get_repository_document(repo.id, "repository-policy"),
            tx.get_repository_document(repo.id, "lifecycle-policy"),
        )


def test_create_on_push_applies_the_matching_template(make_server: ServerFactory) -> None:
    server = make_server("--create-on-push")
    ecr = server.client()
    ecr.create_repository_creation_template(
        prefix="ROOT",
        appliedFor=["CREATE_ON_PUSH"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "from", "Value": "root"}],
    )
    ecr.create_repository_creation_template(
        prefix="team",
        appliedFor=["REPLICATION", "CREATE_ON_PUSH"],
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "release-*"}],
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": KMS},
        resourceTags=[{"Key": "from", "Value": "team"}, {"Key": "cost", "Value": "42"}],
        repositoryPolicy=POLICY,
        lifecyclePolicy=LIFECYCLE,
    )
    ecr.create_repository_creation_template(
        prefix="team/web", appliedFor=["REPLICATION"], imageTagMutability="IMMUTABLE"
    )
    before = time.time()
    for name in ("team/web/app", "team", "other/app"):
        _push_blob(server, name)
    repos = {r["repositoryName"]: r for r in ecr.describe_repositories()["repositories"]}

    web = repos["team/web/app"]  # team/web is for replication only: team applies
    assert web["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert web["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "release-*"}
    ]
    assert web["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS}
    tags = ecr.list_tags_for_resource(resourceArn=web["repositoryArn"])["tags"]
    assert tags == [{"Key": "cost", "Value": "42"}, {"Key": "from", "Value": "team"}]
    policy, lifecycle = _documents(server, "team/web/app")
    assert policy is not None and json.loads(policy) == {"text": POLICY}
    # the template's policy is the repository's policy, as GetRepositoryPolicy reads it
    assert ecr.get_repository_policy(repositoryName="team/web/app")["policyText"] == POLICY
    assert lifecycle is not None
    stored = json.loads(lifecycle)
    assert stored["lifecyclePolicyText"] == LIFECYCLE
    assert int(before) <= stored["registeredAt"] <= time.time()

    for name in ("team", "other/app"):  # "team" itself is not under team/: ROOT applies
        assert repos[name]["imageTagMutability"] == "IMMUTABLE"
        assert repos[name]["encryptionConfiguration"] == {"encryptionType": "AES256"}
        tags = ecr.list_tags_for_resource(resourceArn=repos[name]["repositoryArn"])["tags"]
        assert tags == [{"Key": "from", "Value": "root"}]
        assert _documents(server, name) == (None, None)

    # CreateRepository ignores templates (they are for repositories ECR creates)
    made = ecr.create_repository(repositoryName="team/api")["repository"]
    assert made["imageTagMutability"] == "MUTABLE"
    # a template deleted applies no more
    ecr.delete_repository_creation_template(prefix="ROOT")
    existing = ecr.describe_repositories(repositoryNames=["team"])["repositories"][0]
    assert existing["imageTagMutability"] == "IMMUTABLE"  # existing repositories stay as made
    _push_blob(server, "plain")
    plain = ecr.describe_repositories(repositoryNames=["plain"])["repositories"][0]
    assert plain["imageTagMutability"] == "MUTABLE"
    assert ecr.list_tags_for_resource(resourceArn=plain["repositoryArn"])["tags"] == []


def test_templates_not_for_create_on_push_leave_pushes_alone(make_server: ServerFactory) -> None:
    server = make_server("--create-on-push")
    ecr = server.client()
    ecr.create_repository_creation_template(
        prefix="ROOT",
        appliedFor=["PULL_THROUGH_CACHE", "REPLICATION"],
        imageTagMutability="IMMUTABLE",
    )
    _push_blob(server, "pushed/app")
    repo = ecr.describe_repositories(repositoryNames=["pushed/app"])["repositories"][0]
    assert repo["imageTagMutability"] == "MUTABLE"
    assert _documents(server, "pushed/app") == (None, None)
