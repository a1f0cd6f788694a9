"""PutImage against a running server: digests, tags, immutability, limits, manifest checks."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, ServerFactory, upload_blob

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
ABSENT = "sha256:" + "e" * 64
TAG_PATTERN_MESSAGE = (
    "Invalid parameter at 'imageTag' failed to satisfy constraint: "
    "'must satisfy regular expression '[a-zA-Z0-9-_.]+''"
)
INVALID_JSON = (
    "Invalid parameter at 'ImageManifest' failed to satisfy constraint: 'Invalid JSON syntax'"
)


def sha256(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def descriptor(
    client: Any, repo: str, media_type: str, data: bytes | None = None
) -> dict[str, Any]:
    """Upload ``data`` (fresh bytes by default) and describe it."""
    data = data if data is not None else f"blob {uuid.uuid4().hex}".encode()
    return {"mediaType": media_type, "size": len(data), "digest": upload_blob(client, repo, data)}


def image_doc(
    client: Any, repo: str, media_type: str | None = DOCKER, *, layers: int = 1
) -> dict[str, Any]:
    """A schema 2 / OCI manifest document whose blobs are in ``repo``."""
    oci = media_type in (OCI, None)
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type is not None:
        doc["mediaType"] = media_type
    doc["config"] = descriptor(client, repo, OCI_CONFIG if oci else DOCKER_CONFIG)
    doc["layers"] = [
        descriptor(client, repo, OCI_LAYER if oci else DOCKER_LAYER) for _ in range(layers)
    ]
    return doc


def put(client: Any, repo: str, manifest: str, **kwargs: Any) -> dict[str, Any]:
    return dict(client.put_image(repositoryName=repo, imageManifest=manifest, **kwargs)["image"])


def error_of(call: Callable[[], Any]) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def stored(client: Any, repo: str) -> list[dict[str, Any]]:
    """Every image of ``repo`` (digest, tags), as DescribeImages reports them."""
    details = client.describe_images(repositoryName=repo)["imageDetails"]
    return [{"digest": d["imageDigest"], "tags": d.get("imageTags", [])} for d in details]


@pytest.fixture
def raw_ecr(server: Server) -> Any:
    return server.client(config=Config(parameter_validation=False, retries={"max_attempts": 1}))


# --- digests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "render",
    [
        pytest.param(lambda d: json.dumps(d), id="default"),
        pytest.param(lambda d: json.dumps(d, separators=(",", ":")), id="compact"),
        pytest.param(
            lambda d: json.dumps(d, indent=4, sort_keys=True) + "\n", id="sorted-indented"
        ),
        pytest.param(lambda d: "\t" + json.dumps(d).replace(", ", ",\r\n ") + " ", id="odd-space"),
    ],
)
def test_digest_is_sha256_of_the_exact_bytes(
    ecr: Any, repo: str, render: Callable[[dict[str, Any]], str]
) -> None:
    """The digest is sha256 of the bytes as sent, whitespace and key order included."""
    text = render(image_doc(ecr, repo))
    image = put(ecr, repo, text, imageTag="v1")
    assert image == {
        "registryId": ACCOUNT,
        "repositoryName": repo,
        "imageId": {"imageDigest": sha256(text), "imageTag": "v1"},
        "imageManifest": text,
        "imageManifestMediaType": DOCKER,
    }
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": sha256(text)}])
    assert got["images"][0]["imageManifest"] == text


def test_same_content_formatted_differently_is_two_images(ecr: Any, repo: str) -> None:
    doc = image_doc(ecr, repo)
    compact, spaced = json.dumps(doc, separators=(",", ":")), json.dumps(doc, indent=2)
    put(ecr, repo, compact, imageTag="compact")
    put(ecr, repo, spaced, imageTag="spaced")
    assert sorted(stored(ecr, repo), key=lambda i: i["tags"]) == [
        {"digest": sha256(compact), "tags": ["compact"]},
        {"digest": sha256(spaced), "tags": ["spaced"]},
    ]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param("@RIGHT", None, id="matching"),
        pytest.param(
            "sha256:" + "0" * 64,
            (
                "ImageDigestDoesNotMatchException",
                "Provided digest 'sha256:{zeros}' does not match the digest of the image "
                "manifest '@RIGHT'",
            ),
            id="other-digest",
        ),
        pytest.param(
            "@UPPER",
            (
                "ImageDigestDoesNotMatchException",
                "Provided digest '@UPPER' does not match the digest of the image manifest '@RIGHT'",
            ),
            id="upper-case-hex",
        ),
        pytest.param(
            "sha256:abc",
            (
                "ImageDigestDoesNotMatchException",
                "Provided digest 'sha256:abc' does not match the digest of the image manifest "
                "'@RIGHT'",
            ),
            id="short-but-well-formed",
        ),
        pytest.param(
            "sha512:" + "0" * 128,
            (
                "ImageDigestDoesNotMatchException",
                "Provided digest 'sha512:{zeros128}' does not match the digest of the image "
                "manifest '@RIGHT'",
            ),
            id="other-algorithm",
        ),
        pytest.param(
            "not-a-digest",
            (
                "InvalidParameterException",
                "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
                "'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''",
            ),
            id="malformed",
        ),
        pytest.param(
            "sha256:xyz",
            (
                "InvalidParameterException",
                "Invalid parameter at 'imageDigest' failed to satisfy constraint: "
                "'must satisfy regular expression '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+''",
            ),
            id="malformed-hex",
        ),
    ],
)
def test_image_digest_parameter(
    ecr: Any, repo: str, given: str, expected: tuple[str, str] | None
) -> None:
    """imageDigest must be the manifest's digest; nothing is stored when it is not."""
    text = json.dumps(image_doc(ecr, repo))
    right = sha256(text)

    def fill(value: str) -> str:
        return (
            value.replace("@UPPER", "sha256:" + right.removeprefix("sha256:").upper())
            .replace("@RIGHT", right)
            .replace("{zeros}", "0" * 64)
            .replace("{zeros128}", "0" * 128)
        )

    call = lambda: put(ecr, repo, text, imageTag="v1", imageDigest=fill(given))  # noqa: E731
    if expected is None:
        assert call()["imageId"] == {"imageDigest": right, "imageTag": "v1"}
        return
    assert error_of(call) == (expected[0], fill(expected[1]))
    assert stored(ecr, repo) == []


