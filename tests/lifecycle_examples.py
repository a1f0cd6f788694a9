"""AWS's documented lifecycle policy examples (the user guide's "Examples of lifecycle
policies") with their documented outcomes, shared by the engine tests and the API tests.

Each example: the policy, the repository (name, tags, days since push), and the names of the
images the documented outcome expires. Images are pushed in the order listed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Example:
    id: str
    rules: list[dict[str, Any]]
    images: list[tuple[str, list[str], int]]  # name, tags, days since push
    expired: set[str]

    @property
    def policy(self) -> str:
        return json.dumps({"rules": self.rules})


def rule(
    priority: int,
    tag_status: str,
    count_type: str,
    count: int,
    *,
    prefixes: list[str] | None = None,
    patterns: list[str] | None = None,
) -> dict[str, Any]:
    selection: dict[str, Any] = {
        "tagStatus": tag_status,
        "countType": count_type,
        "countNumber": count,
    }
    if count_type != "imageCountMoreThan":
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = prefixes
    if patterns is not None:
        selection["tagPatternList"] = patterns
    return {
        "rulePriority": priority,
        "description": f"rule {priority}",
        "selection": selection,
        "action": {"type": "expire"},
    }


EXAMPLES = [
    # Filtering on image age: tagged prod* older than 14 days
    Example(
        "by-age",
        [rule(1, "tagged", "sinceImagePushed", 14, patterns=["prod*"])],
        [("old-prod", ["prod-1"], 20), ("new-prod", ["prod-2"], 3), ("old-dev", ["dev-1"], 30)],
        {"old-prod"},
    ),
    # Filtering on image count: keep one untagged image
    Example(
        "by-count",
        [rule(1, "untagged", "imageCountMoreThan", 1)],
        [("u1", [], 5), ("u2", [], 4), ("u3", [], 3), ("t", ["v1"], 10)],
        {"u1", "u2"},
    ),
    # Filtering on multiple rules, example A: image A is seen by rule 1, so rule 2 may not
    # expire image B (it matches rule 1's selection): only A goes
    Example(
        "multiple-rules-a",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["prod"]),
            rule(2, "tagged", "imageCountMoreThan", 1, prefixes=["beta"]),
        ],
        [("A", ["beta-1", "prod-1"], 10), ("B", ["beta-2", "prod-2"], 9), ("C", ["beta-3"], 8)],
        {"A"},
    ),
    # Filtering on multiple rules, example B: rule 1 expires A and B (keeps C); rule 2 keeps D
    Example(
        "multiple-rules-b",
        [
            rule(1, "tagged", "imageCountMoreThan", 1, patterns=["prod*"]),
            rule(2, "tagged", "imageCountMoreThan", 1, patterns=["beta*"]),
        ],
        [
            ("A", ["beta-1", "prod-1"], 10),
            ("B", ["beta-2", "prod-2"], 9),
            ("C", ["beta-3", "prod-3"], 8),
            ("D", ["beta-4"], 7),
        ],
        {"A", "B"},
    ),
    # Several tags in one rule (AND): only images with an alpha AND a beta tag are selected;
    # both of those are older than 5 days
    Example(
        "several-tags-by-age",
        [rule(1, "tagged", "sinceImagePushed", 5, prefixes=["alpha", "beta"])],
        [
            ("A", ["alpha-1", "beta-1", "gamma-1"], 10),
            ("B", ["alpha-2", "gamma-2"], 9),
            ("C", ["alpha-3", "beta-3"], 8),
            ("D", ["beta-4"], 7),
            ("E", ["alpha-5", "beta-5"], 2),
        ],
        {"A", "C"},
    ),
    # Several tags in one rule by count: of A, C, E (alpha and beta) keep the newest
    Example(
        "several-tags-by-count",
        [rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["alpha", "beta"])],
        [
            ("A", ["alpha-1", "beta-1", "gamma-1"], 10),
            ("B", ["alpha-2", "gamma-2"], 9),
            ("C", ["alpha-3", "beta-3"], 8),
            ("D", ["beta-4"], 7),
            ("E", ["alpha-5", "beta-5"], 2),
        ],
        {"A", "C"},
    ),
    # Tag patterns with wildcards (every pattern must match some tag)
    Example(
        "patterns",
        [rule(1, "tagged", "imageCountMoreThan", 1, patterns=["*test*1*2*3", "rel-*"])],
        [
            ("A", ["xtestx1x2x3", "rel-a"], 10),
            ("B", ["test123", "rel-b"], 9),
            ("C", ["test-1-2-3"], 8),
            ("D", ["mytest-1-2-3", "rel-d"], 7),
        ],
        {"A", "B"},
    ),
    # Filtering on all images: untagged first (rule 1), then keep the one newest of any
    Example(
        "untagged-then-any",
        [
            rule(1, "untagged", "sinceImagePushed", 1),
            rule(2, "any", "imageCountMoreThan", 1),
        ],
        [("A", ["v1"], 10), ("B", [], 9), ("C", ["v3"], 8), ("D", [], 0)],
        {"A", "B", "C"},
    ),
]
