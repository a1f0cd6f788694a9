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
from collections.abc import Callable
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


Check = Callable[[Any, str], Any]


def checker(shape: Shape) -> Check:
    """``shape``'s check, built once per shape (named shapes are shared): the model's
    constraints read once instead of on every request. A check validates a value and returns
    it (blobs decoded to bytes)."""
    if shape.name:
        found = _CHECKS.get(shape.name)
        if found is None:
            # a placeholder first: a shape that contains itself refers to its own check
            cell: list[Check] = []
            _CHECKS[shape.name] = lambda value, field: cell[0](value, field)
            found = _build(shape)
            cell.append(found)
            _CHECKS[shape.name] = found
        return found
    return _build(shape)


_CHECKS: dict[str, Check] = {}


def _build(shape: Shape) -> Check:
    kind = shape.type_name
    meta = shape.metadata
    if kind == "structure":
        assert isinstance(shape, StructureShape)
        return _structure(shape)
    if kind == "list":
        assert isinstance(shape, ListShape)
        return _list(checker(shape.member), _length(meta, "Member must have length"))
    if kind == "map":
        assert isinstance(shape, MapShape)
        return _map(checker(shape.key), checker(shape.value))
    if kind == "string":
        return _string(meta)
    if kind in ("integer", "long"):
        return _integer(meta)
    if kind == "boolean":
        return _boolean
    if kind == "blob":
        return _blob(_length(meta, "must have length"))
    if kind == "timestamp":
        return _timestamp
    return _anything


def _structure(shape: StructureShape) -> Check:
    required = tuple(shape.required_members)
    members = tuple((name, checker(member)) for name, member in shape.members.items())

    def check(value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            raise _wrong_type(field, "an object")
        if None in value.values():
            for member_name in [k for k, v in value.items() if v is None]:
                del value[member_name]  # a JSON null is an absent member, as AWS reads it
        for member_name in required:
            if member_name not in value:
                raise InvalidParameter.constraint(member_name, "Member must not be null")
        for member_name, member_check in members:
            if member_name in value:
                value[member_name] = member_check(value[member_name], member_name)
        return value

    return check


LengthCheck = Callable[[str, int], None] | None


def _length(meta: dict[str, Any], wording: str) -> LengthCheck:
    low, high = meta.get("min"), meta.get("max")
    if low is None and high is None:
        return None

    def check(field: str, length: int) -> None:
        if low is not None and length < low:
            raise InvalidParameter.constraint(field, f"{wording} greater than or equal to {low}")
        if high is not None and length > high:
            raise InvalidParameter.constraint(field, f"{wording} less than or equal to {high}")

    return check


def _list(item: Check, length: LengthCheck) -> Check:
    def check(value: Any, field: str) -> Any:
        if not isinstance(value, list):
            raise _wrong_type(field, "a list")
        if length is not None:
            length(field, len(value))
        return [item(entry, field) for entry in value]

    return check


def _map(key: Check, item: Check) -> Check:
    def check(value: Any, field: str) -> Any:
        if not isinstance(value, dict):
            raise _wrong_type(field, "an object")
        return {key(k, field): item(v, field) for k, v in value.items()}

    return check


def _string(meta: dict[str, Any]) -> Check:
    length = _length(meta, "must have length")
    enum = meta.get("enum")
    enum_message = (
        f"Member must satisfy enum value set: [{', '.join(enum)}]" if enum is not None else ""
    )
    pattern = meta.get("pattern")
    regex = _regex(pattern) if pattern else None

    def check(value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise _wrong_type(field, "a string")
        if not value.isascii() and _SURROGATE.search(value) is not None:
            # a lone ``\ud800`` escape decodes but is not Unicode text: refuse it here
            raise SerializationError(f"Invalid UTF-8 value at '{field}'")
        if length is not None:
            length(field, len(value))
        if enum is not None and value not in enum:
            raise InvalidParameter.constraint(field, enum_message)
        if regex is not None and regex.fullmatch(value) is None:
            assert pattern is not None
            raise InvalidParameter.constraint(field, _pattern_message(field, pattern))
        return value

    return check


def _integer(meta: dict[str, Any]) -> Check:
    low, high = meta.get("min"), meta.get("max")

    def check(value: Any, field: str) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong_type(field, "an integer")
        if low is not None and value < low:
            raise InvalidParameter.constraint(
                field, f"Member must have value greater than or equal to {low}"
            )
        if high is not None and value > high:
            raise InvalidParameter.constraint(
                field, f"Member must have value less than or equal to {high}"
            )
        return value

    return check


def _boolean(value: Any, field: str) -> Any:
    if not isinstance(value, bool):
        raise _wrong_type(field, "a boolean")
    return value


def _blob(length: LengthCheck) -> Check:
    def check(value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise _wrong_type(field, "a base64 string")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise SerializationError(f"Invalid base64 value at '{field}'") from None
        if length is not None:
            length(field, len(data))
        return data

    return check


def _timestamp(value: Any, field: str) -> Any:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise _wrong_type(field, "a timestamp")
    return value


def _anything(value: Any, _field: str) -> Any:
    return value
