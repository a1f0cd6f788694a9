"""Manifest format conversion (spec 3.1 and 3.2) through both APIs of a running server.

The table crosses, through both APIs (BatchGetImage and ``GET /v2/<name>/manifests/<ref>``),
every stored format (Docker v2 schema 2, OCI, schema 1 unsigned and signed,
Docker manifest list, OCI index) with the accepted-type lists clients send (omitted, each type
alone, docker's and containerd's full lists, wildcards) and the three ways to name an image (tag,
digest, both). By digest, or with both, the stored manifest is served (spec 3.1), only signed
when it is an unsigned schema 1 and the client takes just the signed form (same digest). Every
converted manifest is checked by real parsers: OCI and Docker schema 2 against their JSON schemas
(``tests/schemas``) with ``jsonschema``, schema 1 signatures with the ``jwcrypto`` JWS library; the
blobs it names must be present (BatchCheckLayerAvailability), and ``imageId.imageDigest`` stays
the stored image's digest.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jsonschema import Draft4Validator
from jwcrypto import jwk, jws
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from conftest import ACCOUNT, Server, ServerFactory, make_image, upload_blob

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
S1 = "application/vnd.docker.distribution.manifest.v1+json"
S1S = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EMPTY_TAR = "sha256:a3ed95caeb02ffe68cdd9fd84406680ae93d633cb16422d00e8a7c22955b46d4"
NOT_FOUND = "Requested image not found"
SCHEMAS = Path(__file__).parent / "schemas"

# --- JSON schemas -------------------------------------------------------------------------------


def _validator(folder: str, name: str) -> Draft4Validator:
    """A draft-4 validator for ``schemas/<folder>/<name>``; ``$ref``s resolve by file name."""

    def retrieve(uri: str) -> Resource[Any]:
        path = SCHEMAS / folder / uri.rsplit("/", 1)[-1]
        return Resource.from_contents(json.loads(path.read_text()), default_specification=DRAFT4)

    schema = json.loads((SCHEMAS / folder / name).read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema, registry=Registry(retrieve=retrieve))


VALIDATORS = {
    OCI: _validator("oci", "image-manifest-schema.json"),
    INDEX: _validator("oci", "image-index-schema.json"),
    DOCKER: _validator("docker", "image-manifest-v2-2.json"),
    LIST: _validator("docker", "manifest-list-v2-2.json"),
}


def assert_valid(doc: Any, media_type: str) -> None:
    errors = [e.message for e in VALIDATORS[media_type].iter_errors(doc)]
    assert errors == [], f"{media_type} fails its JSON schema: {errors}"


# --- schema 1 signatures, read the way libtrust writes them --------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def libtrust_key_id(key: jwk.JWK) -> str:
    """libtrust's key id: sha256 of the DER public key, 240 bits in base32, groups of four."""
    public = key.get_op_key("verify")
    assert isinstance(public, ec.EllipticCurvePublicKey)
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    text = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(text[i : i + 4] for i in range(0, len(text), 4))


def verify_schema1(signed: bytes) -> tuple[bytes, list[dict[str, Any]]]:
    """Verify every signature of a pretty-JWS schema 1 manifest with jwcrypto; return the signed
    payload (the manifest without signatures) and the signers' JWKs."""
    doc = json.loads(signed)
    signatures = doc["signatures"]
    assert signatures, "no signatures"
    payload = None
    keys = []
    for sig in signatures:
        header = json.loads(b64url_decode(sig["protected"]))
        cut, tail = header["formatLength"], b64url_decode(header["formatTail"])
        this = signed[:cut] + tail
        assert payload in (None, this), "signatures disagree on the payload"
        payload = this
        key = jwk.JWK(**sig["header"]["jwk"])
        assert key.get("kty") == "EC" and key.get("crv") == "P-256"
        token = jws.JWS()
        token.deserialize(
            json.dumps(
                {
                    "payload": b64url(this),
                    "protected": sig["protected"],
                    "header": sig["header"],
                    "signature": sig["signature"],
                }
            )
        )
        token.verify(key, alg="ES256")  # raises InvalidJWSSignature
        if "kid" in sig["header"]["jwk"]:  # libtrust writes one; quay, for one, does not
            assert sig["header"]["jwk"]["kid"] == libtrust_key_id(key)
        keys.append(sig["header"]["jwk"])
    assert payload is not None
    assert json.loads(payload) == {k: v for k, v in doc.items() if k != "signatures"}
    return payload, keys


