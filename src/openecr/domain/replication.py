"""Replication: a registry's configuration (rules of destinations and repository filters),
which destinations a repository's pushes go to, and the per-destination status of an image.

The configuration is stored as the document ECR's API shows (``{"rules": [...]}``), so
DescribeRegistry returns what PutReplicationConfiguration was given."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from openecr.errors import InvalidParameter

# ECR's limits beyond the model's (10 rules, 100 destinations and 100 filters a rule): the
# user guide's "up to 25 unique destinations across all rules".
MAX_UNIQUE_DESTINATIONS = 25
PREFIX_MATCH = "PREFIX_MATCH"


class Status(StrEnum):
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"


class FailureCode(StrEnum):
    """``failureCode`` of a FAILED destination (ECR's ``ReplicationError`` is a free string)."""

    PERMISSION_DENIED = "PERMISSION_DENIED"  # the destination's registry policy refuses it
    IMAGE_NOT_FOUND = "IMAGE_NOT_FOUND"  # deleted from the source before it was copied
    TAG_IMMUTABLE = "TAG_IMMUTABLE"  # the destination's tag is immutable and names another
    DESTINATION_UNAVAILABLE = "DESTINATION_UNAVAILABLE"  # a peer unreachable after every retry
    DESTINATION_REFUSED = "DESTINATION_REFUSED"  # a peer answered an error retrying cannot fix


@dataclass(frozen=True, slots=True, order=True)
class Destination:
    region: str
    registry_id: str  # the account

    def to_doc(self) -> dict[str, str]:
        return {"region": self.region, "registryId": self.registry_id}


@dataclass(frozen=True, slots=True)
class Rule:
    destinations: tuple[Destination, ...]
    filters: tuple[str, ...]  # PREFIX_MATCH values; none: every repository

    def covers(self, repository: str) -> bool:
        """Whether the rule replicates ``repository``: no filter, or a name prefix matches
        (a plain string prefix, as ECR's PREFIX_MATCH: ``prod`` covers ``prod/app`` and
        ``production``)."""
        return not self.filters or any(repository.startswith(f) for f in self.filters)


@dataclass(frozen=True, slots=True)
class ReplicationConfiguration:
    rules: tuple[Rule, ...] = ()

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> ReplicationConfiguration:
        """From the API's shape (already validated against the model)."""
        rules = []
        for rule in doc.get("rules") or ():
            destinations = tuple(
                Destination(d["region"], d["registryId"]) for d in rule.get("destinations") or ()
            )
            filters = tuple(f["filter"] for f in rule.get("repositoryFilters") or ())
            rules.append(Rule(destinations, filters))
        return cls(tuple(rules))

    def to_doc(self) -> dict[str, Any]:
        rules: list[dict[str, Any]] = []
        for rule in self.rules:
            doc: dict[str, Any] = {"destinations": [d.to_doc() for d in rule.destinations]}
            if rule.filters:
                doc["repositoryFilters"] = [
                    {"filter": f, "filterType": PREFIX_MATCH} for f in rule.filters
                ]
            rules.append(doc)
        return {"rules": rules}

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, body: str) -> ReplicationConfiguration:
        return cls.from_doc(json.loads(body))

    def check(self, source: Destination) -> None:
        """ECR's rules beyond the model's: no destination is the source registry itself, and
        at most 25 unique destinations across all rules. Raises InvalidParameter."""
        unique = {d for rule in self.rules for d in rule.destinations}
        if source in unique:
            raise InvalidParameter.constraint(
                "replicationConfiguration",
                "Replication destination cannot be the source registry "
                f"(region {source.region}, registryId {source.registry_id})",
            )
        if len(unique) > MAX_UNIQUE_DESTINATIONS:
            raise InvalidParameter.constraint(
                "replicationConfiguration",
                f"A replication configuration may have at most {MAX_UNIQUE_DESTINATIONS} "
                f"unique destinations across all rules, not {len(unique)}",
            )

    def destinations_for(self, repository: str) -> list[Destination]:
        """The unique destinations ``repository``'s pushes go to, in rule order."""
        found: dict[Destination, None] = {}
        for rule in self.rules:
            if rule.covers(repository):
                found.update(dict.fromkeys(rule.destinations))
        return list(found)


@dataclass(frozen=True, slots=True)
class DestinationStatus:
    destination: Destination
    status: Status
    failure_code: str | None = None

    def to_doc(self) -> dict[str, str]:
        doc = {**self.destination.to_doc(), "status": self.status.value}
        if self.failure_code is not None:
            doc["failureCode"] = self.failure_code
        return doc

    @classmethod
    def from_doc(cls, doc: dict[str, str]) -> DestinationStatus:
        return cls(
            Destination(doc["region"], doc["registryId"]),
            Status(doc["status"]),
            doc.get("failureCode"),
        )
