"""IAM policy documents as ECR's repository and registry policies use them: parsing, validation
and evaluation (pure: no storage, no clock).

Grammar accepted (docs/policies.md lists it with examples)::

    {"Version": "2012-10-17" | "2008-10-17",          optional
     "Id": <string>,                                   optional
     "Statement": <statement> | [<statement>, ...]}    one or more

    statement: {"Sid": <string>, "Effect": "Allow" | "Deny",
                "Principal" | "NotPrincipal": "*" | {"AWS" | "Service" | "Federated"
                                                      | "CanonicalUser": <value or list>},
                "Action" | "NotAction": <action or list>,
                "Resource" | "NotResource": <ARN pattern or list>,   optional
                "Condition": {<operator>: {<key>: <value or list>}}}  optional

An action is ``*`` or ``ecr:<pattern>`` (case-insensitive, ``*`` and ``?`` wildcards) that
matches at least one ECR action. An AWS principal is ``*``, a 12-digit account, or an IAM ARN
(``:root``, ``user/...``, ``role/...``) or STS assumed-role ARN. Conditions are a documented
subset: :data:`CONDITION_OPERATORS` (each also with ``IfExists``) on :data:`CONDITION_KEYS`;
anything else raises :class:`UnsupportedPolicy` rather than being evaluated wrongly.

Evaluation (:func:`evaluate`) answers, for one request, whether some statement explicitly
denies it, allows it, or neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

VERSIONS = ("2012-10-17", "2008-10-17")

# IAM action names of ECR (without the ``ecr:`` prefix): the 58 operations of botocore's model
# and the actions that are permissions only (no API call of their own).
ECR_ACTIONS: tuple[str, ...] = (
    "BatchCheckLayerAvailability", "BatchDeleteImage", "BatchGetImage",
    "BatchGetRepositoryScanningConfiguration", "BatchImportUpstreamImage",
    "CompleteLayerUpload", "CreatePullThroughCacheRule", "CreateRepository",
    "CreateRepositoryCreationTemplate", "DeleteLifecyclePolicy", "DeletePullThroughCacheRule",
    "DeleteRegistryPolicy", "DeleteRepository", "DeleteRepositoryCreationTemplate",
    "DeleteRepositoryPolicy", "DeleteSigningConfiguration", "DeregisterPullTimeUpdateExclusion",
    "DescribeImageReplicationStatus", "DescribeImageScanFindings", "DescribeImageSigningStatus",
    "DescribeImages", "DescribePullThroughCacheRules", "DescribeRegistry",
    "DescribeRepositories", "DescribeRepositoryCreationTemplates", "GetAccountSetting",
    "GetAuthorizationToken", "GetDownloadUrlForLayer", "GetLifecyclePolicy",
    "GetLifecyclePolicyPreview", "GetRegistryPolicy", "GetRegistryScanningConfiguration",
    "GetRepositoryPolicy", "GetSigningConfiguration", "InitiateLayerUpload",
    "ListImageReferrers", "ListImages", "ListPullTimeUpdateExclusions", "ListTagsForResource",
    "PutAccountSetting", "PutImage", "PutImageScanningConfiguration", "PutImageTagMutability",
    "PutLifecyclePolicy", "PutRegistryPolicy", "PutRegistryScanningConfiguration",
    "PutReplicationConfiguration", "PutSigningConfiguration", "RegisterPullTimeUpdateExclusion",
    "ReplicateImage", "SetRepositoryPolicy", "StartImageScan", "StartLifecyclePolicyPreview",
    "TagResource", "UntagResource", "UpdateImageStorageClass", "UpdatePullThroughCacheRule",
    "UpdateRepositoryCreationTemplate", "UploadLayerPart", "ValidatePullThroughCacheRule",
)  # fmt: skip

# what a registry policy may grant under REGISTRY_POLICY_SCOPE V1 (V2: every ECR action)
V1_REGISTRY_ACTIONS = frozenset(
    {"ecr:ReplicateImage", "ecr:CreateRepository", "ecr:BatchImportUpstreamImage"}
)

CONDITION_OPERATORS = (
    "StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
    "StringLike", "StringNotLike", "ArnEquals", "ArnNotEquals", "ArnLike", "ArnNotLike",
    "Bool", "Null",
)  # fmt: skip
CONDITION_KEYS = (
    "aws:PrincipalArn",
    "aws:PrincipalAccount",
    "aws:PrincipalType",
    "aws:SecureTransport",
    "aws:RequestedRegion",
    "aws:ResourceAccount",
)
_KEYS = {key.lower(): key for key in CONDITION_KEYS}

_ACCOUNT = re.compile(r"[0-9]{12}")
_IAM_ARN = re.compile(r"arn:aws[a-z-]*:iam::([0-9]{12}):(root|user/[\w+=,.@/-]+|role/[\w+=,.@/-]+)")
_STS_ARN = re.compile(r"arn:aws[a-z-]*:sts::([0-9]{12}):assumed-role/([\w+=,.@-]+)/[\w+=,.@-]+")
_STATEMENT_KEYS = frozenset(
    {
        "Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource",
        "NotResource", "Condition",
    }
)  # fmt: skip
_PRINCIPAL_TYPES = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})


class PolicyInvalid(ValueError):
    """Not a policy document ECR accepts; the message says why (for logs and docs)."""


class UnsupportedPolicy(PolicyInvalid):
    """A valid IAM construct that openecr does not evaluate (a condition operator or key
    outside the documented subset)."""


class Effect(Enum):
    ALLOW = "Allow"
    DENY = "Deny"


class Decision(Enum):
    """What a policy says of one request."""

    DENY = "explicit deny"
    ALLOW = "allow"
    NONE = "no statement applies"


# --- principals ----------------------------------------------------------------------------------


def root_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:root"


def is_principal_arn(arn: str) -> bool:
    """Whether ``arn`` is an IAM root, user or role ARN, or an STS assumed-role ARN."""
    return _IAM_ARN.fullmatch(arn) is not None or _STS_ARN.fullmatch(arn) is not None


def principal_account(arn: str) -> str:
    """The account of a principal ARN (see :func:`is_principal_arn`); raises ValueError."""
    match = _IAM_ARN.fullmatch(arn) or _STS_ARN.fullmatch(arn)
    if match is None:
        raise ValueError(f"not a principal ARN: {arn!r}")
    return match.group(1)


def principal_type(arn: str) -> str:
    """``aws:PrincipalType``: Account (root), User, AssumedRole, or Role."""
    if _STS_ARN.fullmatch(arn):
        return "AssumedRole"
    kind = arn.rsplit(":", 1)[1]
    if kind == "root":
        return "Account"
    return "User" if kind.startswith("user/") else "Role"


def _role_of_session(arn: str) -> str | None:
    """``arn:aws:iam::<acct>:role/<name>`` (no path) of an assumed-role session ARN."""
    match = _STS_ARN.fullmatch(arn)
    return None if match is None else f"{match.group(1)}:{match.group(2)}"


def _principal_matches(value: str, arn: str, account: str) -> bool:
    """Whether the AWS principal ``value`` of a policy names the caller ``arn``."""
    if value == "*":
        return True
    if _ACCOUNT.fullmatch(value):
        return value == account
    if value == arn:
        return True
    named = _IAM_ARN.fullmatch(value)
    if named is None:
        return False
    if named.group(2) == "root":
        return named.group(1) == account
    session = _role_of_session(arn)
    if session is not None and named.group(2).startswith("role/"):
        # a session of the role named, whatever the role's path
        return f"{named.group(1)}:{named.group(2).rsplit('/', 1)[1]}" == session
    return False


@lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """IAM's wildcards: ``*`` any run of characters, ``?`` any one; nothing else is special."""
    return re.compile(".*".join(".".join(map(re.escape, p.split("?"))) for p in pattern.split("*")))


