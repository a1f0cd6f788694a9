"""Names and tags: the patterns ECR enforces, with the texts its messages quote."""

from __future__ import annotations

import re

# botocore's current RepositoryName pattern (the OCI distribution name grammar); enforced.
REPOSITORY_NAME_PATTERN = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*"
# The regex every real ECR error message quotes; used verbatim in messages only.
REPOSITORY_NAME_MESSAGE_PATTERN = "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
REPOSITORY_NAME_MIN = 2
REPOSITORY_NAME_MAX = 256

# ECR's tag grammar as quoted in its messages; a tag is 1..300 characters.
TAG_PATTERN = "[a-zA-Z0-9-_.]+"
TAG_MAX = 300

REGISTRY_ID_PATTERN = "[0-9]{12}"

_NAME_RE = re.compile(REPOSITORY_NAME_PATTERN)
_TAG_RE = re.compile(r"[a-zA-Z0-9\-_.]+")
_REGISTRY_RE = re.compile(REGISTRY_ID_PATTERN)


def is_repository_name(value: str) -> bool:
    return (
        REPOSITORY_NAME_MIN <= len(value) <= REPOSITORY_NAME_MAX
        and _NAME_RE.fullmatch(value) is not None
    )


def is_tag(value: str) -> bool:
    return 1 <= len(value) <= TAG_MAX and _TAG_RE.fullmatch(value) is not None


def is_registry_id(value: str) -> bool:
    return _REGISTRY_RE.fullmatch(value) is not None