def libtrust_sign(payload: bytes, key: jwk.JWK) -> bytes:
    """Sign a schema 1 manifest in libtrust's pretty form with jwcrypto (for stored fixtures)."""
    cut = len(payload.rstrip()[:-1].rstrip())
    protected = {
        "formatLength": cut,
        "formatTail": b64url(payload[cut:]),
        "time": "2016-03-01T10:00:00Z",
    }
    token = jws.JWS(payload)
    token.add_signature(
        key,
        alg=None,
        protected=json.dumps(protected),
        header=json.dumps({"jwk": key.export_public(as_dict=True), "alg": "ES256"}),
    )
    flat = json.loads(token.serialize())
    listed = json.dumps(
        [
            {
                "header": flat["header"],
                "signature": flat["signature"],
                "protected": flat["protected"],
            }
        ],
        indent=3,
    ).replace("\n", "\n   ")
    return payload[:cut] + f',\n   "signatures": {listed}\n}}'.encode()


# --- building images ----------------------------------------------------------------------------


def layer(files: Mapping[str, bytes]) -> tuple[bytes, str]:
    """A reproducible gzipped tar of ``files`` and its diff id (sha256 of the plain tar)."""
    plain = io.BytesIO()
    with tarfile.open(fileobj=plain, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = plain.getvalue()
    return gzip.compress(raw, mtime=0), "sha256:" + hashlib.sha256(raw).hexdigest()


def realistic_config(diff_ids: Sequence[str], seed: str) -> dict[str, Any]:
    """An image config as ``docker build`` writes it: history with empty layers (also the last
    entry), one non-empty entry per layer."""
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-05-01T10:00:05.123456789Z",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"],
            "WorkingDir": "/app",
            "Labels": {"seed": seed},
        },
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [
            {
                "created": "2024-04-01T00:00:00.5Z",
                "created_by": "/bin/sh -c #(nop) ADD file:5b6d in / ",
            },
            {
                "created": "2024-04-01T00:00:01Z",
                "created_by": '/bin/sh -c #(nop)  CMD ["/bin/sh"]',
                "empty_layer": True,
            },
            {
                "created": "2024-05-01T10:00:03Z",
                "created_by": "RUN /bin/sh -c apk add --no-cache curl && rm -rf /tmp/* # buildkit",
                "comment": "buildkit.dockerfile.v0",
            },
            {
                "created": "2024-05-01T10:00:04Z",
                "created_by": "COPY app /app # buildkit",
                "comment": "buildkit.dockerfile.v0",
                "author": "ops@example.com",
            },
            {
                "created": "2024-05-01T10:00:05Z",
                "created_by": "WORKDIR /app",
                "comment": "buildkit.dockerfile.v0",
                "empty_layer": True,
            },
        ],
    }


def docker_image(client: Any, repo: str, seed: str) -> tuple[bytes, dict[str, Any]]:
    """A schema 2 manifest with three real layers and a realistic config (both uploaded)."""
    layers = [
        layer({"etc/os-release": f"ID=test {seed}".encode()}),
        layer({"usr/bin/curl": b"\x7fELF curl " + seed.encode()}),
        layer({"app/main.py": f"print({seed!r})".encode()}),
    ]
    config = realistic_config([diff for _, diff in layers], seed)
    config_raw = json.dumps(config).encode()
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER,
        "config": {
            "mediaType": DOCKER_CONFIG,
            "size": len(config_raw),
            "digest": upload_blob(client, repo, config_raw),
        },
        "layers": [
            {"mediaType": DOCKER_LAYER, "size": len(gz), "digest": upload_blob(client, repo, gz)}
            for gz, _ in layers
        ],
    }
    return json.dumps(manifest, indent=3).encode(), config