# --- tags ---------------------------------------------------------------------------------------


def test_same_tag_and_digest_again_is_image_already_exists(ecr: Any, repo: str) -> None:
    text = json.dumps(image_doc(ecr, repo))
    put(ecr, repo, text, imageTag="v1")
    assert error_of(lambda: put(ecr, repo, text, imageTag="v1")) == (
        "ImageAlreadyExistsException",
        f"Image with digest '{sha256(text)}' and tag 'v1' already exists in the repository "
        f"with name '{repo}' in registry with id '{ACCOUNT}'",
    )
    assert stored(ecr, repo) == [{"digest": sha256(text), "tags": ["v1"]}]


def test_untagged_again_is_image_already_exists(ecr: Any, repo: str) -> None:
    text = json.dumps(image_doc(ecr, repo))
    assert put(ecr, repo, text)["imageId"] == {"imageDigest": sha256(text)}
    assert error_of(lambda: put(ecr, repo, text)) == (
        "ImageAlreadyExistsException",
        f"Image with digest '{sha256(text)}' and tag 'null' already exists in the repository "
        f"with name '{repo}' in registry with id '{ACCOUNT}'",
    )


def test_same_manifest_new_tag_adds_a_second_tag(ecr: Any, repo: str) -> None:
    text = json.dumps(image_doc(ecr, repo))
    put(ecr, repo, text, imageTag="v1")
    second = put(ecr, repo, text, imageTag="v2")
    assert second["imageId"] == {"imageDigest": sha256(text), "imageTag": "v2"}
    assert [sorted(i["tags"]) for i in stored(ecr, repo)] == [["v1", "v2"]]
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": sha256(text)}])
    assert sorted(i["imageId"]["imageTag"] for i in got["images"]) == ["v1", "v2"]


def test_tagging_an_untagged_image(ecr: Any, repo: str) -> None:
    text = json.dumps(image_doc(ecr, repo))
    put(ecr, repo, text)
    put(ecr, repo, text, imageTag="later")
    assert stored(ecr, repo) == [{"digest": sha256(text), "tags": ["later"]}]


