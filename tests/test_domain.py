"""Pure domain code: digests, names and tags, manifest parsing, tag immutability."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from openecr.domain import mediatypes as mt
from openecr.domain import names
from openecr.domain.digest import ECR_DIGEST_PATTERN, Digest, is_well_formed
from openecr.domain.manifest import Descriptor, parse_manifest, sniff_media_type
from openecr.domain.model import ExclusionFilter, Repository, TagMutability
from openecr.errors import ManifestInvalid

HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2

# --- digests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "well_formed"),
    [
        ("sha256:" + HEX64, True),
        ("sha256:abc", True),  # ECR's regex has no length: well-formed, merely unknown
        ("sha256:ABC", True),
        ("a:0", True),
        ("sha-256+x.y_z:00", True),
        ("SHA256:ff", True),
        ("invalid_digest", False),
        ("sha256:invalid-digest", False),
        ("sha256:abcg", False),
        ("sha256:", False),
        (":abc", False),
        ("", False),
        ("sha256:abc\n", False),  # a full match: no trailing newline
        (" sha256:abc", False),
        ("sha256:abc ", False),
        ("sha256:abc:def", False),
        ("sha 256:abc", False),
        ("sha/256:abc", False),
    ],
)
def test_ecr_digest_well_formedness(value: str, well_formed: bool) -> None:
    assert is_well_formed(value) is well_formed


def test_ecr_digest_pattern_is_the_quoted_text() -> None:
    assert ECR_DIGEST_PATTERN == "[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+"


@pytest.mark.parametrize(
    ("value", "algorithm"),
    [("sha256:" + HEX64, "sha256"), ("sha512:" + HEX128, "sha512")],
)
def test_digest_parse_valid(value: str, algorithm: str) -> None:
    parsed = Digest.parse(value)
    assert parsed.algorithm == algorithm
    assert str(parsed) == value
    assert Digest.try_parse(value) == parsed


@pytest.mark.parametrize(
    "value",
    [
        "sha256:" + HEX64.upper(),
        "sha256:" + HEX64[:-1],
        "sha256:" + HEX64 + "0",
        "sha512:" + HEX64,
        "sha384:" + "0" * 96,
        "md5:" + "0" * 32,
        "sha256:" + HEX64 + "\n",
        "sha256-" + HEX64,
        HEX64,
        "",
    ],
)
def test_digest_parse_invalid(value: str) -> None:
    with pytest.raises(ValueError, match="invalid digest"):
        Digest.parse(value)
    assert Digest.try_parse(value) is None


def test_digest_of_bytes() -> None:
    assert str(Digest.of(b"")) == (
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert str(Digest.of(b"abc", "sha512")) == "sha512:" + hashlib.sha512(b"abc").hexdigest()
    hasher = Digest.parse("sha512:" + HEX128).hasher()
    assert hasher.name == "sha512"


# --- names, tags, registry ids ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("ab", True),
        ("a" * 256, True),
        ("0a", True),
        ("a/b", True),
        ("a.b", True),
        ("a_b", True),
        ("a__b", True),  # the current model pattern allows __ ...
        ("a--b", True),  # ... and runs of -
        ("a---b", True),
        ("team-a/app_x.y/z", True),
        ("a", False),
        ("a" * 257, False),
        ("A", False),
        ("Ab", False),
        ("a/", False),
        ("/a", False),
        ("a//b", False),
        ("a..b", False),
        ("a._b", False),
        ("a___b", False),
        ("-ab", False),
        ("ab-", False),
        ("a b", False),
        ("a:b", False),
        ("äb", False),
        ("ab\n", False),
    ],
)
def test_repository_names(value: str, valid: bool) -> None:
    assert names.is_repository_name(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("a", True),
        ("t" * 300, True),
        ("A-Z_a.z-0", True),
        ("-", True),
        (".", True),
        ("_", True),
        ("", False),
        ("t" * 301, False),
        ("a/b", False),
        ("a:b", False),
        ("a b", False),
        ("ü", False),
        ("a\n", False),
        ("a@b", False),
        ("a+b", False),
    ],
)
def test_tags(value: str, valid: bool) -> None:
    assert names.is_tag(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("123456789012", True),
        ("000000000000", True),
        ("12345678901", False),
        ("1234567890123", False),
        ("abcdefghijkl", False),
        ("12345678901\n", False),
        ("", False),
        ("١٢٣٤٥٦٧٨٩٠١٢", False),  # Arabic-Indic digits are not [0-9]
    ],
)
def test_registry_ids(value: str, valid: bool) -> None:
    assert names.is_registry_id(value) is valid


def test_message_patterns_are_ecr_texts() -> None:
    assert names.TAG_PATTERN == "[a-zA-Z0-9-_.]+"
    assert names.REGISTRY_ID_PATTERN == "[0-9]{12}"
    assert names.REPOSITORY_NAME_MESSAGE_PATTERN == (
        "(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"
    )


# --- manifests ----------------------------------------------------------------------------------

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def desc(digest: str, size: int, media_type: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        **({"mediaType": media_type} if media_type else {}),
        "size": size,
        "digest": digest,
        **extra,
    }


def image(media_type: str | None = mt.DOCKER_MANIFEST_V2, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"schemaVersion": 2}
    if media_type:
        doc["mediaType"] = media_type
    doc["config"] = desc(D1, 7, mt.DOCKER_CONFIG)
    doc["layers"] = [desc(D2, 100, mt.DOCKER_LAYER), desc(D3, 20, mt.DOCKER_LAYER)]
    doc.update(extra)
    return doc


def raw(doc: Any, **kwargs: Any) -> bytes:
    return json.dumps(doc, **kwargs).encode()


def test_parse_docker_manifest() -> None:
    data = raw(image(), indent=3)
    manifest = parse_manifest(data)
    assert manifest.raw == data
    assert manifest.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert manifest.media_type == mt.DOCKER_MANIFEST_V2
    assert manifest.config == Descriptor(mt.DOCKER_CONFIG, D1, 7)
    assert [b.digest for b in manifest.blobs] == [D1, D2, D3]  # config first
    assert manifest.size == 120  # layers only
    assert not manifest.is_index
    assert manifest.subject is None
    assert manifest.artifact_type is None


@pytest.mark.parametrize(
    ("doc", "declared", "expected"),
    [
        pytest.param(image(None), None, mt.OCI_MANIFEST, id="config-layers-sniffed-oci"),
        pytest.param(image(None), mt.OCI_MANIFEST, mt.OCI_MANIFEST, id="declared-oci"),
        pytest.param(image(None), mt.DOCKER_MANIFEST_V2, mt.DOCKER_MANIFEST_V2, id="declared"),
        pytest.param(image(mt.OCI_MANIFEST), None, mt.OCI_MANIFEST, id="oci-field"),
        pytest.param(image(mt.OCI_MANIFEST), mt.OCI_MANIFEST, mt.OCI_MANIFEST, id="both-agree"),
        pytest.param(
            {"schemaVersion": 2, "manifests": [desc(D1, 5, mt.OCI_MANIFEST)]},
            None,
            mt.OCI_INDEX,
            id="manifests-sniffed-oci-index",
        ),
        pytest.param(
            {
                "schemaVersion": 2,
                "mediaType": mt.DOCKER_MANIFEST_LIST,
                "manifests": [desc(D1, 5, mt.DOCKER_MANIFEST_V2)],
            },
            None,
            mt.DOCKER_MANIFEST_LIST,
            id="docker-list",
        ),
        pytest.param(
            {"schemaVersion": 1, "fsLayers": [{"blobSum": D1}]},
            None,
            mt.DOCKER_MANIFEST_V1,
            id="schema1-unsigned",
        ),
        pytest.param(
            {"schemaVersion": 1, "fsLayers": [{"blobSum": D1}], "signatures": []},
            None,
            mt.DOCKER_MANIFEST_V1_SIGNED,
            id="schema1-signed",
        ),
        pytest.param(
            {"schemaVersion": 1, "fsLayers": [{"blobSum": D1}], "signatures": []},
            mt.DOCKER_MANIFEST_V1,
            mt.DOCKER_MANIFEST_V1,
            id="schema1-declared-wins",
        ),
    ],
)
def test_media_type_resolution(doc: dict[str, Any], declared: str | None, expected: str) -> None:
    assert parse_manifest(raw(doc), declared).media_type == expected


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"mediaType": "x/y"}, "x/y"),
        ({"schemaVersion": 1}, mt.DOCKER_MANIFEST_V1),
        ({"schemaVersion": 1, "signatures": []}, mt.DOCKER_MANIFEST_V1_SIGNED),
        ({"manifests": []}, mt.OCI_INDEX),
        ({"layers": []}, mt.OCI_MANIFEST),
        ({"schemaVersion": 2}, None),
    ],
)
def test_sniff_media_type(doc: dict[str, Any], expected: str | None) -> None:
    assert sniff_media_type(doc) == expected


def _invalid(reason: str) -> str:
    return f"Invalid parameter at 'ImageManifest' failed to satisfy constraint: '{reason}'"


@pytest.mark.parametrize(
    ("data", "declared", "message"),
    [
        pytest.param(b"nope", None, _invalid("Invalid JSON syntax"), id="not-json"),
        pytest.param(b"\xff\xfe{}", None, _invalid("Invalid JSON syntax"), id="not-utf8"),
        pytest.param(b"[]", None, _invalid("Invalid JSON syntax"), id="array"),
        pytest.param(b"\xef\xbb\xbf{}", None, _invalid("Invalid JSON syntax"), id="utf8-bom"),
        pytest.param(
            '{"mediaType":"x"}'.encode("utf-16"), None, _invalid("Invalid JSON syntax"), id="utf16"
        ),
        pytest.param(
            b'{"a":"\xed\xa0\x80"}', None, _invalid("Invalid JSON syntax"), id="utf8-surrogate"
        ),
        pytest.param(b'{"a":NaN}', None, _invalid("Invalid JSON syntax"), id="nan"),
        pytest.param(b'{"a":-Infinity}', None, _invalid("Invalid JSON syntax"), id="infinity"),
        pytest.param(
            b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            None,
            _invalid("Invalid JSON syntax"),
            id="deep-nesting",
        ),
        pytest.param(b"", None, _invalid("Invalid JSON syntax"), id="empty"),
        pytest.param(
            raw({"schemaVersion": 2}),
            None,
            _invalid("unsupported manifest media type 'none'"),
            id="no-type",
        ),
        pytest.param(
            raw(image("text/plain")),
            None,
            _invalid("unsupported manifest media type 'text/plain'"),
            id="unknown-type",
        ),
        pytest.param(
            raw(image(mt.DOCKER_MANIFEST_V2)),
            mt.OCI_MANIFEST,
            "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: "
            f"'must match the manifest mediaType {mt.DOCKER_MANIFEST_V2}'",
            id="declared-mismatch",
        ),
        pytest.param(
            raw(image(mediaType=5)), None, _invalid("mediaType must be a string"), id="type-int"
        ),
        pytest.param(
            raw(image(schemaVersion=1)),
            None,
            _invalid("schemaVersion must be 2"),
            id="schema-version-1-with-v2-type",
        ),
        pytest.param(
            raw(image(config="x")), None, _invalid("config must be a descriptor object"), id="cfg"
        ),
        pytest.param(
            raw(image(layers={"a": 1})), None, _invalid("layers must be a list"), id="layers-dict"
        ),
        pytest.param(
            raw(image(layers=[desc("sha256:abc", 1)])),
            None,
            _invalid("layers[0] has an invalid digest"),
            id="short-digest",
        ),
        pytest.param(
            raw(image(layers=[desc(D2, True)])),
            None,
            _invalid("layers[0] has an invalid size"),
            id="bool-size",
        ),
        pytest.param(
            raw(image(layers=[desc(D2, 1.5)])),
            None,
            _invalid("layers[0] has an invalid size"),
            id="float-size",
        ),
        pytest.param(
            raw(image(layers=[{"size": 1, "digest": D2, "mediaType": 3}])),
            None,
            _invalid("layers[0] has an invalid mediaType"),
            id="media-type-int",
        ),
        pytest.param(
            raw({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {}}),
            None,
            _invalid("manifests must be a list"),
            id="index-manifests-dict",
        ),
        pytest.param(
            raw({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": [desc("x", 1)]}),
            None,
            _invalid("manifests[0] has an invalid digest"),
            id="index-child-digest",
        ),
        pytest.param(
            raw({"schemaVersion": 1, "fsLayers": [{"blobSum": "nope"}]}),
            None,
            _invalid("fsLayers[0] has an invalid blobSum"),
            id="schema1-blobsum",
        ),
        pytest.param(
            raw({"schemaVersion": 1, "fsLayers": ["x"]}),
            None,
            _invalid("fsLayers[0] has an invalid blobSum"),
            id="schema1-layer-not-object",
        ),
        pytest.param(
            raw({"schemaVersion": 1}),
            None,
            _invalid("fsLayers must be a non-empty list"),
            id="schema1-no-layers",
        ),
    ],
)
def test_invalid_manifests(data: bytes, declared: str | None, message: str) -> None:
    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(data, declared)
    assert caught.value.message == message


def test_foreign_layers_are_not_required_blobs() -> None:
    foreign = desc(D3, 9, mt.DOCKER_FOREIGN_LAYER, urls=["https://example.com/layer"])
    nondistributable = desc(
        D2, 9, "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", urls=["u"]
    )
    foreign_without_urls = desc("sha256:" + "4" * 64, 9, mt.DOCKER_FOREIGN_LAYER)
    doc = image(layers=[foreign, nondistributable, foreign_without_urls])
    manifest = parse_manifest(raw(doc))
    assert [layer.external for layer in manifest.layers] == [True, True, False]
    assert [b.digest for b in manifest.blobs] == [D1, "sha256:" + "4" * 64]
    assert manifest.size == 27


def test_index_children_subject_and_artifact_type() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_INDEX,
        "artifactType": "application/vnd.example.sbom",
        "subject": desc(D3, 10, mt.OCI_MANIFEST),
        "manifests": [desc(D1, 5, mt.OCI_MANIFEST), desc(D2, 6, mt.OCI_MANIFEST)],
    }
    manifest = parse_manifest(raw(doc))
    assert manifest.is_index
    assert [c.digest for c in manifest.children] == [D1, D2]
    assert manifest.blobs == ()
    assert manifest.subject == D3
    assert manifest.artifact_type == "application/vnd.example.sbom"


def test_artifact_type_from_a_custom_config() -> None:
    doc = image(mt.OCI_MANIFEST, config=desc(D1, 2, "application/vnd.example.config+json"))
    assert parse_manifest(raw(doc)).artifact_type == "application/vnd.example.config+json"
    assert parse_manifest(raw(image(mt.OCI_MANIFEST))).artifact_type is None


def test_schema1_blobs_are_deduplicated_in_order() -> None:
    doc = {"schemaVersion": 1, "fsLayers": [{"blobSum": D2}, {"blobSum": D1}, {"blobSum": D2}]}
    manifest = parse_manifest(raw(doc))
    assert [b.digest for b in manifest.blobs] == [D2, D1]
    assert manifest.config is None


def test_escaped_surrogates_and_unicode_stay_verbatim() -> None:
    """JSON escapes are text, not decoded characters: the bytes (and digest) stay as given."""
    blob = D1.encode()
    data = b'{"schemaVersion":1,"fsLayers":[{"blobSum":"' + blob + b'"}],"x":"\\ud800 \\u00e9"'
    data += b',"y":"' + "é 日本 🐳".encode() + b'"}'
    manifest = parse_manifest(data)
    assert manifest.raw == data
    assert manifest.digest == "sha256:" + hashlib.sha256(data).hexdigest()


def test_digest_covers_exact_bytes_even_for_equal_documents() -> None:
    doc = image()
    variants = [raw(doc), raw(doc, indent=2), raw(doc, sort_keys=True), raw(doc) + b"\n"]
    digests = {parse_manifest(v).digest for v in variants}
    assert len(digests) == len(variants)


# --- tag immutability ---------------------------------------------------------------------------


def repository(mode: TagMutability, *filters: str) -> Repository:
    return Repository(
        id=1,
        registry_id="123456789012",
        name="r",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        tag_mutability=mode,
        exclusion_filters=tuple(ExclusionFilter(f) for f in filters),
    )


M, IM = TagMutability.MUTABLE, TagMutability.IMMUTABLE
IWE, MWE = TagMutability.IMMUTABLE_WITH_EXCLUSION, TagMutability.MUTABLE_WITH_EXCLUSION


@pytest.mark.parametrize(
    ("mode", "filters", "tag", "immutable"),
    [
        (M, (), "latest", False),
        (IM, (), "latest", True),
        (IWE, ("latest",), "latest", False),
        (IWE, ("latest",), "latest-1", True),
        (IWE, ("dev-*",), "dev-", False),
        (IWE, ("dev-*",), "dev-abc", False),
        (IWE, ("dev-*",), "dev", True),
        (IWE, ("dev-*",), "DEV-1", True),  # case-sensitive
        (IWE, ("*-rc*", "nightly"), "1.0-rc2", False),
        (IWE, ("*-rc*", "nightly"), "nightly", False),
        (IWE, ("*-rc*", "nightly"), "1.0", True),
        (IWE, ("*",), "anything", False),
        (IWE, ("a*b*c",), "aXbYc", False),
        (IWE, ("a*b*c",), "acb", True),
        (IWE, ("v1.0",), "v1x0", True),  # "." is literal
        (MWE, ("release-*",), "release-1", True),
        (MWE, ("release-*",), "latest", False),
        (MWE, ("*",), "x", True),
        (MWE, ("v*.*", "prod"), "v1.2", True),
        (MWE, ("v*.*", "prod"), "v1", False),
        (MWE, ("v*.*", "prod"), "prod", True),
        (M, ("ignored",), "ignored", False),  # filters only matter in the *_WITH_EXCLUSION modes
        (IM, ("ignored",), "ignored", True),
    ],
)
def test_tag_is_immutable(
    mode: TagMutability, filters: tuple[str, ...], tag: str, immutable: bool
) -> None:
    assert repository(mode, *filters).tag_is_immutable(tag) is immutable


def test_exclusion_filter_defaults_to_wildcard() -> None:
    assert ExclusionFilter("x*").filter_type == "WILDCARD"
    assert ExclusionFilter("x*").matches("xyz")
    assert not ExclusionFilter("x*").matches("axyz")
