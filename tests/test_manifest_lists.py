"""Manifest lists and OCI image indexes through both APIs (boto3 on the ECR API, httpx on /v2/).

Put and get (byte for byte, by tag and by digest), children that must be images of the same
repository (unless the server is lenient), what ListImages / DescribeImages / BatchGetImage
report for a list, and deletion: a child a stored list references is refused
(``ImageReferencedByManifestList``) until the list goes, nested indexes included.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import httpx
import pytest
from botocore.exceptions import ClientError

from conftest import ACCOUNT, Server, ServerFactory, upload_blob

DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# what docker 20.10+ sends when it pulls (spec 1.1)
DOCKER_ACCEPT = f"application/json, {OCI}, {OCI_INDEX}, {DOCKER}, {DOCKER_LIST}"
LIST_TYPES = {"list": DOCKER_LIST, "index": OCI_INDEX}
CHILD_TYPES = {DOCKER_LIST: DOCKER, OCI_INDEX: OCI}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referenced(*parents: str) -> str:
    return f"Requested image referenced by manifest list: [{', '.join(sorted(parents))}]"


def not_found_children(repo: str, *digests: str) -> str:
    return (
        f"The following referenced images were not found in the repository with name '{repo}' "
        f"in the registry with id '{ACCOUNT}': [{', '.join(digests)}]"
    )


# --- pushing through either API ------------------------------------------------------------------


class Api(Protocol):
    name: str

    def push_blob(self, repo: str, data: bytes) -> str: ...

    def push(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> str:
        """Store a manifest (tagged or not); return its digest."""
        ...

    def refuse(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> tuple[str, str]:
        """Push a manifest that must be refused; return (error code, message)."""
        ...


class EcrApi:
    name = "ecr"

    def __init__(self, client: Any) -> None:
        self.client = client

    def push_blob(self, repo: str, data: bytes) -> str:
        return upload_blob(self.client, repo, data)

    def _put(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> Any:
        extra = {"imageTag": tag} if tag else {}
        return self.client.put_image(
            repositoryName=repo,
            imageManifest=raw.decode(),
            imageManifestMediaType=media_type,
            **extra,
        )

    def push(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> str:
        image = self._put(repo, raw, media_type, tag)["image"]
        assert image["imageManifestMediaType"] == media_type
        assert image["imageManifest"].encode() == raw
        assert image["imageId"] == {
            "imageDigest": sha256(raw),
            **({"imageTag": tag} if tag else {}),
        }
        return str(image["imageId"]["imageDigest"])

    def refuse(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> tuple[str, str]:
        with pytest.raises(ClientError) as caught:
            self._put(repo, raw, media_type, tag)
        error = caught.value.response["Error"]
        return error["Code"], error["Message"]


class V2Api:
    name = "v2"

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256(data)
        started = self.client.post(f"/v2/{repo}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = self.client.put(started.headers["location"], params={"digest": digest}, content=data)
        assert done.status_code == 201, done.text
        return digest

    def _put(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> httpx.Response:
        return self.client.put(
            f"/v2/{repo}/manifests/{tag or sha256(raw)}",
            content=raw,
            headers={"Content-Type": media_type},
        )

    def push(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> str:
        response = self._put(repo, raw, media_type, tag)
        assert response.status_code == 201, response.text
        assert response.headers["docker-content-digest"] == sha256(raw)
        return sha256(raw)

    def refuse(self, repo: str, raw: bytes, media_type: str, tag: str | None) -> tuple[str, str]:
        response = self._put(repo, raw, media_type, tag)
        assert response.status_code == 404, response.text
        [error] = response.json()["errors"]
        return error["code"], error["message"]


@pytest.fixture
def v2(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.endpoint, timeout=30) as client:
        yield client


@pytest.fixture(params=["ecr", "v2"])
def api(request: pytest.FixtureRequest, ecr: Any, v2: httpx.Client) -> Api:
    return EcrApi(ecr) if request.param == "ecr" else V2Api(v2)


def image(
    api: Api, repo: str, seed: str, *, media_type: str = DOCKER, layer_size: int = 100
) -> bytes:
    """Push a config and a layer derived from ``seed`` only (the same seed gives the same bytes
    in any repository) and return an image manifest over them (not pushed)."""
    oci = media_type == OCI
    config = json.dumps({"architecture": seed, "os": "linux", "seed": seed}).encode()
    layer = (seed.encode() * layer_size)[:layer_size]
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": len(config),
            "digest": api.push_blob(repo, config),
        },
        "layers": [
            {
                "mediaType": OCI_LAYER if oci else DOCKER_LAYER,
                "size": len(layer),
                "digest": api.push_blob(repo, layer),
            }
        ],
    }
    return json.dumps(doc, indent=3).encode()


def list_of(
    media_type: str, children: Sequence[tuple[bytes, str]], *, declare_type: bool = True
) -> bytes:
    """A manifest list or OCI index over ``(manifest, platform architecture)`` pairs."""
    doc: dict[str, Any] = {"schemaVersion": 2}
    if declare_type:
        doc["mediaType"] = media_type
    doc["manifests"] = [
        {
            "mediaType": json.loads(raw).get("mediaType", OCI_INDEX),
            "digest": sha256(raw),
            "size": len(raw),
            "platform": {"architecture": arch, "os": "linux"},
        }
        for raw, arch in children
    ]
    return json.dumps(doc, indent=2).encode()


def two_platforms(
    api: Api, repo: str, media_type: str, *, tags: tuple[str | None, str | None] = (None, None)
) -> tuple[bytes, bytes, bytes]:
    """amd64 and arm64 children pushed (tagged as given) and the list over them (not pushed)."""
    child_type = CHILD_TYPES[media_type]
    amd64 = image(api, repo, f"{repo}-amd64", media_type=child_type, layer_size=300)
    arm64 = image(api, repo, f"{repo}-arm64", media_type=child_type, layer_size=200)
    api.push(repo, amd64, child_type, tags[0])
    api.push(repo, arm64, child_type, tags[1])
    return amd64, arm64, list_of(media_type, [(amd64, "amd64"), (arm64, "arm64")])


def batch_get(ecr: Any, repo: str, image_id: dict[str, str], **kwargs: Any) -> dict[str, Any]:
    return dict(ecr.batch_get_image(repositoryName=repo, imageIds=[image_id], **kwargs))


def delete(ecr: Any, repo: str, *image_ids: dict[str, str]) -> dict[str, Any]:
    got = ecr.batch_delete_image(repositoryName=repo, imageIds=list(image_ids))
    return {"imageIds": got["imageIds"], "failures": got["failures"]}


def digests(ecr: Any, repo: str, status: str = "ANY") -> list[str]:
    ids = ecr.list_images(repositoryName=repo, filter={"tagStatus": status})["imageIds"]
    return sorted({i["imageDigest"] for i in ids})


def refused(image_id: dict[str, str], *parents: str) -> dict[str, Any]:
    return {
        "imageId": image_id,
        "failureCode": "ImageReferencedByManifestList",
        "failureReason": referenced(*parents),
    }


# --- put and get ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "declare_type"),
    [("list", True), ("index", True), ("index", False)],
    ids=["docker-list", "oci-index", "oci-index-without-mediaType"],
)
def test_put_and_get_through_both_apis(
    api: Api, ecr: Any, v2: httpx.Client, repo: str, kind: str, declare_type: bool
) -> None:
    media_type = LIST_TYPES[kind]
    amd64, arm64, _ = two_platforms(api, repo, media_type)
    raw = list_of(media_type, [(amd64, "amd64"), (arm64, "arm64")], declare_type=declare_type)
    digest = api.push(repo, raw, media_type, "multi")

    for image_id in ({"imageTag": "multi"}, {"imageDigest": digest}):
        for accepted in ({}, {"acceptedMediaTypes": [media_type]}):
            got = batch_get(ecr, repo, image_id, **accepted)
            assert got["failures"] == []
            [found] = got["images"]
            assert found["imageManifest"].encode() == raw
            assert found["imageManifestMediaType"] == media_type
            assert found["imageId"] == {"imageDigest": digest, "imageTag": "multi"}

    for reference in ("multi", digest):
        for method in ("GET", "HEAD"):
            response = v2.request(
                method, f"/v2/{repo}/manifests/{reference}", headers={"Accept": DOCKER_ACCEPT}
            )
            assert response.status_code == 200
            assert response.headers["content-type"] == media_type
            assert response.headers["docker-content-digest"] == digest
            assert response.content == (raw if method == "GET" else b"")
    # the children come back by digest, untouched
    for child in (amd64, arm64):
        response = v2.get(f"/v2/{repo}/manifests/{sha256(child)}", headers={"Accept": media_type})
        assert response.content == child
        assert response.headers["content-type"] == CHILD_TYPES[media_type]


@pytest.mark.parametrize("kind", ["list", "index"])
def test_list_fields_in_describe_list_and_batch_get(
    api: Api, ecr: Any, repo: str, kind: str
) -> None:
    media_type = LIST_TYPES[kind]
    child_type = CHILD_TYPES[media_type]
    amd64, arm64, raw = two_platforms(api, repo, media_type)
    digest = api.push(repo, raw, media_type, "multi")

    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    listed = details[digest]
    assert listed["imageManifestMediaType"] == media_type
    assert listed["imageTags"] == ["multi"]
    assert "imageSizeInBytes" not in listed  # ECR gives a list or an index no size
    assert "artifactMediaType" not in listed
    assert "subjectManifestDigest" not in listed
    for child, size in ((amd64, 300), (arm64, 200)):
        detail = details[sha256(child)]
        assert detail["imageManifestMediaType"] == child_type
        assert detail["imageSizeInBytes"] == size
        assert detail["artifactMediaType"] == (OCI_CONFIG if child_type == OCI else DOCKER_CONFIG)
        assert "imageTags" not in detail
    by_id = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "multi"}])
    assert by_id["imageDetails"] == [listed]

    assert ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})["imageIds"] == [
        {"imageDigest": digest, "imageTag": "multi"}
    ]
    assert digests(ecr, repo, "UNTAGGED") == sorted([sha256(amd64), sha256(arm64)])

    # by tag only the list's own type (or none stated) gets it; by digest it is always served
    by_tag = batch_get(ecr, repo, {"imageTag": "multi"}, acceptedMediaTypes=[child_type])
    assert by_tag["images"] == []
    assert by_tag["failures"] == [
        {
            "imageId": {"imageTag": "multi"},
            "failureCode": "ImageNotFound",
            "failureReason": "Requested image not found",
        }
    ]
    by_digest = batch_get(ecr, repo, {"imageDigest": digest}, acceptedMediaTypes=[child_type])
    [found] = by_digest["images"]
    assert (found["imageManifest"].encode(), found["imageManifestMediaType"]) == (raw, media_type)


# --- children that are not there -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "index"])
def test_missing_children_are_refused_and_leave_no_trace(
    api: Api, ecr: Any, v2: httpx.Client, repo: str, kind: str
) -> None:
    media_type = LIST_TYPES[kind]
    present = image(api, repo, f"{repo}-present", media_type=CHILD_TYPES[media_type])
    api.push(repo, present, CHILD_TYPES[media_type], None)
    absent = image(api, repo, f"{repo}-absent", media_type=CHILD_TYPES[media_type])  # not pushed
    raw = list_of(media_type, [(present, "amd64"), (absent, "arm64")])

    code, message = api.refuse(repo, raw, media_type, "multi")
    if api.name == "ecr":
        assert (code, message) == (
            "ReferencedImagesNotFoundException",
            not_found_children(repo, sha256(absent)),
        )
    else:
        assert code == "MANIFEST_BLOB_UNKNOWN"
        assert message == not_found_children(repo, sha256(absent))

    assert digests(ecr, repo) == [sha256(present)]
    assert batch_get(ecr, repo, {"imageTag": "multi"})["failures"][0]["failureCode"] == (
        "ImageNotFound"
    )
    assert v2.get(f"/v2/{repo}/manifests/multi").status_code == 404
    assert v2.get(f"/v2/{repo}/manifests/{sha256(raw)}").status_code == 404
    assert v2.get(f"/v2/{repo}/tags/list").json()["tags"] == []

    # once the child is pushed the same list goes in
    api.push(repo, absent, CHILD_TYPES[media_type], None)
    assert api.push(repo, raw, media_type, "multi") == sha256(raw)


def test_children_must_be_in_the_same_repository(api: Api, ecr: Any, repo: str) -> None:
    """A child stored only in another repository of the account does not count."""
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    child = image(api, other, f"{repo}-child")
    api.push(other, child, DOCKER, "v1")
    raw = list_of(DOCKER_LIST, [(child, "amd64")])

    code, message = api.refuse(repo, raw, DOCKER_LIST, "multi")
    assert code in ("ReferencedImagesNotFoundException", "MANIFEST_BLOB_UNKNOWN")
    assert message == not_found_children(repo, sha256(child))
    assert digests(ecr, repo) == []

    assert image(api, repo, f"{repo}-child") == child  # the same image, now in this repository
    api.push(repo, child, DOCKER, None)
    api.push(repo, raw, DOCKER_LIST, "multi")
    # deleting it in the other repository is not refused: the list is not there
    assert delete(ecr, other, {"imageTag": "v1"})["failures"] == []
    assert delete(ecr, repo, {"imageDigest": sha256(child)})["failures"] == [
        refused({"imageDigest": sha256(child)}, sha256(raw))
    ]


@pytest.mark.parametrize("kind", ["list", "index"])
def test_lenient_server_accepts_missing_children(make_server: ServerFactory, kind: str) -> None:
    server = make_server("--lenient-manifests")
    client = server.client()
    client.create_repository(repositoryName="lenient")
    media_type = LIST_TYPES[kind]
    with httpx.Client(base_url=server.endpoint, timeout=30) as http:
        apis: list[Api] = [EcrApi(client), V2Api(http)]
        children = [
            image(a, "lenient", f"{kind}-{a.name}", media_type=CHILD_TYPES[media_type])
            for a in apis
        ]
        lists = {}
        for a, child in zip(apis, children, strict=True):
            raw = list_of(media_type, [(child, "amd64")])
            lists[a.name] = a.push("lenient", raw, media_type, f"multi-{a.name}")
        [detail] = client.describe_images(
            repositoryName="lenient", imageIds=[{"imageTag": "multi-ecr"}]
        )["imageDetails"]
        assert "imageSizeInBytes" not in detail  # ECR gives a list or an index no size
        assert detail["imageManifestMediaType"] == media_type
        # a child pushed afterwards is kept alive by the list that named it
        apis[0].push("lenient", children[0], CHILD_TYPES[media_type], None)
        child_id = {"imageDigest": sha256(children[0])}
        assert delete(client, "lenient", child_id)["failures"] == [refused(child_id, lists["ecr"])]


# --- deletion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "index"])
def test_batch_delete_refuses_a_referenced_child_until_the_list_goes(
    api: Api, ecr: Any, repo: str, kind: str
) -> None:
    media_type = LIST_TYPES[kind]
    amd64, arm64, raw = two_platforms(api, repo, media_type)
    digest = api.push(repo, raw, media_type, "multi")
    child = {"imageDigest": sha256(amd64)}

    assert delete(ecr, repo, child) == {"imageIds": [], "failures": [refused(child, digest)]}
    assert sha256(amd64) in digests(ecr, repo)

    # the list first (by its tag: its last one), then the child
    assert delete(ecr, repo, {"imageTag": "multi"}) == {
        "imageIds": [{"imageDigest": digest, "imageTag": "multi"}],
        "failures": [],
    }
    assert delete(ecr, repo, child) == {"imageIds": [child], "failures": []}
    assert digests(ecr, repo) == [sha256(arm64)]


@pytest.mark.parametrize("order", ["list-first", "children-first"])
def test_one_call_deletes_a_list_and_its_children_in_any_order(
    ecr: Any, repo: str, order: str
) -> None:
    api = EcrApi(ecr)
    amd64, arm64, raw = two_platforms(api, repo, DOCKER_LIST)
    digest = api.push(repo, raw, DOCKER_LIST, "multi")
    children = [{"imageDigest": sha256(amd64)}, {"imageDigest": sha256(arm64)}]
    parent = {"imageDigest": digest}
    ids = [parent, *children] if order == "list-first" else [*children, parent]

    got = delete(ecr, repo, *ids)
    assert got["failures"] == []
    # request order; the list's id carries its tag
    expected = [{"imageDigest": digest, "imageTag": "multi"} if i == parent else i for i in ids]
    assert got["imageIds"] == expected
    assert digests(ecr, repo) == []


def test_a_child_of_two_lists_names_both(ecr: Any, repo: str) -> None:
    api = EcrApi(ecr)
    amd64, arm64, raw = two_platforms(api, repo, OCI_INDEX)
    first = api.push(repo, raw, OCI_INDEX, "multi")
    second = api.push(repo, list_of(OCI_INDEX, [(amd64, "amd64")]), OCI_INDEX, "amd64-only")
    child = {"imageDigest": sha256(amd64)}

    assert delete(ecr, repo, child)["failures"] == [refused(child, first, second)]
    # with one list gone the other still holds it
    delete(ecr, repo, {"imageDigest": first})
    assert delete(ecr, repo, child)["failures"] == [refused(child, second)]
    assert delete(ecr, repo, {"imageDigest": second}, child)["failures"] == []
    assert digests(ecr, repo) == [sha256(arm64)]


def test_deleting_a_child_by_tag(ecr: Any, v2: httpx.Client, repo: str) -> None:
    """ECR deletes an image with its last tag, so BatchDeleteImage of a referenced child's only
    tag is refused (and the tag stays); a tag that is not its last goes. /v2 DELETE by tag only
    untags: the child stays, untagged, kept by its list."""
    api = EcrApi(ecr)
    amd64, arm64, raw = two_platforms(api, repo, DOCKER_LIST, tags=("amd64", "arm64"))
    digest = api.push(repo, raw, DOCKER_LIST, "multi")
    api.push(repo, amd64, DOCKER, "also-amd64")

    only_tag = {"imageTag": "arm64"}
    assert delete(ecr, repo, only_tag) == {"imageIds": [], "failures": [refused(only_tag, digest)]}
    assert batch_get(ecr, repo, only_tag)["images"][0]["imageId"]["imageDigest"] == sha256(arm64)

    assert delete(ecr, repo, {"imageTag": "also-amd64"}) == {
        "imageIds": [{"imageDigest": sha256(amd64), "imageTag": "also-amd64"}],
        "failures": [],
    }
    [detail] = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "amd64"}])[
        "imageDetails"
    ]
    assert detail["imageTags"] == ["amd64"]

    # /v2: untag the child's only tag (allowed), then its digest (refused)
    assert v2.delete(f"/v2/{repo}/manifests/arm64").status_code == 202
    assert digests(ecr, repo, "UNTAGGED") == [sha256(arm64)]
    response = v2.delete(f"/v2/{repo}/manifests/{sha256(arm64)}")
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert (error["code"], error["message"]) == ("UNSUPPORTED", referenced(digest))
    pulled = v2.get(f"/v2/{repo}/manifests/{sha256(arm64)}", headers={"Accept": DOCKER})
    assert pulled.content == arm64

    # the list goes by digest; then the children do
    assert v2.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202
    assert v2.delete(f"/v2/{repo}/manifests/{sha256(arm64)}").status_code == 202
    assert delete(ecr, repo, {"imageTag": "amd64"})["failures"] == []
    assert digests(ecr, repo) == []


def test_untagged_children_live_as_long_as_their_list(
    ecr: Any, v2: httpx.Client, repo: str
) -> None:
    api = V2Api(v2)
    amd64, arm64, raw = two_platforms(api, repo, OCI_INDEX)
    digest = api.push(repo, raw, OCI_INDEX, "multi")
    children = sorted([sha256(amd64), sha256(arm64)])
    assert digests(ecr, repo, "UNTAGGED") == children
    assert delete(ecr, repo, *({"imageDigest": c} for c in children))["failures"] == [
        refused({"imageDigest": c}, digest) for c in children
    ]
    # retagging the list keeps it (and its children); removing its last tag deletes it
    api.push(repo, raw, OCI_INDEX, "latest")
    assert delete(ecr, repo, {"imageTag": "multi"})["imageIds"] == [
        {"imageDigest": digest, "imageTag": "multi"}
    ]
    assert digests(ecr, repo, "UNTAGGED") == children
    assert delete(ecr, repo, {"imageTag": "latest"})["imageIds"] == [
        {"imageDigest": digest, "imageTag": "latest"}
    ]
    assert delete(ecr, repo, *({"imageDigest": c} for c in children)) == {
        "imageIds": [{"imageDigest": c} for c in children],
        "failures": [],
    }


def test_nested_indexes(api: Api, ecr: Any, v2: httpx.Client, repo: str) -> None:
    """An index may list indexes (OCI allows it): every level must be in the repository, no
    level has a size in DescribeImages, and each level protects the one below."""
    amd64, arm64, inner = two_platforms(api, repo, OCI_INDEX)
    extra = image(api, repo, f"{repo}-extra", media_type=OCI, layer_size=50)
    api.push(repo, extra, OCI, None)
    outer = list_of(OCI_INDEX, [(inner, "multi"), (extra, "riscv64")])

    code, message = api.refuse(repo, outer, OCI_INDEX, "outer")  # the inner index is not there
    assert code in ("ReferencedImagesNotFoundException", "MANIFEST_BLOB_UNKNOWN")
    assert message == not_found_children(repo, sha256(inner))

    inner_digest = api.push(repo, inner, OCI_INDEX, None)
    outer_digest = api.push(repo, outer, OCI_INDEX, "outer")
    sizes = {
        d["imageDigest"]: d.get("imageSizeInBytes")
        for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert sizes[inner_digest] is sizes[outer_digest] is None
    assert sizes[sha256(amd64)] == 300
    got = v2.get(f"/v2/{repo}/manifests/outer", headers={"Accept": OCI_INDEX})
    assert got.content == outer
    assert v2.get(f"/v2/{repo}/manifests/{inner_digest}").content == inner

    child = {"imageDigest": sha256(amd64)}
    middle = {"imageDigest": inner_digest}
    assert delete(ecr, repo, middle, child)["failures"] == [
        refused(middle, outer_digest),
        refused(child, inner_digest),
    ]
    # all three levels in one call, innermost first
    got_deleted = delete(ecr, repo, child, middle, {"imageTag": "outer"})
    assert got_deleted == {
        "imageIds": [child, middle, {"imageDigest": outer_digest, "imageTag": "outer"}],
        "failures": [],
    }
    assert digests(ecr, repo) == sorted([sha256(arm64), sha256(extra)])