def test_moving_a_tag_leaves_the_old_image_untagged(ecr: Any, repo: str) -> None:
    first, second = json.dumps(image_doc(ecr, repo)), json.dumps(image_doc(ecr, repo))
    put(ecr, repo, first, imageTag="latest")
    moved = put(ecr, repo, second, imageTag="latest")
    assert moved["imageId"] == {"imageDigest": sha256(second), "imageTag": "latest"}
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "latest"}])
    assert got["images"][0]["imageManifest"] == second
    untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert untagged["imageIds"] == [{"imageDigest": sha256(first)}]


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        pytest.param("bad tag", TAG_PATTERN_MESSAGE, id="space"),
        pytest.param("a/b", TAG_PATTERN_MESSAGE, id="slash"),
        pytest.param("v1:2", TAG_PATTERN_MESSAGE, id="colon"),
        pytest.param("ünï", TAG_PATTERN_MESSAGE, id="non-ascii"),
        pytest.param("v1\n", TAG_PATTERN_MESSAGE, id="trailing-newline"),
        pytest.param(
            "t" * 301,
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            "'must have length less than or equal to 300'",
            id="301-chars",
        ),
        pytest.param(
            "",
            "Invalid parameter at 'imageTag' failed to satisfy constraint: "
            "'must have length greater than or equal to 1'",
            id="empty",
        ),
    ],
)
def test_tag_violations(raw_ecr: Any, repo: str, tag: str, message: str) -> None:
    text = json.dumps(image_doc(raw_ecr, repo))
    assert error_of(lambda: put(raw_ecr, repo, text, imageTag=tag)) == (
        "InvalidParameterException",
        message,
    )
    assert stored(raw_ecr, repo) == []


@pytest.mark.parametrize("tag", ["t" * 300, "A-Z_a.z-0", "-leading-dash", ".dot", "_"])
def test_valid_unusual_tags(ecr: Any, repo: str, tag: str) -> None:
    """ECR's quoted tag regex ``[a-zA-Z0-9-_.]+`` allows leading punctuation, up to 300."""
    text = json.dumps(image_doc(ecr, repo))
    assert put(ecr, repo, text, imageTag=tag)["imageId"]["imageTag"] == tag


# --- immutability -------------------------------------------------------------------------------

MUTABILITY_CASES = [
    # (mode, filters, tag, may the existing tag move?)
    ("MUTABLE", [], "v1", True),
    ("IMMUTABLE", [], "v1", False),
    ("IMMUTABLE", [], "latest", False),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "latest", True),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "dev-123", True),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "dev-", True),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "dev", False),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "xdev-1", False),
    ("IMMUTABLE_WITH_EXCLUSION", ["latest", "dev-*"], "latest2", False),
    ("IMMUTABLE_WITH_EXCLUSION", ["*-rc*"], "1.0-rc2", True),
    ("IMMUTABLE_WITH_EXCLUSION", ["*"], "anything", True),
    ("MUTABLE_WITH_EXCLUSION", ["release-*"], "release-1", False),
    ("MUTABLE_WITH_EXCLUSION", ["release-*"], "Release-1", True),
    ("MUTABLE_WITH_EXCLUSION", ["release-*"], "latest", True),
    ("MUTABLE_WITH_EXCLUSION", ["v*.*", "prod"], "v1.2", False),
    ("MUTABLE_WITH_EXCLUSION", ["v*.*", "prod"], "v1", True),
    ("MUTABLE_WITH_EXCLUSION", ["v*.*", "prod"], "prod", False),
]