def schema1_image(client: Any, repo: str, tag: str) -> bytes:
    """An unsigned schema 1 manifest, as old docker pushed them, over two uploaded layers."""
    base, _ = layer({"etc/hostname": tag.encode()})
    top, _ = layer({"srv/" + tag: b"data"})
    blobs = [upload_blob(client, repo, base), upload_blob(client, repo, top)]
    ids = [hashlib.sha256(f"{tag}{i}".encode()).hexdigest() for i in range(2)]
    history = [
        {
            "id": ids[1],
            "parent": ids[0],
            "created": "2015-06-01T12:00:01Z",
            "container_config": {"Cmd": ["/bin/sh -c echo data > /srv/" + tag]},
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/bin/sh"]},
        },
        {
            "id": ids[0],
            "created": "2015-06-01T12:00:00Z",
            "container_config": {"Cmd": ["/bin/sh -c #(nop) ADD file:1 in /"]},
        },
    ]
    manifest = {
        "schemaVersion": 1,
        "name": repo,
        "tag": tag,
        "architecture": "amd64",
        "fsLayers": [{"blobSum": blobs[1]}, {"blobSum": blobs[0]}],
        "history": [{"v1Compatibility": json.dumps(h)} for h in history],
    }
    return json.dumps(manifest, indent=3).encode()


