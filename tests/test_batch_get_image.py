"""BatchGetImage and BatchDeleteImage against a running server, row by row of the spec.

Every case names the row of ``docs/ecr-behaviour.md`` (the spec, kept in this repository) it
covers. Requests go through boto3 with client-side validation off, so the server sees what
botocore would refuse.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, upload_blob

OTHER = "210987654321"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
# What docker sends (CloudTrail sample, spec 1.1): unknown strings must not be rejected.
DOCKER_ACCEPT = [
    "application/json",
    OCI,
    "application/vnd.oci.image.index.v1+json",
    DOCKER,
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
]
UNKNOWN = "sha256:" + "0" * 64
OTHER_UNKNOWN = "sha256:" + "a" * 64
NAME_REGEX = "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
DIGEST_REASON = (
    "Invalid request parameters: image digest should satisfy the regex "
    "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'"
)
TAG_REASON = "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9-_.]+'"
NOT_FOUND = "Requested image not found"
MISMATCH = "Invalid request parameters: given tag does not map to the given digest"
MISSING = "Invalid request parameters: both tag and digest cannot be null"


def constraint(field_name: str, text: str) -> tuple[str, str]:
    return (
        "InvalidParameterException",
        f"Invalid parameter at '{field_name}' failed to satisfy constraint: '{text}'",
    )


# --- pushing images (any account) ---------------------------------------------------------------


def push_blob(client: Any, repo: str, data: bytes, registry: str) -> str:
    return upload_blob(client, repo, data, registry)


def manifest_for(
    client: Any, repo: str, *, media_type: str = DOCKER, registry: str = ACCOUNT
) -> str:
    """Upload a config and a layer; return the text of a manifest referencing them."""
    oci = media_type == OCI
    config = json.dumps({"os": "linux", "seed": uuid.uuid4().hex}).encode()
    layer = f"layer {uuid.uuid4().hex}".encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json"
            if oci
            else "application/vnd.docker.container.image.v1+json",
            "size": len(config),
            "digest": push_blob(client, repo, config, registry),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"
                if oci
                else "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": len(layer),
                "digest": push_blob(client, repo, layer, registry),
            }
        ],
    }
    return json.dumps(manifest, indent=2)


def push_image(client: Any, repo: str, tags: list[str], *, media_type: str = DOCKER) -> str:
    """Put a fresh manifest under each tag (or untagged); return its digest."""
    raw = manifest_for(client, repo, media_type=media_type)
    for tag in tags or [None]:
        extra = {"imageTag": tag} if tag else {}
        client.put_image(repositoryName=repo, imageManifest=raw, **extra)
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class World:
    """One repository per account, with images pushed once for the whole module."""

    repo: str
    other_repo: str
    digests: dict[str, str] = field(default_factory=dict)  # token -> digest
    manifests: dict[str, str] = field(default_factory=dict)  # digest -> manifest text
    media_types: dict[str, str] = field(default_factory=dict)  # digest -> media type

    def fill(self, value: Any) -> Any:
        """Replace the @tokens in a case with this world's names and digests."""
        if isinstance(value, str):
            for token in sorted(self.digests, key=len, reverse=True):
                value = value.replace(token, self.digests[token])
            return value.replace("@OTHER_REPO", self.other_repo).replace("@REPO", self.repo)
        if isinstance(value, list):
            return [self.fill(v) for v in value]
        if isinstance(value, dict):
            return {k: self.fill(v) for k, v in value.items()}
        return value


@pytest.fixture(scope="module")
def raw_client(server: Server) -> Any:
    """boto3 without client-side validation: what another SDK or raw HTTP could send."""
    return server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    client = server.client()
    suffix = uuid.uuid4().hex[:8]
    w = World(repo=f"bgi/main-{suffix}", other_repo=f"bgi/other-{suffix}")
    client.create_repository(repositoryName=w.repo)
    client.create_repository(registryId=OTHER, repositoryName=w.other_repo)
    pushes = {
        "@A": (w.repo, ["a1", "a2", "a3"], DOCKER, ACCOUNT),
        "@B": (w.repo, ["b1"], OCI, ACCOUNT),
        "@U": (w.repo, [], DOCKER, ACCOUNT),
        "@X": (w.other_repo, ["x1"], DOCKER, OTHER),
    }
    for token, (name, tags, media_type, registry) in pushes.items():
        raw = manifest_for(client, name, media_type=media_type, registry=registry)
        for tag in tags or [None]:
            extra = {"imageTag": tag} if tag else {}
            client.put_image(registryId=registry, repositoryName=name, imageManifest=raw, **extra)
        digest = "sha256:" + hashlib.sha256(raw.encode()).hexdigest()
        w.digests[token] = digest
        w.manifests[digest] = raw
        w.media_types[digest] = media_type
    w.digests["@A_UPPER"] = "sha256:" + w.digests["@A"].removeprefix("sha256:").upper()
    return w