@pytest.mark.parametrize("how", ["create_repository", "put_image_tag_mutability"])
@pytest.mark.parametrize(
    ("mode", "filters", "tag", "movable"),
    [pytest.param(*c, id=f"{c[0]}-{'+'.join(c[1]) or 'none'}-{c[2]}") for c in MUTABILITY_CASES],
)
def test_tag_mutability(
    ecr: Any,
    repo_name: str,
    how: str,
    mode: str,
    filters: list[str],
    tag: str,
    movable: bool,
) -> None:
    """Moving an existing tag obeys imageTagMutability and its WILDCARD exclusion filters;
    a new tag and the same tag+digest again behave the same in every mode."""
    setting: dict[str, Any] = {"imageTagMutability": mode}
    if filters:
        setting["imageTagMutabilityExclusionFilters"] = [
            {"filterType": "WILDCARD", "filter": f} for f in filters
        ]
    if how == "create_repository":
        ecr.create_repository(repositoryName=repo_name, **setting)
    else:
        ecr.create_repository(repositoryName=repo_name)
        ecr.put_image_tag_mutability(repositoryName=repo_name, **setting)
    first, second = json.dumps(image_doc(ecr, repo_name)), json.dumps(image_doc(ecr, repo_name))
    put(ecr, repo_name, first, imageTag=tag)  # a new tag is always allowed
    assert error_of(lambda: put(ecr, repo_name, first, imageTag=tag))[0] == (
        "ImageAlreadyExistsException"
    )
    if movable:
        put(ecr, repo_name, second, imageTag=tag)
        expected = sha256(second)
    else:
        assert error_of(lambda: put(ecr, repo_name, second, imageTag=tag)) == (
            "ImageTagAlreadyExistsException",
            f"The image tag '{tag}' already exists in the '{repo_name}' repository and cannot "
            "be overwritten because the repository is immutable.",
        )
        expected = sha256(first)
    got = ecr.batch_get_image(repositoryName=repo_name, imageIds=[{"imageTag": tag}])
    assert got["images"][0]["imageId"] == {"imageDigest": expected, "imageTag": tag}
    # the refused manifest may still be pushed under another (new) tag
    if not movable:
        assert put(ecr, repo_name, second, imageTag="fresh-tag")["imageId"]["imageTag"] == (
            "fresh-tag"
        )


def test_immutable_allows_untagged_push_of_new_manifest(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, imageTagMutability="IMMUTABLE")
    text = json.dumps(image_doc(ecr, repo_name))
    assert put(ecr, repo_name, text)["imageId"] == {"imageDigest": sha256(text)}


# --- size limit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "error"),
    [
        pytest.param(4194304, None, id="exactly-4MiB-chars"),
        pytest.param(
            4194305,
            (
                "InvalidParameterException",
                "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
                "'must have length less than or equal to 4194304'",
            ),
            id="one-over",
        ),
    ],
)
def test_manifest_size_limit(
    raw_ecr: Any, repo: str, length: int, error: tuple[str, str] | None
) -> None:
    """The model's imageManifest max (4194304 characters) is inclusive."""
    text = json.dumps(image_doc(raw_ecr, repo))
    padded = text[:-1] + " " * (length - len(text)) + "}"
    assert len(padded) == length
    call = lambda: put(raw_ecr, repo, padded, imageTag="big")  # noqa: E731
    if error is not None:
        assert error_of(call) == error
        assert stored(raw_ecr, repo) == []
        return
    assert call()["imageId"] == {"imageDigest": sha256(padded), "imageTag": "big"}
    got = raw_ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "big"}])
    assert got["images"][0]["imageManifest"] == padded


# --- referenced blobs ---------------------------------------------------------------------------


def _missing_layer(client: Any, repo: str) -> tuple[dict[str, Any], list[str]]:
    doc = image_doc(client, repo)
    doc["layers"].append({"mediaType": DOCKER_LAYER, "size": 3, "digest": ABSENT})
    return doc, [ABSENT]


def _missing_config(client: Any, repo: str) -> tuple[dict[str, Any], list[str]]:
    doc = image_doc(client, repo)
    doc["config"]["digest"] = ABSENT
    return doc, [ABSENT]


def _missing_both(client: Any, repo: str) -> tuple[dict[str, Any], list[str]]:
    doc = image_doc(client, repo)
    absent_layer = "sha256:" + "f" * 64
    doc["config"]["digest"] = ABSENT
    doc["layers"].append({"mediaType": DOCKER_LAYER, "size": 3, "digest": absent_layer})
    return doc, [ABSENT, absent_layer]


def _blob_of_other_repository(client: Any, repo: str) -> tuple[dict[str, Any], list[str]]:
    other = f"test/other-{uuid.uuid4().hex[:8]}"
    client.create_repository(repositoryName=other)
    doc = image_doc(client, repo)
    foreign = descriptor(client, other, DOCKER_LAYER)
    doc["layers"].append(foreign)
    return doc, [foreign["digest"]]