def fnmatchcase(value: str, pattern: str) -> bool:
    """Whether ``value`` matches the IAM wildcard ``pattern`` (case-sensitive)."""
    return _wildcard(pattern).fullmatch(value) is not None


# --- the parsed document -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Principals:
    """``"*"`` (any) or the AWS principals of a statement; other types never match a caller."""

    any: bool
    aws: tuple[str, ...]

    def matches(self, arn: str, account: str) -> bool:
        return self.any or any(_principal_matches(v, arn, account) for v in self.aws)


@dataclass(frozen=True, slots=True)
class Condition:
    operator: str  # as written, without IfExists
    if_exists: bool
    key: str  # canonical spelling of CONDITION_KEYS
    values: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Statement:
    sid: str | None
    effect: Effect
    principals: Principals
    not_principal: bool
    actions: tuple[str, ...]  # lower-cased patterns
    not_action: bool
    resources: tuple[str, ...] | None  # None: no Resource element (the policy's own resource)
    not_resource: bool
    conditions: tuple[Condition, ...]

    def applies(self, request: AccessRequest) -> bool:
        if self.principals.matches(request.principal, request.account) == self.not_principal:
            return False
        action = request.action.lower()
        if any(fnmatchcase(action, p) for p in self.actions) == self.not_action:
            return False
        if self.resources is not None and (
            any(fnmatchcase(request.resource, r) for r in self.resources) == self.not_resource
        ):
            return False
        return all(_holds(c, request.context) for c in self.conditions)


