"""IAM policy documents (openecr.domain.iam_policy): what is valid, what is unsupported, and how a
policy decides a request. The same tables run through SetRepositoryPolicy in test_policies."""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest

from openecr.domain.iam_policy import (
    ECR_ACTIONS,
    AccessRequest,
    Decision,
    PolicyInvalid,
    UnsupportedPolicy,
    parse_policy,
    request_context,
)

A, B = "111111111111", "222222222222"
REPO = f"arn:aws:ecr:us-east-1:{A}:repository/team/app"


def statement(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "Sid": "pull",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{B}:root"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    }
    doc.update(overrides)
    return {k: v for k, v in doc.items() if v is not None}


def policy(*statements: dict[str, Any], version: str | None = "2012-10-17") -> str:
    doc: dict[str, Any] = {"Statement": list(statements) or [statement()]}
    if version is not None:
        doc["Version"] = version
    return json.dumps(doc)


VALID = {
    "the-usual": policy(),
    "version-2008": policy(version="2008-10-17"),
    "no-version": policy(version=None),
    "single-statement-object": json.dumps({"Version": "2012-10-17", "Statement": statement()}),
    "with-id": json.dumps({"Version": "2012-10-17", "Id": "x", "Statement": [statement()]}),
    "principal-star": policy(statement(Principal="*")),
    "aws-star": policy(statement(Principal={"AWS": "*"})),
    "account-number": policy(statement(Principal={"AWS": B})),
    "user-and-role": policy(
        statement(
            Principal={"AWS": [f"arn:aws:iam::{B}:user/bob", f"arn:aws:iam::{B}:role/ci/builder"]}
        )
    ),
    "service-principal": policy(statement(Principal={"Service": "codebuild.amazonaws.com"})),
    "ecr-star": policy(statement(Action="ecr:*")),
    "star": policy(statement(Action="*")),
    "wildcard-action": policy(statement(Action=["ecr:Batch*", "ecr:Get?ownloadUrlForLayer"])),
    "action-case": policy(statement(Action="ECR:batchgetimage")),
    "not-action": policy(statement(Action=None, NotAction="ecr:PutImage")),
    "not-principal": policy(statement(Effect="Deny", Principal=None, NotPrincipal={"AWS": A})),
    "resource": policy(statement(Resource=REPO)),
    "resource-list": policy(statement(Resource=[REPO, "arn:aws:ecr:*:*:repository/*"])),
    "not-resource": policy(statement(NotResource=REPO)),
    "sid-with-spaces": policy(statement(Sid="allow public pull")),
    "duplicate-sids": policy(statement(), statement()),
    "deny": policy(statement(Effect="Deny")),
    "condition": policy(
        statement(
            Condition={
                "StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:user/*"},
                "StringEqualsIfExists": {"aws:RequestedRegion": ["us-east-1", "eu-west-1"]},
                "Bool": {"aws:SecureTransport": "false"},
                "Null": {"aws:PrincipalAccount": "false"},
                "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/*"},
            }
        )
    ),
    "condition-bool-json": policy(statement(Condition={"Bool": {"aws:SecureTransport": False}})),
}

INVALID = {
    "not-json": "{not json",
    "empty": "",
    "a-list": "[]",
    "no-statement": json.dumps({"Version": "2012-10-17"}),
    "empty-statements": json.dumps({"Version": "2012-10-17", "Statement": []}),
    "bad-version": policy(version="2020-01-01"),
    "unknown-top-level": json.dumps({"Version": "2012-10-17", "Statement": [statement()], "X": 1}),
    "statement-not-object": json.dumps({"Statement": ["x"]}),
    "unknown-element": policy(statement(Actions="ecr:*")),
    "no-effect": policy(statement(Effect=None)),
    "effect-case": policy(statement(Effect="allow")),
    "no-principal": policy(statement(Principal=None)),
    "both-principals": policy(statement(NotPrincipal={"AWS": A})),
    "principal-string": policy(statement(Principal=B)),
    "principal-type": policy(statement(Principal={"Users": B})),
    "principal-not-arn": policy(statement(Principal={"AWS": "bob"})),
    "principal-short-account": policy(statement(Principal={"AWS": "12345"})),
    "principal-group": policy(statement(Principal={"AWS": f"arn:aws:iam::{B}:group/devs"})),
    "principal-empty-list": policy(statement(Principal={"AWS": []})),
    "no-action": policy(statement(Action=None)),
    "both-actions": policy(statement(NotAction="ecr:PutImage")),
    "other-service": policy(statement(Action="s3:GetObject")),
    "unknown-ecr-action": policy(statement(Action="ecr:FlyToTheMoon")),
    "action-without-prefix": policy(statement(Action="BatchGetImage")),
    "action-number": policy(statement(Action=7)),
    "resource-not-arn": policy(statement(Resource="team/app")),
    "both-resources": policy(statement(Resource=REPO, NotResource=REPO)),
    "sid-number": policy(statement(Sid=1)),
    "condition-not-object": policy(statement(Condition="x")),
    "bool-not-boolean": policy(statement(Condition={"Bool": {"aws:SecureTransport": "yes"}})),
}