def _schema1_missing(client: Any, repo: str) -> tuple[dict[str, Any], list[str]]:
    return {
        "schemaVersion": 1,
        "name": repo,
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": ABSENT}],
        "history": [{"v1Compatibility": "{}"}],
    }, [ABSENT]


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(_missing_layer, id="layer"),
        pytest.param(_missing_config, id="config"),
        pytest.param(_missing_both, id="config-and-layer"),
        pytest.param(_blob_of_other_repository, id="blob-only-in-another-repository"),
        pytest.param(_schema1_missing, id="schema1-blobsum"),
    ],
)
def test_missing_blobs_are_layers_not_found_and_leave_no_trace(
    ecr: Any, repo: str, build: Callable[[Any, str], tuple[dict[str, Any], list[str]]]
) -> None:
    doc, missing = build(ecr, repo)
    text = json.dumps(doc)
    assert error_of(lambda: put(ecr, repo, text, imageTag="v1")) == (
        "LayersNotFoundException",
        f"Layers with digests '[{', '.join(missing)}]' required for pushing image into "
        f"repository with name '{repo}' in the registry with id '{ACCOUNT}' do not exist",
    )
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageDigest": sha256(text)}]
    )
    assert got["images"] == []
    assert [f["failureCode"] for f in got["failures"]] == ["ImageNotFound", "ImageNotFound"]
    assert ecr.describe_images(repositoryName=repo)["imageDetails"] == []
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_index_with_missing_children_is_refused(ecr: Any, repo: str) -> None:
    child = json.dumps(image_doc(ecr, repo))
    put(ecr, repo, child)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": DOCKER, "size": len(child), "digest": sha256(child)},
                {"mediaType": DOCKER, "size": 10, "digest": ABSENT},
            ],
        }
    )
    assert error_of(lambda: put(ecr, repo, index, imageTag="multi")) == (
        "ReferencedImagesNotFoundException",
        f"The following referenced images were not found in the repository with name '{repo}' "
        f"in the registry with id '{ACCOUNT}': [{ABSENT}]",
    )
    assert [i["digest"] for i in stored(ecr, repo)] == [sha256(child)]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_lenient_manifests_skip_blob_checks_but_not_the_digest_check(
    make_server: ServerFactory, how: str
) -> None:
    srv = (
        make_server("--lenient-manifests")
        if how == "flag"
        else make_server(env={"OPENECR_LENIENT_MANIFESTS": "1"})
    )
    client = srv.client()
    client.create_repository(repositoryName="lenient")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER,
            "config": {"mediaType": DOCKER_CONFIG, "size": 2, "digest": ABSENT},
            "layers": [{"mediaType": DOCKER_LAYER, "size": 3, "digest": "sha256:" + "1" * 64}],
        }
    )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [{"mediaType": DOCKER, "size": 10, "digest": ABSENT}],
        }
    )
    assert put(client, "lenient", manifest, imageTag="v1")["imageId"] == {
        "imageDigest": sha256(manifest),
        "imageTag": "v1",
    }
    assert put(client, "lenient", index, imageTag="list")["imageManifestMediaType"] == (DOCKER_LIST)
    other = manifest.replace('"size": 3', '"size": 4')
    assert error_of(
        lambda: put(client, "lenient", other, imageTag="v2", imageDigest=sha256(manifest))
    ) == (
        "ImageDigestDoesNotMatchException",
        f"Provided digest '{sha256(manifest)}' does not match the digest of the image manifest "
        f"'{sha256(other)}'",
    )
    assert error_of(lambda: put(client, "lenient", "{nope", imageTag="v3")) == (
        "InvalidParameterException",
        INVALID_JSON,
    )
    got = client.batch_get_image(repositoryName="lenient", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == manifest


# --- manifest parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        pytest.param("not json", ("InvalidParameterException", INVALID_JSON), id="text"),
        pytest.param("{", ("InvalidParameterException", INVALID_JSON), id="truncated"),
        pytest.param("[]", ("InvalidParameterException", INVALID_JSON), id="array"),
        pytest.param("null", ("InvalidParameterException", INVALID_JSON), id="null"),
        pytest.param('"text"', ("InvalidParameterException", INVALID_JSON), id="string"),
        pytest.param(
            '{"a":1}{"b":2}', ("InvalidParameterException", INVALID_JSON), id="two-documents"
        ),
        pytest.param(
            json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []})[:-1]
            + ',"x":NaN}',
            ("InvalidParameterException", INVALID_JSON),
            id="nan-is-not-json",
        ),
        pytest.param(
            '{"schemaVersion":2,"x":' + "[" * 50_000 + "]" * 50_000 + "}",
            ("InvalidParameterException", INVALID_JSON),
            id="deeply-nested",
        ),
        pytest.param(
            "",
            (
                "InvalidParameterException",
                "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
                "'must have length greater than or equal to 1'",
            ),
            id="empty",
        ),
        pytest.param(
            "\ud800",
            ("SerializationException", "Invalid UTF-8 value at 'imageManifest'"),
            id="lone-surrogate",
        ),
        pytest.param(
            '{"schemaVersion":2}',
            (
                "InvalidParameterException",
                "image manifest mediatype not provided in manifest or parameter",
            ),
            id="no-type-no-structure",
        ),
        pytest.param(
            '{"schemaVersion":2,"mediaType":"application/json","config":{}}',
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'unsupported manifest media type 'application/json''",
            ),
            id="unknown-media-type",
        ),
        pytest.param(
            json.dumps({"schemaVersion": 3, "mediaType": DOCKER, "config": {}, "layers": []}),
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'schemaVersion must be 2'",
            ),
            id="schema-version-3",
        ),
        pytest.param(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER,
                    "config": {"size": 1, "digest": "sha256:abc"},
                    "layers": [],
                }
            ),
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'config has an invalid digest'",
            ),
            id="short-config-digest",
        ),
        pytest.param(
            json.dumps({"schemaVersion": 2, "mediaType": DOCKER, "layers": []}),
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'config must be a descriptor object'",
            ),
            id="no-config",
        ),
        pytest.param(
            json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": DOCKER,
                    "config": {"size": -1, "digest": ABSENT},
                    "layers": [],
                }
            ),
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'config has an invalid size'",
            ),
            id="negative-size",
        ),
        pytest.param(
            json.dumps({"schemaVersion": 1, "fsLayers": []}),
            (
                "InvalidParameterException",
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'fsLayers must be a non-empty list'",
            ),
            id="schema1-no-layers",
        ),
    ],
)
def test_invalid_manifests(raw_ecr: Any, repo: str, text: str, error: tuple[str, str]) -> None:
    assert error_of(lambda: put(raw_ecr, repo, text, imageTag="v1")) == error
    assert stored(raw_ecr, repo) == []