@dataclass(frozen=True, slots=True)
class Policy:
    version: str | None
    statements: tuple[Statement, ...]

    def evaluate(self, request: AccessRequest) -> Decision:
        """DENY if a Deny statement applies, else ALLOW if an Allow statement applies."""
        allowed = False
        for statement in self.statements:
            if statement.applies(request):
                if statement.effect is Effect.DENY:
                    return Decision.DENY
                allowed = True
        return Decision.ALLOW if allowed else Decision.NONE

    def grants_only(self, actions: frozenset[str]) -> bool:
        """Whether every Allow statement's actions name only ``actions`` (no NotAction)."""
        for statement in self.statements:
            if statement.effect is not Effect.ALLOW:
                continue
            if statement.not_action:
                return False
            for pattern in statement.actions:
                named = {a for a in _all_actions() if fnmatchcase(a.lower(), pattern)}
                if not named <= actions:
                    return False
        return True


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One request as policies see it: who (principal ARN and its account), what (``ecr:X``),
    on what (a repository ARN) and the condition keys' values."""

    principal: str
    account: str
    action: str
    resource: str
    context: Mapping[str, str]


def request_context(
    principal: str, account: str, region: str, resource_account: str, secure: bool
) -> dict[str, str]:
    """The values of :data:`CONDITION_KEYS` for a request."""
    return {
        "aws:PrincipalArn": principal,
        "aws:PrincipalAccount": account,
        "aws:PrincipalType": principal_type(principal),
        "aws:SecureTransport": "true" if secure else "false",
        "aws:RequestedRegion": region,
        "aws:ResourceAccount": resource_account,
    }


# --- parsing -------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _all_actions() -> tuple[str, ...]:
    return tuple(f"ecr:{a}" for a in ECR_ACTIONS)


