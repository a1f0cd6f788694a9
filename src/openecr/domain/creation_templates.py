"""Repository creation templates: the record, its stored JSON, and which template a new
repository gets (pure: no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from openecr.domain.model import ExclusionFilter, TagMutability

ROOT = "ROOT"  # the prefix that matches every repository no other template matches


class AppliedFor(StrEnum):
    """The ways ECR creates a repository on the caller's behalf."""

    REPLICATION = "REPLICATION"
    PULL_THROUGH_CACHE = "PULL_THROUGH_CACHE"
    CREATE_ON_PUSH = "CREATE_ON_PUSH"


def normalize_prefix(prefix: str) -> str:
    """The stored form of a prefix: ECR assumes a trailing ``/``, so ``prod/`` is ``prod``."""
    return prefix if prefix == ROOT else prefix.rstrip("/")


def prefix_matches(prefix: str, name: str) -> bool:
    """Whether a (normalized) prefix covers repository ``name``: ``prod`` covers ``prod/app``
    and ``prod/team/app``, not ``prod`` itself nor ``production/app``; ROOT covers all."""
    return prefix == ROOT or name.startswith(prefix + "/")


@dataclass(frozen=True, slots=True)
class CreationTemplate:
    """One template, as stored (timestamps in epoch seconds)."""

    prefix: str
    applied_for: tuple[AppliedFor, ...]
    created_at: float
    updated_at: float
    description: str | None = None
    encryption_type: str = "AES256"
    kms_key: str | None = None
    resource_tags: tuple[tuple[str, str], ...] = ()
    tag_mutability: TagMutability = TagMutability.MUTABLE
    exclusion_filters: tuple[ExclusionFilter, ...] = field(default_factory=tuple)
    repository_policy: str | None = None
    lifecycle_policy: str | None = None
    custom_role_arn: str | None = None

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "prefix": self.prefix,
            "appliedFor": [a.value for a in self.applied_for],
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "description": self.description,
            "encryptionType": self.encryption_type,
            "kmsKey": self.kms_key,
            "resourceTags": [[k, v] for k, v in self.resource_tags],
            "imageTagMutability": self.tag_mutability.value,
            "exclusionFilters": [[f.filter, f.filter_type] for f in self.exclusion_filters],
            "repositoryPolicy": self.repository_policy,
            "lifecyclePolicy": self.lifecycle_policy,
            "customRoleArn": self.custom_role_arn,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, body: str) -> CreationTemplate:
        doc = json.loads(body)
        return cls(
            prefix=doc["prefix"],
            applied_for=tuple(AppliedFor(a) for a in doc["appliedFor"]),
            created_at=float(doc["createdAt"]),
            updated_at=float(doc["updatedAt"]),
            description=doc.get("description"),
            encryption_type=doc.get("encryptionType") or "AES256",
            kms_key=doc.get("kmsKey"),
            resource_tags=tuple((k, v) for k, v in doc.get("resourceTags", ())),
            tag_mutability=TagMutability(doc.get("imageTagMutability", "MUTABLE")),
            exclusion_filters=tuple(
                ExclusionFilter(f, t) for f, t in doc.get("exclusionFilters", ())
            ),
            repository_policy=doc.get("repositoryPolicy"),
            lifecycle_policy=doc.get("lifecyclePolicy"),
            custom_role_arn=doc.get("customRoleArn"),
        )


def choose_template(
    templates: Iterable[CreationTemplate], name: str, scenario: AppliedFor
) -> CreationTemplate | None:
    """The template a repository ``name`` created by ``scenario`` gets: among the templates
    applied for that scenario, the one with the longest prefix covering the name; ROOT only
    when no other covers it."""
    best: CreationTemplate | None = None
    best_rank = -1
    for template in templates:
        if scenario not in template.applied_for or not prefix_matches(template.prefix, name):
            continue
        rank = 0 if template.prefix == ROOT else len(template.prefix) + 1
        if rank > best_rank:
            best, best_rank = template, rank
    return best