UNSUPPORTED = {
    "ip-address": ({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}, "condition operator IpAddress"),
    "date": ({"DateGreaterThan": {"aws:CurrentTime": "2020-01-01"}}, "DateGreaterThan"),
    "set-operator": (
        {"ForAnyValue:StringEquals": {"aws:PrincipalArn": "x"}},
        "set operators (ForAnyValue:StringEquals)",
    ),
    "unknown-key": ({"StringEquals": {"aws:SourceVpce": "vpce-1"}}, "condition key aws:SourceVpce"),
    "null-if-exists": ({"NullIfExists": {"aws:PrincipalArn": "true"}}, "NullIfExists"),
}


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_valid_policies_parse(text: str) -> None:
    assert parse_policy(text).statements


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_invalid_policies_are_refused(text: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)
    assert not isinstance(caught.value, UnsupportedPolicy)


@pytest.mark.parametrize(("condition", "says"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_conditions_are_named(condition: dict[str, Any], says: str) -> None:
    with pytest.raises(UnsupportedPolicy, match="openecr does not evaluate") as caught:
        parse_policy(policy(statement(Condition=condition)))
    assert says in str(caught.value)


def test_the_action_list_covers_the_model() -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    assert set(model.operation_names) <= set(ECR_ACTIONS)
    assert set(ECR_ACTIONS) - set(model.operation_names) == {
        "BatchImportUpstreamImage",
        "ReplicateImage",
    }


def request(
    principal: str, action: str = "ecr:BatchGetImage", resource: str = REPO
) -> AccessRequest:
    account = principal.split(":")[4]
    context = request_context(principal, account, "us-east-1", A, secure=False)
    return AccessRequest(principal, account, action, resource, context)


BOB = f"arn:aws:iam::{B}:user/bob"
B_ROOT = f"arn:aws:iam::{B}:root"
SESSION = f"arn:aws:sts::{B}:assumed-role/builder/session-1"

DECISIONS = [
    ("account-root-names-every-principal", statement(), BOB, "ecr:BatchGetImage", "allow"),
    ("account-number-too", statement(Principal={"AWS": B}), SESSION, "ecr:BatchGetImage", "allow"),
    ("other-action", statement(), BOB, "ecr:PutImage", "none"),
    ("other-account", statement(), f"arn:aws:iam::{A}:user/x", "ecr:BatchGetImage", "none"),
    ("user-arn-only", statement(Principal={"AWS": BOB}), B_ROOT, "ecr:BatchGetImage", "none"),
    ("user-arn", statement(Principal={"AWS": BOB}), BOB, "ecr:BatchGetImage", "allow"),
    (
        "role-names-its-sessions",
        statement(Principal={"AWS": f"arn:aws:iam::{B}:role/ci/builder"}),
        SESSION,
        "ecr:BatchGetImage",
        "allow",
    ),
    ("wildcard", statement(Action="ecr:Batch*"), BOB, "ecr:BatchDeleteImage", "allow"),
    ("case", statement(Action="ecr:batchgetimage"), BOB, "ecr:BatchGetImage", "allow"),
    ("not-action", statement(Action=None, NotAction="ecr:Put*"), BOB, "ecr:PutImage", "none"),
    ("deny", statement(Effect="Deny", Principal="*"), BOB, "ecr:BatchGetImage", "deny"),
    (
        "not-principal-deny",
        statement(Effect="Deny", Principal=None, NotPrincipal={"AWS": BOB}, Action="ecr:*"),
        B_ROOT,
        "ecr:PutImage",
        "deny",
    ),
    ("resource-match", statement(Resource=REPO), BOB, "ecr:BatchGetImage", "allow"),
    (
        "resource-other",
        statement(Resource=f"arn:aws:ecr:us-east-1:{A}:repository/other"),
        BOB,
        "ecr:BatchGetImage",
        "none",
    ),
    (
        "resource-wildcard",
        statement(Resource=f"arn:aws:ecr:*:{A}:repository/team/*"),
        BOB,
        "ecr:BatchGetImage",
        "allow",
    ),
    (
        "condition-principal-like",
        statement(
            Principal="*",
            Condition={"StringLike": {"aws:principalarn": f"arn:aws:iam::{B}:user/*"}},
        ),
        BOB,
        "ecr:BatchGetImage",
        "allow",
    ),
    (
        "condition-principal-like-root",
        statement(
            Principal="*",
            Condition={"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:user/*"}},
        ),
        B_ROOT,
        "ecr:BatchGetImage",
        "none",
    ),
    (
        "condition-not-equals",
        statement(Principal="*", Condition={"StringNotEquals": {"aws:PrincipalAccount": A}}),
        BOB,
        "ecr:BatchGetImage",
        "allow",
    ),
    (
        "condition-secure-transport",
        statement(Principal="*", Condition={"Bool": {"aws:SecureTransport": "true"}}),
        BOB,
        "ecr:BatchGetImage",
        "none",
    ),
    (
        "condition-type",
        statement(Principal="*", Condition={"StringEquals": {"aws:PrincipalType": "AssumedRole"}}),
        SESSION,
        "ecr:BatchGetImage",
        "allow",
    ),
]


@pytest.mark.parametrize(
    ("doc", "principal", "action", "expected"),
    [case[1:] for case in DECISIONS],
    ids=[case[0] for case in DECISIONS],
)
def test_decisions(doc: dict[str, Any], principal: str, action: str, expected: str) -> None:
    decided = parse_policy(policy(doc)).evaluate(request(principal, action))
    assert (
        decided is {"allow": Decision.ALLOW, "deny": Decision.DENY, "none": Decision.NONE}[expected]
    )


def test_deny_wins_over_allow() -> None:
    text = policy(statement(), statement(Effect="Deny", Principal={"AWS": BOB}))
    assert parse_policy(text).evaluate(request(BOB)) is Decision.DENY
    assert parse_policy(text).evaluate(request(B_ROOT)) is Decision.ALLOW
