"""The ECR API's JSON writer (orjson) writes exactly what ``json.dumps`` with ECR's settings
writes, for every kind of value openecr answers with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openecr.api.ecr.protocol import dumps


def reference(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


MANIFEST = json.dumps(
    {"schemaVersion": 2, "annotations": {"note": 'quotes " and \\ and \n\t and é ☃ 𝄞'}}, indent=3
)


@pytest.mark.parametrize(
    "doc",
    [
        {"ascii": "".join(chr(i) for i in range(0x80))},
        {"unicode": "héllo ☃ 𝄞 \u2028 \u2029 \u007f \ufeff \u00a0"},
        {"imageManifest": MANIFEST, "imageManifestMediaType": "application/json"},
        {"imagePushedAt": [1764221043.123456, 1764221043.0, 1.0, 0.5, 1e15 + 0.25]},
        {"imageSizeInBytes": [0, -1, 2**63 - 1, 2**64 + 1]},
        {"none": None, "true": True, "false": False, "empty": {}, "list": []},
        {"z": 1, "a": {"y": 2, "b": 3}, "B": 0, "_": 1, "é": 2, "": 3},
        {"failures": [{"failureCode": "ImageNotFound", "imageId": {"imageTag": "t" * 300}}]},
    ],
    ids=["ascii", "unicode", "manifest", "timestamps", "integers", "literals", "order", "nested"],
)
def test_same_bytes_as_json(doc: Any) -> None:
    assert dumps(doc) == reference(doc)


def test_lone_surrogates_fail_as_json_does() -> None:
    doc = {"message": "bad \ud800 name"}
    with pytest.raises(UnicodeEncodeError):
        reference(doc)
    with pytest.raises(UnicodeEncodeError):
        dumps(doc)