def test_repository_must_exist(ecr: Any, repo_name: str) -> None:
    assert error_of(lambda: put(ecr, repo_name, "{}")) == (
        "InvalidParameterException",
        "image manifest mediatype not provided in manifest or parameter",
    ), "a request-level parameter error comes before the repository lookup"
    ecr.create_repository(repositoryName=repo_name)
    text = json.dumps(image_doc(ecr, repo_name))
    missing = f"{repo_name}-missing"
    assert error_of(lambda: put(ecr, missing, text)) == (
        "RepositoryNotFoundException",
        f"The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT}'",
    )


@pytest.mark.parametrize(
    ("own", "declared", "expected"),
    [
        pytest.param(DOCKER, DOCKER, DOCKER, id="docker-matching"),
        pytest.param(OCI, OCI, OCI, id="oci-matching"),
        pytest.param(None, OCI, OCI, id="oci-without-field-declared"),
        pytest.param(
            None,
            None,
            "image manifest mediatype not provided in manifest or parameter",
            id="oci-without-field-or-parameter",
        ),
        pytest.param(DOCKER, None, DOCKER, id="docker-from-field"),
        pytest.param(
            DOCKER,
            OCI,
            (
                "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
                f"'must match the manifest mediaType {DOCKER}'"
            ),
            id="declared-oci-field-docker",
        ),
        pytest.param(
            OCI,
            DOCKER,
            (
                "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
                f"'must match the manifest mediaType {OCI}'"
            ),
            id="declared-docker-field-oci",
        ),
        pytest.param(
            None,
            "application/vnd.example+json",
            (
                "Invalid parameter at 'ImageManifest' failed to satisfy constraint: "
                "'unsupported manifest media type 'application/vnd.example+json''"
            ),
            id="declared-unknown",
        ),
    ],
)
def test_image_manifest_media_type(
    ecr: Any, repo: str, own: str | None, declared: str | None, expected: str
) -> None:
    """imageManifestMediaType must agree with the manifest's own mediaType; a manifest without
    one takes the declared type, else is refused (ECR's message; /v2 sniffs instead)."""
    text = json.dumps(image_doc(ecr, repo, own))
    extra = {"imageManifestMediaType": declared} if declared else {}
    if not expected.startswith("application/"):
        assert error_of(lambda: put(ecr, repo, text, imageTag="v1", **extra)) == (
            "InvalidParameterException",
            expected,
        )
        assert stored(ecr, repo) == []
        return
    assert put(ecr, repo, text, imageTag="v1", **extra)["imageManifestMediaType"] == expected
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifestMediaType"] == expected
    assert got["images"][0]["imageManifest"] == text
    [detail] = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert detail["imageManifestMediaType"] == expected


