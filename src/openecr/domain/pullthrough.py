"""Pull-through cache rules: the record, its stored JSON, the upstream kinds ECR knows, and
which rule (and upstream repository) a repository name falls under (pure: no I/O)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ROOT = "ROOT"  # the prefix that covers every repository name

# upstreamRegistry -> (the host ECR documents for it, whether ECR requires a credentialArn)
UPSTREAM_KINDS: dict[str, tuple[str, bool]] = {
    "ecr": (".dkr.ecr.", False),  # <account>.dkr.ecr.<region>.amazonaws.com (an IAM role)
    "ecr-public": ("public.ecr.aws", False),
    "quay": ("quay.io", False),
    "k8s": ("registry.k8s.io", False),
    "docker-hub": ("registry-1.docker.io", True),
    "github-container-registry": ("ghcr.io", True),
    "azure-container-registry": (".azurecr.io", True),
    "gitlab-container-registry": ("registry.gitlab.com", True),
    "chainguard": ("cgr.dev", True),
}


def normalize_prefix(prefix: str) -> str:
    """The stored form of a prefix: ECR assumes a trailing ``/``, so ``hub/`` is ``hub``."""
    return prefix if prefix == ROOT else prefix.rstrip("/")


def kind_of_host(host: str) -> str | None:
    """The upstreamRegistry kind whose documented host ``host`` is, or None."""
    host = host.lower()
    for kind, (known, _) in UPSTREAM_KINDS.items():
        if host == known or (known.startswith(".") and known in host):
            return kind
    return None


def parse_upstream_url(url: str) -> str | None:
    """The base URL requests go to (``scheme://host[:port][/path]``, no trailing ``/``) of an
    ``upstreamRegistryUrl``: a bare host (``quay.io``, ``localhost:5001``) means https, as on
    ECR; ``http://`` and ``https://`` URLs are taken as written. None when it is no such URL
    (a query, fragment, credentials, or no host)."""
    text = url.strip()
    if not text or text != url:
        return None
    if "://" not in text:
        text = f"https://{text}"
    try:
        parts = urlsplit(text)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError:
        return None
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username is not None
        or any(c.isspace() for c in text)
    ):
        return None
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


@dataclass(frozen=True, slots=True)
class PullThroughRule:
    """One rule, as stored (timestamps in epoch seconds)."""

    prefix: str  # normalized: no trailing "/", or ROOT
    upstream_url: str  # as the request gave it
    created_at: float
    updated_at: float
    upstream_registry: str | None = None
    credential_arn: str | None = None
    custom_role_arn: str | None = None
    upstream_prefix: str | None = None  # normalized, or None (ROOT)

    @property
    def base_url(self) -> str:
        base = parse_upstream_url(self.upstream_url)
        assert base is not None, "stored rules have valid URLs"
        return base

    def upstream_repository(self, name: str) -> str | None:
        """The upstream repository a repository ``name`` caches, or None when the rule does
        not cover ``name`` (``hub/library/alpine`` under ``hub`` is ``library/alpine``; with
        an upstream prefix ``mirror`` it is ``mirror/library/alpine``)."""
        if self.prefix == ROOT:
            rest = name
        elif name.startswith(self.prefix + "/") and len(name) > len(self.prefix) + 1:
            rest = name[len(self.prefix) + 1 :]
        else:
            return None
        if self.upstream_prefix and self.upstream_prefix != ROOT:
            return f"{self.upstream_prefix}/{rest}"
        return rest

    def to_json(self) -> str:
        doc: dict[str, Any] = {
            "prefix": self.prefix,
            "upstreamRegistryUrl": self.upstream_url,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "upstreamRegistry": self.upstream_registry,
            "credentialArn": self.credential_arn,
            "customRoleArn": self.custom_role_arn,
            "upstreamRepositoryPrefix": self.upstream_prefix,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PullThroughRule:
        doc = json.loads(text)
        return cls(
            prefix=doc["prefix"],
            upstream_url=doc["upstreamRegistryUrl"],
            created_at=float(doc["createdAt"]),
            updated_at=float(doc["updatedAt"]),
            upstream_registry=doc.get("upstreamRegistry"),
            credential_arn=doc.get("credentialArn"),
            custom_role_arn=doc.get("customRoleArn"),
            upstream_prefix=doc.get("upstreamRepositoryPrefix"),
        )


def match_rule(rules: Iterable[PullThroughRule], name: str) -> tuple[PullThroughRule, str] | None:
    """The rule covering repository ``name`` and the upstream repository it names: the
    longest matching prefix wins, ROOT last. None when no rule covers ``name``."""
    best: tuple[PullThroughRule, str] | None = None
    for rule in rules:
        upstream = rule.upstream_repository(name)
        if upstream is None:
            continue
        if best is None or _rank(rule) > _rank(best[0]):
            best = (rule, upstream)
    return best


def _rank(rule: PullThroughRule) -> int:
    return -1 if rule.prefix == ROOT else len(rule.prefix)
