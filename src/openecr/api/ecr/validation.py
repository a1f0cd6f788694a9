"""Request validation driven by botocore's ECR service model.

Checks types (SerializationException), then required members, lengths, ranges, patterns and
enums (InvalidParameterException with ECR's wording). Unknown members are ignored, as AWS does.
Fields are named by their member name, as in ECR's messages. ``blob`` members are base64
decoded in place.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import cache
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, ServiceModel, Shape, StructureShape

from openecr.domain import names
from openecr.errors import InvalidParameter, SerializationError

_SURROGATE = re.compile("[\ud800-\udfff]")


@cache
def service_model() -> ServiceModel:
    return botocore.session.get_session().get_service_model("ecr")


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern.removeprefix("^").removesuffix("$"))


def _pattern_message(field: str, pattern: str) -> str:
    if field == "repositoryName":
        return f"must satisfy regular expression '{names.REPOSITORY_NAME_MESSAGE_PATTERN}'"
    if field == "registryId":
        return f"must satisfy regular expression {pattern}"
    return f"must satisfy regular expression '{pattern}'"


def _wrong_type(field: str, expected: str) -> SerializationError:
    return SerializationError(f"Unexpected value type at '{field}': expected {expected}")


def validate(shape: Shape, value: Any, field: str) -> Any:
    """Validate ``value`` against ``shape``; return it (blobs decoded to bytes)."""
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        if not isinstance(value, dict):
            raise _wrong_type(field, "an object")
        for member_name in [k for k, v in value.items() if v is None]:
            del value[member_name]  # a JSON null is an absent member, as AWS reads it
        for member_name in shape.required_members:
            if value.get(member_name) is None:
                raise InvalidParameter.constraint(member_name, "Member must not be null")
        for member_name, member in shape.members.items():
            if value.get(member_name) is not None:
                value[member_name] = validate(member, value[member_name], member_name)
        return value
    if kind == "list":
        assert isinstance(shape, ListShape)
        if not isinstance(value, list):
            raise _wrong_type(field, "a list")
        _check_length(field, len(value), meta, "Member must have length")
        return [validate(shape.member, item, field) for item in value]
    if kind == "map":
        assert isinstance(shape, MapShape)
        if not isinstance(value, dict):
            raise _wrong_type(field, "an object")
        return {
            validate(shape.key, k, field): validate(shape.value, v, field) for k, v in value.items()
        }
    if kind == "string":
        if not isinstance(value, str):
            raise _wrong_type(field, "a string")
        if not value.isascii() and _SURROGATE.search(value) is not None:
            # a lone ``\ud800`` escape decodes but is not Unicode text: refuse it here
            raise SerializationError(f"Invalid UTF-8 value at '{field}'")
        _check_length(field, len(value), meta, "must have length")
        if "enum" in meta and value not in meta["enum"]:
            raise InvalidParameter.constraint(
                field, f"Member must satisfy enum value set: [{', '.join(meta['enum'])}]"
            )
        pattern = meta.get("pattern")
        if pattern and _regex(pattern).fullmatch(value) is None:
            raise InvalidParameter.constraint(field, _pattern_message(field, pattern))
        return value
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong_type(field, "an integer")
        if "min" in meta and value < meta["min"]:
            raise InvalidParameter.constraint(
                field, f"Member must have value greater than or equal to {meta['min']}"
            )
        if "max" in meta and value > meta["max"]:
            raise InvalidParameter.constraint(
                field, f"Member must have value less than or equal to {meta['max']}"
            )
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _wrong_type(field, "a boolean")
        return value
    if kind == "blob":
        if not isinstance(value, str):
            raise _wrong_type(field, "a base64 string")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationError(f"Invalid base64 value at '{field}'") from None
        _check_length(field, len(data), meta, "must have length")
        return data
    if kind == "timestamp":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _wrong_type(field, "a timestamp")
        return value
    return value


def _check_length(field: str, length: int, meta: dict[str, Any], wording: str) -> None:
    if "min" in meta and length < meta["min"]:
        raise InvalidParameter.constraint(
            field, f"{wording} greater than or equal to {meta['min']}"
        )
    if "max" in meta and length > meta["max"]:
        raise InvalidParameter.constraint(field, f"{wording} less than or equal to {meta['max']}")