def index_of(client: Any, repo: str, media_type: str, seeds: Sequence[str]) -> bytes:
    """A manifest list (or OCI index) over untagged children of the matching manifest type."""
    child_type = DOCKER if media_type == LIST else OCI
    entries = []
    for arch, seed in zip(("amd64", "arm64"), seeds, strict=True):
        raw = make_image(client, repo, seed=seed, media_type=child_type)
        digest = client.put_image(
            repositoryName=repo, imageManifest=raw.decode(), imageManifestMediaType=child_type
        )["image"]["imageId"]["imageDigest"]
        entries.append(
            {
                "mediaType": child_type,
                "size": len(raw),
                "digest": digest,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    return json.dumps({"schemaVersion": 2, "mediaType": media_type, "manifests": entries}).encode()


def oci_variant(client: Any, repo: str, kind: str) -> bytes:
    """OCI manifests Docker cannot express, or can only in part."""
    if kind == "oci-artifact":  # a Helm chart: an artifact, not an image
        config = b'{"name": "chart", "version": "1.0.0"}'
        chart = b"chart tarball"
        return json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI,
                "config": {
                    "mediaType": "application/vnd.cncf.helm.config.v1+json",
                    "size": len(config),
                    "digest": upload_blob(client, repo, config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                        "size": len(chart),
                        "digest": upload_blob(client, repo, chart),
                    }
                ],
            }
        ).encode()
    doc = json.loads(make_image(client, repo, seed=kind, media_type=OCI))
    if kind == "oci-zstd":
        doc["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar+zstd"
    else:  # an image that names a subject and carries annotations
        doc["subject"] = {"mediaType": OCI, "size": 2, "digest": "sha256:" + "1" * 64}
        doc["annotations"] = {"org.opencontainers.image.source": "https://example.com/app"}
        doc["layers"][0]["annotations"] = {"org.example.layer": "base"}
    return json.dumps(doc).encode()


# --- the stored images --------------------------------------------------------------------------


@dataclass
class Stored:
    tag: str
    digest: str
    manifest: bytes
    media_type: str
    config: dict[str, Any] | None = None


@dataclass
class World:
    repo: str
    images: dict[str, Stored] = field(default_factory=dict)


STORED = ("schema2", "oci", "schema1", "schema1-signed", "list", "index")


def put(client: Any, world: World, key: str, raw: bytes, media_type: str, **extra: Any) -> None:
    tag = key
    result = client.put_image(
        repositoryName=world.repo,
        imageManifest=raw.decode(),
        imageManifestMediaType=media_type,
        imageTag=tag,
    )
    digest = result["image"]["imageId"]["imageDigest"]
    assert digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    world.images[key] = Stored(tag, digest, raw, media_type, **extra)


@pytest.fixture(scope="module")
def world(server: Server) -> World:
    client = server.client()
    repo = f"conversion/{os.urandom(5).hex()}"
    client.create_repository(repositoryName=repo)
    found = World(repo)
    raw, config = docker_image(client, repo, "s2")
    put(client, found, "schema2", raw, DOCKER, config=config)
    put(client, found, "oci", make_image(client, repo, seed="oci", media_type=OCI, layers=2), OCI)
    put(client, found, "schema1", schema1_image(client, repo, "schema1"), S1)
    key = jwk.JWK.generate(kty="EC", crv="P-256")
    signed = libtrust_sign(schema1_image(client, repo, "schema1-signed"), key)
    put(client, found, "schema1-signed", signed, S1S)
    put(client, found, "list", index_of(client, repo, LIST, ["l1", "l2"]), LIST)
    put(client, found, "index", index_of(client, repo, INDEX, ["i1", "i2"]), INDEX)
    for kind in ("oci-artifact", "oci-zstd", "oci-subject"):
        put(client, found, kind, oci_variant(client, repo, kind), OCI)
    plain = make_image(client, repo, seed="plain", layers=2)  # its config has no history
    put(client, found, "schema2-no-history", plain, DOCKER)
    return found


# --- checks -------------------------------------------------------------------------------------


def assert_blobs_present(client: Any, repo: str, digests: Sequence[str]) -> None:
    got = client.batch_check_layer_availability(repositoryName=repo, layerDigests=list(digests))
    assert got["failures"] == []
    assert {
        x["layerDigest"] for x in got["layers"] if x["layerAvailability"] == "AVAILABLE"
    } == set(digests)


def blobs_of(doc: Mapping[str, Any]) -> list[tuple[str, int]]:
    return [(d["digest"], d["size"]) for d in [doc["config"], *doc["layers"]]]


def check_rewritten(client: Any, world: World, stored: Stored, served: bytes, kind: str) -> None:
    """A Docker schema 2 <-> OCI rewrite: valid, same blobs (config digest kept), types mapped."""
    doc = json.loads(served)
    assert_valid(doc, kind)
    original = json.loads(stored.manifest)
    assert doc["mediaType"] == kind
    assert blobs_of(doc) == blobs_of(original)
    assert doc["config"]["mediaType"] == (OCI_CONFIG if kind == OCI else DOCKER_CONFIG)
    assert {x["mediaType"] for x in doc["layers"]} == {OCI_LAYER if kind == OCI else DOCKER_LAYER}
    assert_blobs_present(client, world.repo, [d for d, _ in blobs_of(doc)])


def v1_entries(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(h["v1Compatibility"]) for h in doc["history"]]


def check_schema1_from_config(
    client: Any, world: World, stored: Stored, payload: bytes, tag: str
) -> None:
    """A schema 1 manifest built from a schema 2 image and its config, entry by entry."""
    doc = json.loads(payload)
    config = stored.config
    assert config is not None
    assert set(doc) == {"schemaVersion", "name", "tag", "architecture", "fsLayers", "history"}
    assert (doc["schemaVersion"], doc["name"], doc["tag"]) == (1, world.repo, tag)
    assert doc["architecture"] == config["architecture"]
    history = config["history"]
    assert len(doc["fsLayers"]) == len(doc["history"]) == len(history)
    entries = v1_entries(doc)[::-1]  # oldest first, like the config's history
    blobsums = [x["blobSum"] for x in doc["fsLayers"]][::-1]
    layers = iter(d for d, _ in blobs_of(json.loads(stored.manifest))[1:])
    for i, (entry, blobsum, step) in enumerate(zip(entries, blobsums, history, strict=True)):
        assert blobsum == (EMPTY_TAR if step.get("empty_layer") else next(layers))
        assert entry.get("throwaway", False) is bool(step.get("empty_layer"))
        assert entry.get("parent") == (entries[i - 1]["id"] if i else None)
        assert len(entry["id"]) == 64 and int(entry["id"], 16) >= 0
        if i < len(history) - 1:
            assert entry["container_config"] == {"Cmd": [step["created_by"]]}
            assert entry["created"] == step["created"]
            assert entry.get("comment") == step.get("comment")
            assert entry.get("author") == step.get("author")
    assert next(layers, None) is None
    assert len({e["id"] for e in entries}) == len(entries)
    top = entries[-1]
    assert not {"rootfs", "history"} & set(top)
    assert {k: top[k] for k in ("architecture", "os", "created", "config")} == {
        k: config[k] for k in ("architecture", "os", "created", "config")
    }
    assert_blobs_present(client, world.repo, sorted(set(blobsums)))


def check_served(
    client: Any, world: World, stored: Stored, served: bytes, media_type: str, tag: str | None
) -> None:
    """What a conversion served, checked by real parsers and against the stored image."""
    if media_type == stored.media_type:
        assert served == stored.manifest  # served as stored: byte-exact
        if media_type in VALIDATORS:
            assert_valid(json.loads(served), media_type)
        return
    # by digest nothing is translated; an unsigned schema 1 is only signed (same digest)
    assert tag is not None or (stored.media_type, media_type) == (S1, S1S)
    if media_type in (OCI, DOCKER):
        check_rewritten(client, world, stored, served, media_type)
        return
    assert media_type in (S1, S1S)
    if media_type == S1S:
        payload, _ = verify_schema1(served)
    else:
        assert "signatures" not in json.loads(served)
        payload = served
    if stored.media_type in (S1, S1S):
        # the two schema 1 forms share the payload: the stored one's, byte for byte
        original = (
            stored.manifest if stored.media_type == S1 else verify_schema1(stored.manifest)[0]
        )
        assert payload == original
        return
    check_schema1_from_config(client, world, stored, payload, tag)


# --- the table ----------------------------------------------------------------------------------

ACCEPTED: dict[str, list[str] | None] = {
    "omitted": None,
    "schema2": [DOCKER],
    "oci": [OCI],
    "schema1": [S1],
    "schema1-signed": [S1S],
    "list": [LIST],
    "index": [INDEX],
    # docker's Accept list, passed through by ECR (CloudTrail sample, spec 1.1)
    "docker-pull": ["application/json", OCI, INDEX, DOCKER, LIST, S1S],
    # amazon-ecr-containerd-resolver's supportedImageMediaTypes (spec 1.1)
    "containerd-resolver": [INDEX, OCI, DOCKER, LIST, S1S],
    "docker-before-oci": [DOCKER, LIST, S1S, "application/json"],
    "oci-only": [OCI, INDEX],
    "both-schema1": [S1, S1S],
    "any": ["*/*"],
    "application-any": ["application/*"],
    "legacy-json": ["application/json"],
    "unknown": ["bogus/type"],
}

# What a pull by tag serves (None: failure ImageNotFound), per stored format in STORED order.
BY_TAG: dict[str, tuple[str | None, ...]] = {
    #                      schema2  oci     schema1 s1-signed list  index
    "omitted": (DOCKER, OCI, S1, S1S, LIST, INDEX),
    "schema2": (DOCKER, DOCKER, None, None, None, None),
    "oci": (OCI, OCI, None, None, None, None),
    "schema1": (S1, None, S1, S1, None, None),
    "schema1-signed": (S1S, None, S1S, S1S, None, None),
    "list": (None, None, None, None, LIST, None),
    "index": (None, None, None, None, None, INDEX),
    "docker-pull": (DOCKER, OCI, S1S, S1S, LIST, INDEX),
    "containerd-resolver": (DOCKER, OCI, S1S, S1S, LIST, INDEX),
    "docker-before-oci": (DOCKER, DOCKER, S1S, S1S, LIST, None),
    "oci-only": (OCI, OCI, None, None, None, INDEX),
    "both-schema1": (S1S, None, S1, S1S, None, None),
    "any": (DOCKER, OCI, S1, S1S, LIST, INDEX),
    "application-any": (DOCKER, OCI, S1, S1S, LIST, INDEX),
    "legacy-json": (S1S, None, S1S, S1S, None, None),
    "unknown": (None, None, None, None, None, None),
}
assert set(BY_TAG) == set(ACCEPTED)

# By digest (or tag and digest) the stored form is served, except that an unsigned schema 1
# manifest is signed for these lists, which take signed schema 1 but not the unsigned form: the
# digest (over the payload) stays the same, and docker fetches by digest after a HEAD by tag.
SIGNED_BY_DIGEST = {"schema1-signed", "docker-pull", "containerd-resolver", "docker-before-oci"}
SIGNED_BY_DIGEST |= {"legacy-json"}


def expected_type(stored_as: str, accepted: str, by: str) -> str | None:
    if by == "tag":
        return BY_TAG[accepted][STORED.index(stored_as)]
    if stored_as == "schema1" and accepted in SIGNED_BY_DIGEST:
        return S1S
    return BY_TAG["omitted"][STORED.index(stored_as)]


CASES = [
    pytest.param(stored, accepted, by, id=f"{stored}-{accepted}-by-{by}")
    for stored in STORED
    for accepted in ACCEPTED
    for by in ("tag", "digest", "tag+digest")
]


def image_id(stored: Stored, by: str) -> dict[str, str]:
    return {
        "tag": {"imageTag": stored.tag},
        "digest": {"imageDigest": stored.digest},
        "tag+digest": {"imageTag": stored.tag, "imageDigest": stored.digest},
    }[by]


def get(client: Any, world: World, ids: list[dict[str, str]], accepted: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"repositoryName": world.repo, "imageIds": ids}
    if accepted is not None:
        params["acceptedMediaTypes"] = accepted
    got: dict[str, Any] = client.batch_get_image(**params)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    return got


@pytest.mark.parametrize(("stored_as", "accepted", "by"), CASES)
def test_batch_get_image_conversion_table(
    world: World, ecr: Any, stored_as: str, accepted: str, by: str
) -> None:
    stored = world.images[stored_as]
    requested = image_id(stored, by)
    got = get(ecr, world, [requested], ACCEPTED[accepted])
    # spec 3.1: only a pull by tag alone converts; by digest (or both) the stored form is served
    expected = expected_type(stored_as, accepted, by)
    if expected is None:
        assert got["images"] == []
        assert got["failures"] == [
            {"imageId": requested, "failureCode": "ImageNotFound", "failureReason": NOT_FOUND}
        ]
        return
    assert got["failures"] == []
    [image] = got["images"]
    assert image["registryId"] == ACCOUNT
    assert image["repositoryName"] == world.repo
    assert image["imageId"] == {"imageDigest": stored.digest, "imageTag": stored.tag}
    assert image["imageManifestMediaType"] == expected
    served = image["imageManifest"].encode()
    check_served(ecr, world, stored, served, expected, stored.tag if by == "tag" else None)


V2_CASES = [
    pytest.param(stored, accepted, by, id=f"{stored}-{accepted}-by-{by}")
    for stored in STORED
    for accepted in ACCEPTED
    for by in ("tag", "digest")  # a /v2 reference is one or the other
]


@pytest.mark.parametrize(("stored_as", "accepted", "by"), V2_CASES)
def test_v2_manifest_conversion_table(
    server: Server, world: World, ecr: Any, stored_as: str, accepted: str, by: str
) -> None:
    """The same table through ``GET /v2/<name>/manifests/<reference>`` with an ``Accept``
    header: the same negotiation, the served type as ``Content-Type``, and as
    ``Docker-Content-Digest`` the digest of what is served (for signed schema 1, of its
    payload), the stored digest when served as stored."""
    stored = world.images[stored_as]
    reference = stored.tag if by == "tag" else stored.digest
    listed = ACCEPTED[accepted]
    headers = {} if listed is None else {"Accept": ", ".join(listed)}
    response = httpx.get(
        f"{server.endpoint}/v2/{world.repo}/manifests/{reference}", headers=headers
    )
    expected = expected_type(stored_as, accepted, by)
    if expected is None:
        assert response.status_code == 404
        [error] = response.json()["errors"]
        assert (error["code"], error["message"]) == ("MANIFEST_UNKNOWN", NOT_FOUND)
        return
    assert response.status_code == 200
    assert response.headers["content-type"] == expected
    served = response.content
    check_served(ecr, world, stored, served, expected, stored.tag if by == "tag" else None)
    if expected == stored.media_type:
        digest = stored.digest
    else:
        body = verify_schema1(served)[0] if expected == S1S else served
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert response.headers["docker-content-digest"] == digest


# --- decisions for cases the spec leaves open -----------------------------------------------------


@pytest.mark.parametrize(
    ("stored_as", "accepted", "expected"),
    [
        pytest.param("oci-artifact", [DOCKER], None, id="artifact-as-schema2-not-found"),
        pytest.param("oci-artifact", ACCEPTED["docker-pull"], OCI, id="artifact-docker-pull"),
        pytest.param("oci-zstd", [DOCKER], None, id="zstd-layer-as-schema2-not-found"),
        pytest.param("oci-zstd", [DOCKER, OCI], OCI, id="zstd-stored-form-accepted"),
        pytest.param("oci-subject", [DOCKER], DOCKER, id="subject-and-annotations-dropped"),
        pytest.param("schema2-no-history", [S1], S1, id="no-history-synthesised"),
        pytest.param("schema2-no-history", [S1S], S1S, id="no-history-synthesised-signed"),
    ],
)
def test_open_cases(
    world: World, ecr: Any, stored_as: str, accepted: list[str], expected: str | None
) -> None:
    stored = world.images[stored_as]
    got = get(ecr, world, [{"imageTag": stored.tag}], accepted)
    if expected is None:
        assert got["images"] == []
        assert got["failures"] == [
            {
                "imageId": {"imageTag": stored.tag},
                "failureCode": "ImageNotFound",
                "failureReason": NOT_FOUND,
            }
        ]
        return
    [image] = got["images"]
    assert image["imageId"] == {"imageDigest": stored.digest, "imageTag": stored.tag}
    assert image["imageManifestMediaType"] == expected
    served = image["imageManifest"].encode()
    if expected == stored.media_type:
        assert served == stored.manifest
    elif expected == DOCKER:
        doc = json.loads(served)
        assert_valid(doc, DOCKER)  # strict: no subject, annotations or artifactType
        assert blobs_of(doc) == blobs_of(json.loads(stored.manifest))
    else:
        payload = verify_schema1(served)[0] if expected == S1S else served
        doc = json.loads(payload)
        layers = [d for d, _ in blobs_of(json.loads(stored.manifest))[1:]]
        assert [x["blobSum"] for x in doc["fsLayers"]] == layers[::-1]
        entries = v1_entries(doc)
        assert not any(e.get("throwaway") for e in entries)
        assert [e.get("parent") for e in entries] == [e["id"] for e in entries[1:]] + [None]
        assert_blobs_present(ecr, world.repo, layers)


def test_batch_keeps_request_order_across_conversions(world: World, ecr: Any) -> None:
    """One call, mixed outcomes: each id negotiated on its own, results in request order."""
    names = ("schema2", "oci", "list", "schema1")
    got = get(ecr, world, [{"imageTag": world.images[n].tag} for n in names], [OCI])
    assert [(i["imageId"]["imageTag"], i["imageManifestMediaType"]) for i in got["images"]] == [
        ("schema2", OCI),
        ("oci", OCI),
    ]
    assert [f["imageId"] for f in got["failures"]] == [
        {"imageTag": "list"},
        {"imageTag": "schema1"},
    ]


def test_signed_schema1_digest_is_over_the_unsigned_payload(world: World, ecr: Any) -> None:
    """The signed form's payload is exactly the unsigned form, so both have one digest."""
    ids = [{"imageTag": "schema2"}]
    unsigned = get(ecr, world, ids, [S1])["images"][0]["imageManifest"].encode()
    first = get(ecr, world, ids, [S1S])["images"][0]["imageManifest"].encode()
    second = get(ecr, world, ids, [S1S])["images"][0]["imageManifest"].encode()
    (payload1, keys1), (payload2, keys2) = verify_schema1(first), verify_schema1(second)
    assert payload1 == payload2 == unsigned
    assert keys1 == keys2  # one registry key
    assert [set(k) for k in keys1] == [{"crv", "kid", "kty", "x", "y"}]  # libtrust's JWK
    tampered = first.replace(b'"tag": "schema2"', b'"tag": "latest"', 1)
    assert tampered != first
    with pytest.raises(jws.InvalidJWSSignature):
        verify_schema1(tampered)


def test_empty_layer_blob_is_the_gzipped_empty_tar(server: Server, world: World, ecr: Any) -> None:
    """Schema 1 names a blob for history entries without a layer; it exists and downloads."""
    get(ecr, world, [{"imageTag": "schema2"}], [S1])
    url = ecr.get_download_url_for_layer(repositoryName=world.repo, layerDigest=EMPTY_TAR)
    assert url["layerDigest"] == EMPTY_TAR
    blob = httpx.get(url["downloadUrl"]).content
    assert "sha256:" + hashlib.sha256(blob).hexdigest() == EMPTY_TAR
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        assert tar.getmembers() == []


def test_signing_key_is_kept_in_the_data_dir(make_server: ServerFactory) -> None:
    """The registry key is created once (mode 0600) and survives restarts."""
    srv = make_server()
    client = srv.client()
    repo = "keep/key"
    client.create_repository(repositoryName=repo)
    raw, _ = docker_image(client, repo, "key")
    client.put_image(repositoryName=repo, imageManifest=raw.decode(), imageTag="v1")

    def signer() -> list[dict[str, Any]]:
        got = client.batch_get_image(
            repositoryName=repo, imageIds=[{"imageTag": "v1"}], acceptedMediaTypes=[S1S]
        )
        return verify_schema1(got["images"][0]["imageManifest"].encode())[1]

    before = signer()
    key_file = srv.data_dir / "schema1-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    pem = key_file.read_bytes()
    srv.restart()
    assert signer() == before
    assert key_file.read_bytes() == pem