def _strings(value: object, what: str) -> tuple[str, ...]:
    """A string or a non-empty list of strings."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PolicyInvalid(f"{what} must be a string or a non-empty list of strings")


def _action(pattern: str) -> str:
    if pattern == "*":
        return "*"
    service, sep, name = pattern.partition(":")
    if not sep or service.lower() != "ecr" or not name:
        raise PolicyInvalid(f"action {pattern!r} is not an ECR action (ecr:<name>)")
    lowered = f"ecr:{name}".lower()
    if not any(fnmatchcase(a.lower(), lowered) for a in _all_actions()):
        raise PolicyInvalid(f"action {pattern!r} matches no ECR action")
    return lowered


def _principal(value: object) -> Principals:
    if value == "*":
        return Principals(True, ())
    if not isinstance(value, dict) or not value:
        raise PolicyInvalid('Principal must be "*" or an object such as {"AWS": ...}')
    aws: list[str] = []
    for kind, names in value.items():
        if kind not in _PRINCIPAL_TYPES:
            raise PolicyInvalid(f"unknown principal type {kind!r}")
        found = _strings(names, f"Principal {kind}")
        if kind != "AWS":
            continue
        for name in found:
            if name != "*" and not _ACCOUNT.fullmatch(name) and not is_principal_arn(name):
                raise PolicyInvalid(f"invalid AWS principal {name!r}")
        aws.extend(found)
    return Principals("*" in aws, tuple(aws))


def _resource(pattern: str) -> str:
    if pattern != "*" and not pattern.startswith("arn:"):
        raise PolicyInvalid(f"resource {pattern!r} is not an ARN or *")
    return pattern


def _conditions(value: object) -> tuple[Condition, ...]:
    if not isinstance(value, dict):
        raise PolicyInvalid("Condition must be an object")
    found: list[Condition] = []
    for written, block in value.items():
        if not isinstance(block, dict) or not block:
            raise PolicyInvalid(f"condition {written!r} must be a non-empty object")
        operator, if_exists = written, False
        if operator.endswith("IfExists") and operator != "Null":
            operator, if_exists = operator[: -len("IfExists")], True
        if ":" in operator:
            raise UnsupportedPolicy(f"openecr does not evaluate set operators ({written})")
        if operator not in CONDITION_OPERATORS or (if_exists and operator == "Null"):
            raise UnsupportedPolicy(f"openecr does not evaluate the condition operator {written}")
        for key, values in block.items():
            canonical = _KEYS.get(str(key).lower())
            if canonical is None:
                raise UnsupportedPolicy(f"openecr does not evaluate the condition key {key}")
            if isinstance(values, bool):
                values = str(values).lower()
            items = _strings(values, f"condition {written} {key}")
            if operator in ("Bool", "Null") and any(v not in ("true", "false") for v in items):
                raise PolicyInvalid(f"condition {written} takes true or false")
            found.append(Condition(operator, if_exists, canonical, items))
    return tuple(found)


def _statement(doc: object) -> Statement:
    if not isinstance(doc, dict):
        raise PolicyInvalid("a statement must be an object")
    unknown = set(doc) - _STATEMENT_KEYS
    if unknown:
        raise PolicyInvalid(f"unknown statement element {sorted(unknown)[0]!r}")
    sid = doc.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise PolicyInvalid("Sid must be a string")
    try:
        effect = Effect(doc.get("Effect"))
    except ValueError:
        raise PolicyInvalid('Effect must be "Allow" or "Deny"') from None
    if ("Principal" in doc) == ("NotPrincipal" in doc):
        raise PolicyInvalid("a statement needs exactly one of Principal and NotPrincipal")
    if ("Action" in doc) == ("NotAction" in doc):
        raise PolicyInvalid("a statement needs exactly one of Action and NotAction")
    if "Resource" in doc and "NotResource" in doc:
        raise PolicyInvalid("a statement takes at most one of Resource and NotResource")
    not_principal = "NotPrincipal" in doc
    principals = _principal(doc["NotPrincipal" if not_principal else "Principal"])
    not_action = "NotAction" in doc
    actions = tuple(
        _action(a) for a in _strings(doc["NotAction" if not_action else "Action"], "Action")
    )
    not_resource = "NotResource" in doc
    resources = None
    if "Resource" in doc or not_resource:
        written = doc["NotResource" if not_resource else "Resource"]
        resources = tuple(_resource(r) for r in _strings(written, "Resource"))
    conditions = _conditions(doc["Condition"]) if "Condition" in doc else ()
    return Statement(
        sid,
        effect,
        principals,
        not_principal,
        actions,
        not_action,
        resources,
        not_resource,
        conditions,
    )


@lru_cache(maxsize=1024)
def parse_policy(text: str) -> Policy:
    """The policy ``text`` holds; raises PolicyInvalid (UnsupportedPolicy) saying why. Cached:
    enforcement parses each stored policy once."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise PolicyInvalid("the policy is not JSON") from None
    if not isinstance(doc, dict):
        raise PolicyInvalid("the policy must be a JSON object")
    unknown = set(doc) - {"Version", "Id", "Statement"}
    if unknown:
        raise PolicyInvalid(f"unknown policy element {sorted(unknown)[0]!r}")
    version = doc.get("Version")
    if version is not None and version not in VERSIONS:
        raise PolicyInvalid(f"Version must be one of {', '.join(VERSIONS)}")
    if "Id" in doc and not isinstance(doc["Id"], str):
        raise PolicyInvalid("Id must be a string")
    written = doc.get("Statement")
    if isinstance(written, dict):
        written = [written]
    if not isinstance(written, list) or not written:
        raise PolicyInvalid("Statement must be an object or a non-empty list of objects")
    return Policy(version, tuple(_statement(s) for s in written))


# --- conditions ----------------------------------------------------------------------------------


def _holds(condition: Condition, context: Mapping[str, str]) -> bool:
    actual = context.get(condition.key)
    operator = condition.operator
    if operator == "Null":
        return (actual is None) == (condition.values[0] == "true")
    if actual is None:
        return condition.if_exists or "Not" in operator
    negated = "Not" in operator
    matched = any(_compare(operator, actual, v) for v in condition.values)
    return matched != negated


def _compare(operator: str, actual: str, expected: str) -> bool:
    base = operator.replace("Not", "")
    if base in ("StringEquals", "Bool"):
        return actual == expected
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == expected.lower()
    return fnmatchcase(actual, expected)  # StringLike, ArnEquals, ArnLike: wildcards


def denial_message(principal: str, action: str, resource: str, *, explicit: bool) -> str:
    """AccessDeniedException's message in AWS's words (``action``: ``ecr:X``)."""
    reason = (
        "with an explicit deny in a resource-based policy"
        if explicit
        else f"because no resource-based policy allows the {action} action"
    )
    return (
        f"User: {principal} is not authorized to perform: {action} on resource: {resource} {reason}"
    )
