"""Rendering for ``/v2``: the one place errors become ``{"errors": [...]}`` responses.

The code and status come from the error's class (:mod:`openecr.errors`); the message is the
error's own (ECR's wording where ECR has one), so ``docker`` shows what it shows against ECR.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from openecr.errors import OpenEcrError

# every /v2 answer carries it
API_VERSION = (b"docker-distribution-api-version", b"registry/2.0")
JSON = "application/json"


class Prebuilt(Response):
    """A whole answer with its raw headers built by the caller (names lower case, with
    ``content-length`` and ``content-type``): what the pull path answers, without converting
    a header mapping for every request."""

    def __init__(self, body: bytes, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = raw_headers


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def error_response(
    error: OpenEcrError,
    *,
    headers: Mapping[str, str] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Response:
    """The spec's error document for ``error``, with its class's code and status."""
    body = {
        "errors": [
            {
                "code": error.oci_code.name,
                "message": error.message,
                "detail": dict(detail or {}),
            }
        ]
    }
    return Response(dumps(body), error.oci_http_status(), dict(headers or {}), media_type=JSON)


def json_response(
    doc: Any, *, headers: Mapping[str, str] | None = None, media_type: str = JSON
) -> Response:
    return Response(dumps(doc), 200, dict(headers or {}), media_type=media_type)


def empty(status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A bodiless answer (201 and 202 carry ``Content-Length: 0``; 204 carries none)."""
    return Response(b"", status, dict(headers or {}))