# --- the table ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    row: str  # the spec row this case covers
    params: dict[str, Any]
    images: list[tuple[str, str | None]] = field(default_factory=list)  # (digest token, tag)
    failures: list[tuple[dict[str, str], str, str]] = field(default_factory=list)
    error: tuple[str, str] | None = None
    registry: str = ACCOUNT  # the registry the results come from


def ids(*image_ids: dict[str, str]) -> dict[str, Any]:
    return {"repositoryName": "@REPO", "imageIds": list(image_ids)}


CASES = [
    # 1.3 whole-request errors (sent with client-side validation off)
    Case(
        "name-too-short",
        "1.3 repositoryName too short",
        {"repositoryName": "a", "imageIds": [{"imageTag": "a1"}]},
        error=constraint("repositoryName", "must have length greater than or equal to 2"),
    ),
    Case(
        "name-too-long",
        "1.3 repositoryName > 256 [I: string wording]",
        {"repositoryName": "a" * 257, "imageIds": [{"imageTag": "a1"}]},
        error=constraint("repositoryName", "must have length less than or equal to 256"),
    ),
    Case(
        "name-max-length-is-valid",
        "1.1 repositoryName max 256 (valid, so the repository lookup answers)",
        {"repositoryName": "a" * 256, "imageIds": [{"imageTag": "a1"}]},
        error=(
            "RepositoryNotFoundException",
            f"The repository with name '{'a' * 256}' does not exist in the registry with id "
            f"'{ACCOUNT}'",
        ),
    ),
    Case(
        "name-bad-pattern",
        "1.3 repositoryName pattern (old regex quoted); validation before lookup",
        {"repositoryName": "UPPER_bad!", "imageIds": [{"imageTag": "a1"}]},
        error=constraint("repositoryName", f"must satisfy regular expression '{NAME_REGEX}'"),
    ),
    Case(
        "name-leading-slash",
        "1.3 repositoryName pattern",
        {"repositoryName": "/abc", "imageIds": [{"imageTag": "a1"}]},
        error=constraint("repositoryName", f"must satisfy regular expression '{NAME_REGEX}'"),
    ),
    Case(
        "registry-id-bad-pattern",
        "1.3 registryId pattern (regex unquoted)",
        {"registryId": "abc", **ids({"imageTag": "a1"})},
        error=constraint("registryId", "must satisfy regular expression [0-9]{12}"),
    ),
    Case(
        "registry-id-13-digits",
        "1.3 registryId pattern is a full match",
        {"registryId": ACCOUNT + "0", **ids({"imageTag": "a1"})},
        error=constraint("registryId", "must satisfy regular expression [0-9]{12}"),
    ),
    Case(
        "image-ids-missing",
        "1.1 imageIds required [I: 'Member must not be null']",
        {"repositoryName": "@REPO"},
        error=constraint("imageIds", "Member must not be null"),
    ),
    Case(
        "image-ids-empty",
        "1.3 imageIds empty (sent raw)",
        ids(),
        error=constraint("imageIds", "Member must have length greater than or equal to 1"),
    ),
    Case(
        "image-ids-101",
        "1.3 imageIds > 100",
        ids(*({"imageTag": f"t{i}"} for i in range(101))),
        error=constraint("imageIds", "Member must have length less than or equal to 100"),
    ),
    Case(
        "image-tag-empty",
        "1.2 imageTag min 1 (sent raw)",
        ids({"imageTag": ""}),
        error=constraint("imageTag", "must have length greater than or equal to 1"),
    ),
    Case(
        "image-tag-301",
        "1.3 imageTag > 300 [I: string wording]",
        ids({"imageTag": "t" * 301}),
        error=constraint("imageTag", "must have length less than or equal to 300"),
    ),
    Case(
        "accepted-empty",
        "1.3 acceptedMediaTypes empty [I]",
        {**ids({"imageTag": "a1"}), "acceptedMediaTypes": []},
        error=constraint(
            "acceptedMediaTypes", "Member must have length greater than or equal to 1"
        ),
    ),
    Case(
        "accepted-101",
        "1.3 acceptedMediaTypes > 100 [I]",
        {**ids({"imageTag": "a1"}), "acceptedMediaTypes": [DOCKER] * 101},
        error=constraint("acceptedMediaTypes", "Member must have length less than or equal to 100"),
    ),
    # 2 repository missing / other registries
    Case(
        "repository-missing",
        "2 repository missing",
        {"repositoryName": "@REPO-nope", "imageIds": [{"imageTag": "a1"}]},
        error=(
            "RepositoryNotFoundException",
            f"The repository with name '@REPO-nope' does not exist in the registry with id "
            f"'{ACCOUNT}'",
        ),
    ),
    Case(
        "repository-missing-before-id-checks",
        "2 repository missing (whole-request error beats per-id failures)",
        {"repositoryName": "@REPO-nope", "imageIds": [{}]},
        error=(
            "RepositoryNotFoundException",
            f"The repository with name '@REPO-nope' does not exist in the registry with id "
            f"'{ACCOUNT}'",
        ),
    ),
    Case(
        "other-registry-missing-repository",
        "2 registryId of another account: repository not there names that id",
        {"registryId": OTHER, **ids({"imageTag": "a1"})},
        error=(
            "RepositoryNotFoundException",
            f"The repository with name '@REPO' does not exist in the registry with id '{OTHER}'",
        ),
    ),
    Case(
        "default-registry-lacks-other-repository",
        "2 repositories are per registry",
        {"repositoryName": "@OTHER_REPO", "imageIds": [{"imageTag": "x1"}]},
        error=(
            "RepositoryNotFoundException",
            f"The repository with name '@OTHER_REPO' does not exist in the registry with id "
            f"'{ACCOUNT}'",
        ),
    ),
    Case(
        "other-registry-get",
        "2 registryId of another account: resolved in that registry",
        {"registryId": OTHER, "repositoryName": "@OTHER_REPO", "imageIds": [{"imageTag": "x1"}]},
        images=[("@X", "x1")],
        registry=OTHER,
    ),
    Case(
        "default-registry-explicit",
        "1.1 registryId of the default registry",
        {"registryId": ACCOUNT, **ids({"imageTag": "a1"})},
        images=[("@A", "a1")],
    ),
    Case(
        "tag-lone-surrogate",
        "1.2 a string that is not Unicode text [I: SerializationException]",
        ids({"imageTag": "\ud800"}),
        error=("SerializationException", "Invalid UTF-8 value at 'imageTag'"),
    ),
    Case(
        "digest-lone-surrogate",
        "1.2 a string that is not Unicode text [I: SerializationException]",
        ids({"imageDigest": "sha256:\udfff"}),
        error=("SerializationException", "Invalid UTF-8 value at 'imageDigest'"),
    ),
    # 1.4 per-id failures
    Case(
        "unknown-tag",
        "1.4 tag not found",
        ids({"imageTag": "nope"}),
        failures=[({"imageTag": "nope"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "unknown-digest",
        "1.4 digest well-formed but unknown",
        ids({"imageDigest": UNKNOWN}),
        failures=[({"imageDigest": UNKNOWN}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "unknown-tag-known-digest",
        "1.4 tag not found and digest given (digest exists)",
        ids({"imageTag": "nope", "imageDigest": "@A"}),
        failures=[({"imageTag": "nope", "imageDigest": "@A"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "unknown-tag-unknown-digest",
        "1.4 tag not found and digest given (digest unknown)",
        ids({"imageTag": "nope", "imageDigest": OTHER_UNKNOWN}),
        failures=[({"imageTag": "nope", "imageDigest": OTHER_UNKNOWN}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "tag-other-image-digest",
        "1.4 tag exists, digest is another image's",
        ids({"imageTag": "a1", "imageDigest": "@B"}),
        failures=[
            ({"imageTag": "a1", "imageDigest": "@B"}, "ImageTagDoesNotMatchDigest", MISMATCH)
        ],
    ),
    Case(
        "tag-unknown-digest",
        "1.4 tag exists, digest well-formed but unknown",
        ids({"imageTag": "a1", "imageDigest": OTHER_UNKNOWN}),
        failures=[
            (
                {"imageTag": "a1", "imageDigest": OTHER_UNKNOWN},
                "ImageTagDoesNotMatchDigest",
                MISMATCH,
            )
        ],
    ),
    Case(
        "neither",
        "1.4 neither tag nor digest",
        ids({}),
        failures=[({}, "MissingDigestAndTag", MISSING)],
    ),
    Case(
        "digest-no-colon",
        "1.4 malformed digest invalid_digest",
        ids({"imageDigest": "invalid_digest"}),
        failures=[({"imageDigest": "invalid_digest"}, "InvalidImageDigest", DIGEST_REASON)],
    ),
    Case(
        "digest-bad-hex",
        "1.4 malformed digest sha256:invalid-digest",
        ids({"imageDigest": "sha256:invalid-digest"}),
        failures=[({"imageDigest": "sha256:invalid-digest"}, "InvalidImageDigest", DIGEST_REASON)],
    ),
    Case(
        "digest-empty",
        "1.4 malformed digest (empty string)",
        ids({"imageDigest": ""}),
        failures=[({"imageDigest": ""}, "InvalidImageDigest", DIGEST_REASON)],
    ),
    Case(
        "digest-bad-with-known-tag",
        "8.2 a malformed digest is reported before the tag is looked up",
        ids({"imageTag": "a1", "imageDigest": "invalid_digest"}),
        failures=[
            (
                {"imageTag": "a1", "imageDigest": "invalid_digest"},
                "InvalidImageDigest",
                DIGEST_REASON,
            )
        ],
    ),
    Case(
        "digest-short-upper",
        "1.4 sha256:ABC is well-formed, so not found",
        ids({"imageDigest": "sha256:ABC"}),
        failures=[({"imageDigest": "sha256:ABC"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "digest-upper-case-of-known",
        "1.4 digests compare exactly [I: case-sensitive]",
        ids({"imageDigest": "@A_UPPER"}),
        failures=[({"imageDigest": "@A_UPPER"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "tag-bad-pattern",
        "1.4 malformed tag [I: reason by analogy]",
        ids({"imageTag": "bad tag!"}),
        failures=[({"imageTag": "bad tag!"}, "InvalidImageTag", TAG_REASON)],
    ),
    Case(
        "tag-bad-pattern-slash",
        "1.4 malformed tag",
        ids({"imageTag": "a/b"}),
        failures=[({"imageTag": "a/b"}, "InvalidImageTag", TAG_REASON)],
    ),
    # 2 semantics
    Case("by-tag", "2 tag only", ids({"imageTag": "a1"}), images=[("@A", "a1")]),
    Case(
        "by-tag-max-length-unknown",
        "1.1 imageTag of 300 characters is valid (not found)",
        ids({"imageTag": "t" * 300}),
        failures=[({"imageTag": "t" * 300}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "several-tags-one-digest",
        "2 several tags for one digest, requested by tag",
        ids({"imageTag": "a1"}, {"imageTag": "a3"}),
        images=[("@A", "a1"), ("@A", "a3")],
    ),
    Case(
        "by-digest-multi-tag",
        "2 digest only, image has N tags [I: most recently tagged first]",
        ids({"imageDigest": "@A"}),
        images=[("@A", "a3"), ("@A", "a2"), ("@A", "a1")],
    ),
    Case(
        "by-digest-untagged",
        "2 digest only, untagged image",
        ids({"imageDigest": "@U"}),
        images=[("@U", None)],
    ),
    Case(
        "by-tag-and-digest",
        "2 tag + matching digest",
        ids({"imageTag": "a2", "imageDigest": "@A"}),
        images=[("@A", "a2")],
    ),
    Case(
        "duplicate-ids",
        "2 duplicate imageIds [I: reported once]",
        ids({"imageTag": "a1"}, {"imageTag": "a1"}, {"imageTag": "a1", "imageDigest": "@A"}),
        images=[("@A", "a1")],
    ),
    Case(
        "duplicate-digest-and-tag",
        "2 duplicate imageIds: digest then one of its tags [I: reported once]",
        ids({"imageDigest": "@A"}, {"imageTag": "a2"}),
        images=[("@A", "a3"), ("@A", "a2"), ("@A", "a1")],
    ),
    Case(
        "duplicate-failures",
        "2 duplicate imageIds that fail [I: reported once]",
        ids({"imageTag": "nope"}, {"imageTag": "nope"}),
        failures=[({"imageTag": "nope"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "mixed-in-request-order",
        "2 order: results and failures keep request order",
        ids(
            {"imageTag": "b1"},
            {"imageTag": "nope"},
            {"imageDigest": "@U"},
            {},
            {"imageTag": "a2"},
        ),
        images=[("@B", "b1"), ("@U", None), ("@A", "a2")],
        failures=[
            ({"imageTag": "nope"}, "ImageNotFound", NOT_FOUND),
            ({}, "MissingDigestAndTag", MISSING),
        ],
    ),
    Case(
        "oci-by-tag",
        "3.3 imageManifestMediaType is the stored OCI type",
        ids({"imageTag": "b1"}),
        images=[("@B", "b1")],
    ),
    Case(
        "hundred-ids",
        "1.1 imageIds max 100 is valid",
        ids(*({"imageTag": f"n{i}"} for i in range(99)), {"imageTag": "a1"}),
        images=[("@A", "a1")],
        failures=[({"imageTag": f"n{i}"}, "ImageNotFound", NOT_FOUND) for i in range(99)],
    ),
    # 3 acceptedMediaTypes
    Case(
        "accepted-stored-type",
        "3.1 by tag, stored format accepted: served",
        {**ids({"imageTag": "a1"}), "acceptedMediaTypes": [DOCKER]},
        images=[("@A", "a1")],
    ),
    Case(
        "accepted-docker-header",
        "1.1 docker's Accept list passed through: unknown strings not rejected",
        {**ids({"imageTag": "a1"}, {"imageTag": "b1"}), "acceptedMediaTypes": DOCKER_ACCEPT},
        images=[("@A", "a1"), ("@B", "b1")],
    ),
    Case(
        "accepted-unknown-strings",
        "1.1 unknown media type strings are not rejected",
        {**ids({"imageTag": "a1"}), "acceptedMediaTypes": ["bogus/type", "x", DOCKER]},
        images=[("@A", "a1")],
    ),
    Case(
        "accepted-not-matching-by-tag",
        "3.1 by tag, not accepted, no conversion yet: ImageNotFound",
        {**ids({"imageTag": "a1"}), "acceptedMediaTypes": ["bogus/type"]},
        failures=[({"imageTag": "a1"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "accepted-not-matching-duplicates",
        "3.1 by tag, not accepted, asked twice [I: reported once]",
        {**ids({"imageTag": "a1"}, {"imageTag": "a1"}), "acceptedMediaTypes": ["bogus/type"]},
        failures=[({"imageTag": "a1"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "accepted-index-only-docker-stored-by-tag",
        "3.1 by tag, schema2 stored, only an index type accepted: no conversion makes one "
        "(the conversion table is tests/test_conversion.py)",
        {
            **ids({"imageTag": "a1"}),
            "acceptedMediaTypes": ["application/vnd.oci.image.index.v1+json"],
        },
        failures=[({"imageTag": "a1"}, "ImageNotFound", NOT_FOUND)],
    ),
    Case(
        "accepted-not-matching-by-digest",
        "3.1 by digest never converts: stored manifest served anyway",
        {**ids({"imageDigest": "@A"}), "acceptedMediaTypes": [OCI]},
        images=[("@A", "a3"), ("@A", "a2"), ("@A", "a1")],
    ),
    Case(
        "accepted-not-matching-by-tag-and-digest",
        "3.1 with both tag and digest the stored manifest is served",
        {**ids({"imageTag": "a1", "imageDigest": "@A"}), "acceptedMediaTypes": [SCHEMA1]},
        images=[("@A", "a1")],
    ),
    Case(
        "accepted-oci-stored-oci",
        "3.1 by tag, OCI stored and accepted (schema2 a1 converts: tests/test_conversion.py)",
        {**ids({"imageTag": "b1"}), "acceptedMediaTypes": [OCI]},
        images=[("@B", "b1")],
    ),
]


def _expected_image(world: World, case: Case, token: str, tag: str | None) -> dict[str, Any]:
    digest = world.digests[token]
    image_id = {"imageDigest": digest, **({"imageTag": tag} if tag else {})}
    return {
        "registryId": case.registry,
        "repositoryName": world.fill(case.params["repositoryName"]),
        "imageId": image_id,
        "imageManifest": world.manifests[digest],
        "imageManifestMediaType": world.media_types[digest],
    }


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_batch_get_image(world: World, raw_client: Any, case: Case) -> None:
    params = world.fill(case.params)
    if case.error is not None:
        with pytest.raises(ClientError) as caught:
            raw_client.batch_get_image(**params)
        error = caught.value.response["Error"]
        assert (error["Code"], error["Message"]) == tuple(world.fill(list(case.error))), case.row
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        return
    got = raw_client.batch_get_image(**params)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    expected = {
        "images": [_expected_image(world, case, token, tag) for token, tag in case.images],
        "failures": [
            {"imageId": world.fill(i), "failureCode": code, "failureReason": reason}
            for i, code, reason in case.failures
        ],
    }
    got.pop("ResponseMetadata")
    assert got == expected, case.row


# --- byte-exact manifests -----------------------------------------------------------------------


def _odd_manifests(config: dict[str, Any], layer: dict[str, Any]) -> dict[str, str]:
    dense = json.dumps(
        {"schemaVersion": 2, "mediaType": DOCKER, "config": config, "layers": [layer]},
        separators=(",", ":"),
    )
    reordered = json.dumps(
        {"layers": [layer], "config": config, "mediaType": DOCKER, "schemaVersion": 2}, indent=7
    )
    odd_space = (
        '\r\n{ "schemaVersion" :2 ,\t"mediaType":\n"'
        + DOCKER
        + '" ,"config" : '
        + json.dumps(config)
        + ',\r\n\r\n "layers":[ '
        + json.dumps(layer)
        + " ] }\n\n  "
    )
    annotated = {"schemaVersion": 2, "mediaType": OCI, "config": config, "layers": [layer]}
    annotated["annotations"] = {"title": "héllo wörld ✓ 🐳", "cjk": "日本語"}
    unicode_raw = json.dumps(annotated, ensure_ascii=False, indent=1)
    escaped = json.dumps(annotated, ensure_ascii=True)  # \u escapes must stay escapes
    return {
        "compact": dense,
        "reordered-indent-7": reordered,
        "crlf-tabs-trailing-space": odd_space,
        "unicode": unicode_raw,
        "unicode-escaped": escaped,
        "trailing-newline": dense + "\n",
    }


VARIANTS = [
    "compact",
    "reordered-indent-7",
    "crlf-tabs-trailing-space",
    "unicode",
    "unicode-escaped",
    "trailing-newline",
]


@pytest.mark.parametrize("variant", VARIANTS)
def test_manifest_round_trips_byte_exact(ecr: Any, repo: str, variant: str) -> None:
    """Spec 2 `imageManifest` bytes: returned byte-exact, sha256(imageManifest) == imageDigest."""
    config_data = json.dumps({"os": "linux", "v": variant}).encode()
    layer_data = f"layer {variant}".encode()
    config = {
        "mediaType": "application/vnd.docker.container.image.v1+json",
        "size": len(config_data),
        "digest": push_blob(ecr, repo, config_data, ACCOUNT),
    }
    layer = {
        "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "size": len(layer_data),
        "digest": push_blob(ecr, repo, layer_data, ACCOUNT),
    }
    raw = _odd_manifests(config, layer)[variant]
    digest = "sha256:" + hashlib.sha256(raw.encode("utf-8")).hexdigest()
    put = ecr.put_image(repositoryName=repo, imageManifest=raw, imageTag="t")
    assert put["image"]["imageId"] == {"imageDigest": digest, "imageTag": "t"}
    assert put["image"]["imageManifest"] == raw
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "t"}, {"imageDigest": digest}]
    )
    assert got["failures"] == []
    assert [i["imageManifest"] for i in got["images"]] == [raw]  # one (tag) entry, deduped
    served = got["images"][0]["imageManifest"].encode("utf-8")
    assert (
        "sha256:" + hashlib.sha256(served).hexdigest() == got["images"][0]["imageId"]["imageDigest"]
    )


# --- the wire -----------------------------------------------------------------------------------


def _post(server: Server, operation: str, body: bytes | str) -> httpx.Response:
    return httpx.post(
        server.endpoint + "/",
        content=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.{operation}",
        },
        timeout=10,
    )


def test_success_body_on_the_wire(server: Server, world: World) -> None:
    """Spec 5 success: 200, JSON 1.1 content type, request id, compact alphabetical JSON,
    both lists present."""
    body = json.dumps({"repositoryName": world.repo, "imageIds": [{"imageTag": "a1"}]})
    response = _post(server, "BatchGetImage", body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers["x-amzn-requestid"]
    assert response.headers["date"]
    assert int(response.headers["content-length"]) == len(response.content)
    doc = response.json()
    assert list(doc) == ["failures", "images"]
    assert doc["failures"] == []
    assert list(doc["images"][0]) == sorted(doc["images"][0])
    assert list(doc["images"][0]["imageId"]) == ["imageDigest", "imageTag"]
    assert response.content == json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def test_empty_results_keep_both_lists(server: Server, world: World) -> None:
    """Spec 5: both top-level lists are present even when empty."""
    failure_doc = _post(
        server,
        "BatchGetImage",
        json.dumps({"repositoryName": world.repo, "imageIds": [{"imageTag": "nope"}]}),
    )
    assert failure_doc.content == (
        b'{"failures":[{"failureCode":"ImageNotFound","failureReason":"Requested image not found",'
        b'"imageId":{"imageTag":"nope"}}],"images":[]}'
    )


def test_signed_request_is_accepted(server: Server, world: World) -> None:
    """Spec 5 request: a SigV4-signed request (any credentials) is served."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = json.dumps({"repositoryName": world.repo, "imageIds": [{"imageTag": "b1"}]})
    request = AWSRequest(
        method="POST",
        url=server.endpoint + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.BatchGetImage",
        },
    )
    SigV4Auth(Credentials("AKIDANY", "whatever"), "ecr", "us-east-1").add_auth(request)
    response = httpx.post(
        server.endpoint + "/", content=body, headers=dict(request.headers.items()), timeout=10
    )
    assert response.status_code == 200
    assert response.json()["images"][0]["imageId"] == {
        "imageDigest": world.digests["@B"],
        "imageTag": "b1",
    }


@pytest.mark.parametrize(
    ("body", "error_type", "message"),
    [
        pytest.param(
            {"repositoryName": "nope-nope-nope", "imageIds": [{"imageTag": "x"}]},
            "RepositoryNotFoundException",
            "The repository with name 'nope-nope-nope' does not exist in the registry with id "
            f"'{ACCOUNT}'",
            id="repository-not-found",
        ),
        pytest.param(
            {"repositoryName": "Bad!", "imageIds": [{"imageTag": "x"}]},
            "InvalidParameterException",
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            f"'must satisfy regular expression '{NAME_REGEX}''",
            id="invalid-parameter",
        ),
        pytest.param(
            {"repositoryName": "abc", "imageIds": []},
            "InvalidParameterException",
            "Invalid parameter at 'imageIds' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'",
            id="image-ids-empty",
        ),
    ],
)
def test_error_body_on_the_wire(
    server: Server, body: dict[str, Any], error_type: str, message: str
) -> None:
    """Spec 5 error: 400, body exactly {"__type", "message"}, JSON 1.1 content type."""
    response = _post(server, "BatchGetImage", json.dumps(body))
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/x-amz-json-1.1"
    assert response.headers["x-amzn-requestid"]
    assert response.json() == {"__type": error_type, "message": message}
    assert list(response.json()) == ["__type", "message"]


# --- BatchDeleteImage ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DeleteCase:
    id: str
    row: str
    image_ids: list[dict[str, str]]
    deleted: list[tuple[str, str | None]] = field(default_factory=list)  # (digest token, tag)
    failures: list[tuple[dict[str, str], str, str]] = field(default_factory=list)
    remaining: set[tuple[str, str | None]] = field(default_factory=set)  # list_images after


ALL = {("@A", "t1"), ("@A", "t2"), ("@B", "b1"), ("@U", None)}

DELETE_CASES = [
    DeleteCase(
        "tag-of-multi-tag-image",
        "LS delete by tag: only the tag goes while others remain",
        [{"imageTag": "t1"}],
        deleted=[("@A", "t1")],
        remaining=ALL - {("@A", "t1")},
    ),
    DeleteCase(
        "last-tag",
        "LS delete by tag: the image goes with its last tag",
        [{"imageTag": "b1"}],
        deleted=[("@B", "b1")],
        remaining=ALL - {("@B", "b1")},
    ),
    DeleteCase(
        "every-tag-one-by-one",
        "LS delete by tag: the image goes when the last tag goes",
        [{"imageTag": "t1"}, {"imageTag": "t2"}],
        deleted=[("@A", "t1"), ("@A", "t2")],
        remaining={("@B", "b1"), ("@U", None)},
    ),
    DeleteCase(
        "by-digest",
        "LS delete by digest: every tag goes [I: most recently tagged first]",
        [{"imageDigest": "@A"}],
        deleted=[("@A", "t2"), ("@A", "t1")],
        remaining={("@B", "b1"), ("@U", None)},
    ),
    DeleteCase(
        "untagged-by-digest",
        "LS delete by digest (untagged image)",
        [{"imageDigest": "@U"}],
        deleted=[("@U", None)],
        remaining=ALL - {("@U", None)},
    ),
    DeleteCase(
        "tag-and-digest",
        "LS delete with both: only that tag goes while others remain",
        [{"imageTag": "t2", "imageDigest": "@A"}],
        deleted=[("@A", "t2")],
        remaining=ALL - {("@A", "t2")},
    ),
    DeleteCase(
        "tag-and-digest-last-tag",
        "LS delete with both: the image goes with its last tag",
        [{"imageTag": "b1", "imageDigest": "@B"}],
        deleted=[("@B", "b1")],
        remaining=ALL - {("@B", "b1")},
    ),
    DeleteCase(
        "digest-then-its-tag",
        "LS same image twice ([{imageDigest}, {imageTag}]) -> 1 result, 0 failures",
        [{"imageDigest": "@B"}, {"imageTag": "b1"}],
        deleted=[("@B", "b1")],
        remaining=ALL - {("@B", "b1")},
    ),
    DeleteCase(
        "tag-then-its-digest",
        "LS same image twice, tag first [I: reported once]",
        [{"imageTag": "t1"}, {"imageDigest": "@A"}],
        deleted=[("@A", "t1"), ("@A", "t2")],
        remaining={("@B", "b1"), ("@U", None)},
    ),
    DeleteCase(
        "duplicate-tag",
        "2 duplicate imageIds [I: reported once]",
        [{"imageTag": "t1"}, {"imageTag": "t1"}],
        deleted=[("@A", "t1")],
        remaining=ALL - {("@A", "t1")},
    ),
    DeleteCase(
        "mismatch",
        "1.4 tag exists, digest is another image's (delete)",
        [{"imageTag": "t1", "imageDigest": "@B"}],
        failures=[
            ({"imageTag": "t1", "imageDigest": "@B"}, "ImageTagDoesNotMatchDigest", MISMATCH)
        ],
        remaining=ALL,
    ),
    DeleteCase(
        "unknown-tag-known-digest",
        "1.4 tag not found and digest given (delete)",
        [{"imageTag": "nope", "imageDigest": "@A"}],
        failures=[({"imageTag": "nope", "imageDigest": "@A"}, "ImageNotFound", NOT_FOUND)],
        remaining=ALL,
    ),
    DeleteCase(
        "unknown-tag",
        "1.4 tag not found (real BatchDeleteImage capture)",
        [{"imageTag": "latest"}],
        failures=[({"imageTag": "latest"}, "ImageNotFound", NOT_FOUND)],
        remaining=ALL,
    ),
    DeleteCase(
        "unknown-digest",
        "1.4 digest well-formed but unknown (delete)",
        [{"imageDigest": UNKNOWN}],
        failures=[({"imageDigest": UNKNOWN}, "ImageNotFound", NOT_FOUND)],
        remaining=ALL,
    ),
    DeleteCase(
        "malformed",
        "1.4 MissingDigestAndTag / InvalidImageDigest / InvalidImageTag (delete)",
        [
            {},
            {"imageDigest": "invalid_digest"},
            {"imageDigest": "sha256:invalid-digest"},
            {"imageTag": "bad tag"},
            {"imageDigest": "sha256:ABC"},
        ],
        failures=[
            ({}, "MissingDigestAndTag", MISSING),
            ({"imageDigest": "invalid_digest"}, "InvalidImageDigest", DIGEST_REASON),
            ({"imageDigest": "sha256:invalid-digest"}, "InvalidImageDigest", DIGEST_REASON),
            ({"imageTag": "bad tag"}, "InvalidImageTag", TAG_REASON),
            ({"imageDigest": "sha256:ABC"}, "ImageNotFound", NOT_FOUND),
        ],
        remaining=ALL,
    ),
    DeleteCase(
        "partial",
        "5 batch partial failure is a 200 with both lists",
        [{"imageTag": "nope"}, {"imageTag": "b1"}],
        deleted=[("@B", "b1")],
        failures=[({"imageTag": "nope"}, "ImageNotFound", NOT_FOUND)],
        remaining=ALL - {("@B", "b1")},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in DELETE_CASES])
def test_batch_delete_image(server: Server, case: DeleteCase) -> None:
    client = server.client(config=Config(parameter_validation=False))
    name = f"bdi/{uuid.uuid4().hex[:10]}"
    client.create_repository(repositoryName=name)
    digests = {
        "@A": push_image(client, name, ["t1", "t2"]),
        "@B": push_image(client, name, ["b1"], media_type=OCI),
        "@U": push_image(client, name, []),
    }

    def fill(value: Any) -> Any:
        text = json.dumps(value)
        for token, digest in digests.items():
            text = text.replace(token, digest)
        return json.loads(text)

    def id_doc(token: str, tag: str | None) -> dict[str, str]:
        return {"imageDigest": digests[token], **({"imageTag": tag} if tag else {})}

    got = client.batch_delete_image(repositoryName=name, imageIds=fill(case.image_ids))
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["imageIds"] == [id_doc(t, tag) for t, tag in case.deleted], case.row
    assert got["failures"] == [
        {"imageId": fill(i), "failureCode": code, "failureReason": reason}
        for i, code, reason in case.failures
    ], case.row
    listed = client.list_images(repositoryName=name)["imageIds"]
    assert sorted(listed, key=json.dumps) == sorted(
        (id_doc(t, tag) for t, tag in case.remaining), key=json.dumps
    ), case.row


@pytest.mark.parametrize(
    ("params", "error"),
    [
        pytest.param(
            {"repositoryName": "nope-nope", "imageIds": [{"imageTag": "x"}]},
            (
                "RepositoryNotFoundException",
                f"The repository with name 'nope-nope' does not exist in the registry with id "
                f"'{ACCOUNT}'",
            ),
            id="repository-missing",
        ),
        pytest.param(
            {"repositoryName": "abc", "imageIds": [{"imageTag": f"t{i}"} for i in range(101)]},
            constraint("imageIds", "Member must have length less than or equal to 100"),
            id="image-ids-101",
        ),
        pytest.param(
            {"repositoryName": "abc", "imageIds": []},
            constraint("imageIds", "Member must have length greater than or equal to 1"),
            id="image-ids-empty",
        ),
        pytest.param(
            {"repositoryName": "abc", "registryId": "12", "imageIds": [{"imageTag": "x"}]},
            constraint("registryId", "must satisfy regular expression [0-9]{12}"),
            id="registry-id",
        ),
    ],
)
def test_batch_delete_image_request_errors(
    raw_client: Any, params: dict[str, Any], error: tuple[str, str]
) -> None:
    """Spec 1.3 applies to BatchDeleteImage too (ecrm#3 is a BatchDeleteImage capture)."""
    with pytest.raises(ClientError) as caught:
        raw_client.batch_delete_image(**params)
    got = caught.value.response["Error"]
    assert (got["Code"], got["Message"]) == error
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_batch_delete_wire_body(server: Server) -> None:
    """Spec 5: the real capture's shape, byte for byte (aws/aws-cli#6424)."""
    client = server.client()
    name = f"bdi/{uuid.uuid4().hex[:10]}"
    client.create_repository(repositoryName=name)
    response = _post(
        server,
        "BatchDeleteImage",
        json.dumps({"repositoryName": name, "imageIds": [{"imageTag": "latest"}]}),
    )
    assert response.status_code == 200
    assert response.content == (
        b'{"failures":[{"failureCode":"ImageNotFound","failureReason":"Requested image not found",'
        b'"imageId":{"imageTag":"latest"}}],"imageIds":[]}'
    )