def test_oci_index_without_media_type_takes_the_declared_one(ecr: Any, repo: str) -> None:
    child = json.dumps(image_doc(ecr, repo, OCI))
    put(ecr, repo, child)
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": OCI,
                    "size": len(child),
                    "digest": sha256(child),
                    "platform": {"architecture": "arm64", "os": "linux"},
                }
            ],
        }
    )
    assert error_of(lambda: put(ecr, repo, index, imageTag="multi")) == (
        "InvalidParameterException",
        "image manifest mediatype not provided in manifest or parameter",
    )
    image = put(ecr, repo, index, imageTag="multi", imageManifestMediaType=OCI_INDEX)
    assert image["imageManifestMediaType"] == OCI_INDEX
    assert image["imageId"] == {"imageDigest": sha256(index), "imageTag": "multi"}


def _schema1(client: Any, repo: str, *, signed: bool) -> str:
    blob = descriptor(client, repo, DOCKER_LAYER)["digest"]
    doc: dict[str, Any] = {
        "schemaVersion": 1,
        "name": repo,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": blob}, {"blobSum": blob}],
        "history": [{"v1Compatibility": "{}"}, {"v1Compatibility": "{}"}],
    }
    if signed:
        doc["signatures"] = [
            {"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "e30"},
        ]
    return json.dumps(doc, indent=3)


@pytest.mark.parametrize(
    ("signed", "declared", "expected"),
    [
        pytest.param(False, None, SCHEMA1, id="unsigned-sniffed"),
        pytest.param(True, None, SCHEMA1_SIGNED, id="signed-sniffed"),
        pytest.param(True, SCHEMA1, SCHEMA1, id="signed-declared-json"),
        pytest.param(False, SCHEMA1_SIGNED, SCHEMA1_SIGNED, id="unsigned-declared-prettyjws"),
    ],
)
def test_schema1_manifests(
    ecr: Any, repo: str, signed: bool, declared: str | None, expected: str
) -> None:
    """Schema 1 is stored verbatim (digest over the exact bytes, signatures included); the
    declared schema 1 type wins over the sniffed one."""
    text = _schema1(ecr, repo, signed=signed)
    extra = {"imageManifestMediaType": declared} if declared else {}
    image = put(ecr, repo, text, imageTag="old", **extra)
    assert image["imageManifestMediaType"] == expected
    assert image["imageId"] == {"imageDigest": sha256(text), "imageTag": "old"}
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "old"}], acceptedMediaTypes=[expected]
    )
    assert got["images"][0]["imageManifest"] == text
    assert got["images"][0]["imageManifestMediaType"] == expected


def test_put_into_another_registry(ecr: Any, repo_name: str) -> None:
    """Without credentials, registryId names any account's registry, blobs included."""
    other = "210987654321"
    ecr.create_repository(registryId=other, repositoryName=repo_name)
    layer = b"a layer of another account"
    digest = upload_blob(ecr, repo_name, layer, other)
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(layer), "digest": digest},
        "layers": [{"mediaType": DOCKER_LAYER, "size": len(layer), "digest": digest}],
    }
    text = json.dumps(doc)
    image = ecr.put_image(
        registryId=other, repositoryName=repo_name, imageManifest=text, imageTag="v1"
    )["image"]
    assert (image["registryId"], image["repositoryName"]) == (other, repo_name)
    assert error_of(lambda: put(ecr, repo_name, text, imageTag="v1")) == (
        "RepositoryNotFoundException",
        f"The repository with name '{repo_name}' does not exist in the registry with id "
        f"'{ACCOUNT}'",
    )
    doc["layers"].append({"mediaType": DOCKER_LAYER, "size": 3, "digest": ABSENT})
    assert error_of(
        lambda: ecr.put_image(
            registryId=other, repositoryName=repo_name, imageManifest=json.dumps(doc)
        )
    ) == (
        "LayersNotFoundException",
        f"Layers with digests '[{ABSENT}]' required for pushing image into repository with "
        f"name '{repo_name}' in the registry with id '{other}' do not exist",
    )
