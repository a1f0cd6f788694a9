"""The AWS JSON 1.1 protocol for ECR: from (target, body) to (status, body).

One synchronous entry point, :func:`handle`, serves both the HTTP server and the CLI's
in-process mode, so both produce the same bytes. Errors render once, here, from the class
attributes of :class:`~openecr.errors.OpenEcrError`; anything else becomes a logged
``ServerException``.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from openecr.api.ecr.operations import OPERATIONS, Call
from openecr.api.ecr.validation import Check, checker, service_model
from openecr.api.storage_errors import storage_error
from openecr.domain.records import quick_init
from openecr.errors import OpenEcrError, SerializationError, UnknownOperation
from openecr.service.registry import Caller, Registry

log = logging.getLogger("openecr.ecr")

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"
CONTENT_TYPE = "application/x-amz-json-1.1"
# UploadLayerPart carries up to 20 MiB of base64; PutImage up to 4 MiB of JSON-escaped text.
MAX_BODY = 32 * 1024 * 1024

# Short reads that answer from the metadata store alone: the server runs them on the event loop,
# where a thread hop would cost more than the call. Everything else (writes, fsyncs, hashing,
# blob I/O) runs in a worker thread.
INLINE_OPERATIONS = frozenset(
    {
        "BatchGetImage",
        "BatchCheckLayerAvailability",
        "DescribeImages",
        "DescribeRepositories",
        "GetAuthorizationToken",
        "GetDownloadUrlForLayer",
        "ListImages",
        "ListTagsForResource",
    }
)


# Request ids have the form of a UUID (version 4, as AWS's are): the first four groups random,
# drawn once per process (74 bits), the last one a 48-bit count from a random start. Unique
# within a process by the count, across processes by the random part; no random draw (and
# no system call) per request.
_ID_PREFIX = "{}-{:04x}-4{}-{}{}-".format(
    os.urandom(4).hex(),
    int.from_bytes(os.urandom(2), "big"),
    os.urandom(2).hex()[1:],
    "89ab"[os.urandom(1)[0] & 3],
    os.urandom(2).hex()[1:],
)
_ID_NUMBERS = itertools.count(int.from_bytes(os.urandom(6), "big") >> 8)


def new_request_id() -> str:
    """A new request id (``x-amzn-RequestId``): unique, in the form of a UUID."""
    return f"{_ID_PREFIX}{next(_ID_NUMBERS) & 0xFFFFFFFFFFFF:012x}"


def runs_inline(target: str | None) -> bool:
    """Whether the operation ``target`` names is one of :data:`INLINE_OPERATIONS`."""
    return (target or "").rpartition(".")[2] in INLINE_OPERATIONS


@quick_init
@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    request_id: str
    headers: dict[str, str] = field(default_factory=dict)


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON with keys in alphabetical order, as ECR answers.

    orjson writes what ``json.dumps(sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` writes for every value openecr answers with (strings, integers, epoch
    timestamps; they differ only in the exponent of floats below 1e-4), several times faster;
    what orjson refuses (lone surrogates, integers past 64 bits) goes through ``json``."""
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, TypeError):
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(error: OpenEcrError, request_id: str) -> Response:
    body = dumps({"__type": error.ecr_type, "message": error.message})
    return Response(error.ecr_status, body, request_id, {"x-amzn-ErrorType": error.ecr_type})


def operation_name(target: str | None) -> str:
    """The operation an ``X-Amz-Target`` names; raises UnknownOperation."""
    prefix, _, name = (target or "").partition(".")
    if prefix != TARGET_PREFIX or not name:
        raise UnknownOperation(f"The operation target '{target}' is not recognized")
    if name not in OPERATIONS:
        if name in service_model().operation_names:
            raise UnknownOperation(f"openecr does not implement the ECR operation {name}")
        raise UnknownOperation(f"The operation {name} is not recognized by ECR")
    return name


@functools.cache
def _input_check(name: str) -> Check | None:
    """The check of operation ``name``'s input (None: it takes none), looked up once."""
    shape = service_model().operation_model(name).input_shape
    return None if shape is None else checker(shape)


def _json_text(body: bytes) -> str | bytes:
    """What ``json.loads`` reads: a body that starts like UTF-8 JSON as text, decoded as
    ``json.loads`` decodes UTF-8 (its detection of UTF-16 and -32 skipped: a NUL in the first
    four bytes or a byte order mark leaves the bytes to it)."""
    if body[:1] == b"{" and b"\x00" not in body[:4]:
        return body.decode("utf-8", "surrogatepass")
    return body or b"{}"


def handle(registry: Registry, caller: Caller, target: str | None, body: bytes) -> Response:
    """Run one ECR call. Never raises."""
    request_id = new_request_id()
    try:
        name = operation_name(target)
        try:
            params = json.loads(_json_text(body))
        except UnicodeDecodeError:
            raise SerializationError("The request body is not valid UTF-8 JSON") from None
        except json.JSONDecodeError as error:
            raise SerializationError(
                f"The request body is not valid JSON: {error.msg} at character {error.pos}"
            ) from None
        except (ValueError, RecursionError):  # RecursionError: deep nesting
            raise SerializationError("The request body is not valid JSON") from None
        if not isinstance(params, dict):
            raise SerializationError("The request body must be a JSON object")
        check = _input_check(name)
        if check is not None:
            check(params, "input")
        doc = OPERATIONS[name](Call(registry, caller, params, name))
        return Response(200, dumps(doc), request_id)
    except OpenEcrError as error:
        return error_response(error, request_id)
    except Exception as error:
        storage = storage_error(error)
        if storage is not None:
            return error_response(storage, request_id)
        log.exception("request %s failed", request_id)
        return error_response(OpenEcrError("An internal error occurred"), request_id)
