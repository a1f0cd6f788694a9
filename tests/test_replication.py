"""Replication inside one openecr: PutReplicationConfiguration / DescribeRegistry validation,
images copied to other regions and accounts (with children, tags, tag moves; deletes stay),
REPLICATION creation templates, registry policies, DescribeImageReplicationStatus."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import Server, ServerFactory, client_error, make_image, unvalidated_client
from openecr.bootstrap import open_metadata

ACCOUNT = "123456789012"
OTHER = "210987654321"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def _dest(region: str, account: str = ACCOUNT) -> dict[str, str]:
    return {"region": region, "registryId": account}


def _configure(client: Any, *rules: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = client.put_replication_configuration(
        replicationConfiguration={"rules": list(rules)}
    )
    return result


def _wait(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def _statuses(client: Any, repo: str, digest: str) -> list[dict[str, str]]:
    found: list[dict[str, str]] = client.describe_image_replication_status(
        repositoryName=repo, imageId={"imageDigest": digest}
    )["replicationStatuses"]
    return found


def _settled(client: Any, repo: str, digest: str) -> list[dict[str, str]]:
    """The statuses once none is IN_PROGRESS."""

    def done() -> list[dict[str, str]] | None:
        statuses = _statuses(client, repo, digest)
        if statuses and all(s["status"] != "IN_PROGRESS" for s in statuses):
            return statuses
        return None

    settled: list[dict[str, str]] = _wait(done, f"replication of {digest} settles")
    return settled


def _push(client: Any, repo: str, tag: str | None, seed: str) -> tuple[bytes, str]:
    raw = make_image(client, repo, seed=seed)
    params: dict[str, Any] = {"repositoryName": repo, "imageManifest": raw.decode()}
    if tag is not None:
        params["imageTag"] = tag
    digest: str = client.put_image(**params)["image"]["imageId"]["imageDigest"]
    return raw, digest


def _manifest(client: Any, repo: str, **image_id: str) -> bytes | None:
    result = client.batch_get_image(repositoryName=repo, imageIds=[image_id])
    if not result["images"]:
        return None
    return str(result["images"][0]["imageManifest"]).encode()


def _put_registry_policy(server: Server, registry_key: str, policy: dict[str, Any]) -> None:
    """Another account's registry policy, written to the store as a second process would (in
    open mode every caller is the default account, so PutRegistryPolicy cannot write it), in
    the form PutRegistryPolicy stores it."""
    store = open_metadata(f"sqlite:///{server.data_dir / 'metadata.db'}")
    try:
        with store.write() as tx:
            body = json.dumps({"text": json.dumps(policy)})
            tx.put_document(registry_key, "registry-policy", "policy", body)
    finally:
        store.close()


# --- the configuration -----------------------------------------------------------------------


def test_put_and_describe_registry_round_trip(server: Server) -> None:
    ecr = server.client(region_name="ap-south-1")
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}
    rules = [
        {"destinations": [_dest("ap-southeast-2"), _dest("ap-south-2", OTHER)]},
        {
            "destinations": [_dest("ap-southeast-2")],
            "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}],
        },
    ]
    answer = _configure(ecr, *rules)
    assert answer["replicationConfiguration"] == {"rules": rules}
    described = ecr.describe_registry()
    assert described["registryId"] == ACCOUNT
    assert described["replicationConfiguration"] == {"rules": rules}
    # another region's registry has its own (empty) configuration
    assert server.client(region_name="ap-southeast-2").describe_registry()[
        "replicationConfiguration"
    ] == {"rules": []}
    _configure(ecr)  # no rules: replication off
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}


@pytest.mark.parametrize(
    ("configuration", "needle"),
    [
        ({"rules": [{"destinations": []}] * 11}, "rules"),
        ({"rules": [{"destinations": [_dest("eu-west-1")] * 101}]}, "destinations"),
        (
            {
                "rules": [
                    {
                        "destinations": [_dest("eu-west-1")],
                        "repositoryFilters": [{"filter": "p", "filterType": "PREFIX_MATCH"}],
                    }
                ]
            },
            "filter",
        ),
        (
            {
                "rules": [
                    {
                        "destinations": [_dest("eu-west-1")],
                        "repositoryFilters": [{"filter": "prod", "filterType": "WILDCARD"}],
                    }
                ]
            },
            "filterType",
        ),
        (
            {"rules": [{"destinations": [_dest("eu-west-1")], "repositoryFilters": []}]},
            "repositoryFilters",
        ),
        (
            {"rules": [{"destinations": [{"region": "eu-west-1", "registryId": "12"}]}]},
            "registryId",
        ),
        ({"rules": [{"destinations": [_dest("Eu_West")]}]}, "region"),
        ({"rules": [{"destinations": [_dest("us-east-1")]}]}, "source registry"),
        ({"rules": [{"destinations": [_dest("mars-north-1")]}]}, "mars-north-1"),
        (
            {
                "rules": [
                    {"destinations": [_dest("eu-west-1", f"{n:012d}") for n in range(20)]},
                    {"destinations": [_dest("eu-west-2", f"{n:012d}") for n in range(6)]},
                ]
            },
            "25 unique destinations",
        ),
    ],
    ids=[
        "11-rules",
        "101-destinations",
        "short-filter",
        "filter-type",
        "no-filters",
        "registry-id",
        "region-pattern",
        "to-itself",
        "unknown-region",
        "26-unique-destinations",
    ],
)
def test_bad_configurations_are_refused_and_nothing_is_stored(
    server: Server, configuration: dict[str, Any], needle: str
) -> None:
    raw = unvalidated_client(server)
    code, message, status = client_error(
        raw.put_replication_configuration, replicationConfiguration=configuration
    )
    assert (code, status) == ("InvalidParameterException", 400)
    assert needle in message
    assert raw.describe_registry()["replicationConfiguration"] == {"rules": []}


# --- replicating inside one server -----------------------------------------------------------


def test_push_replicates_to_other_regions_with_tags_moves_and_not_deletes(
    make_server: ServerFactory,
) -> None:
    server = make_server()
    east = server.client()
    west = server.client(region_name="eu-west-1")
    south = server.client(region_name="ap-south-1")
    _configure(
        east,
        {
            "destinations": [_dest("eu-west-1")],
            "repositoryFilters": [{"filter": "team", "filterType": "PREFIX_MATCH"}],
        },
        {"destinations": [_dest("eu-west-1"), _dest("ap-south-1")]},
    )
    east.create_repository(repositoryName="team/app")
    raw, digest = _push(east, "team/app", "v1", "one")

    statuses = _settled(east, "team/app", digest)
    assert sorted(statuses, key=lambda s: s["region"]) == [
        {"region": "ap-south-1", "registryId": ACCOUNT, "status": "COMPLETE"},
        {"region": "eu-west-1", "registryId": ACCOUNT, "status": "COMPLETE"},
    ]
    for client in (west, south):
        assert _manifest(client, "team/app", imageTag="v1") == raw
        layers = json.loads(raw)["layers"]
        url = client.get_download_url_for_layer(
            repositoryName="team/app", layerDigest=layers[0]["digest"]
        )["downloadUrl"]
        import httpx

        body = httpx.get(url).content
        assert "sha256:" + hashlib.sha256(body).hexdigest() == layers[0]["digest"]
    # the tag moves at the destinations too
    raw2, digest2 = _push(east, "team/app", "v1", "two")
    _settled(east, "team/app", digest2)
    assert _manifest(west, "team/app", imageTag="v1") == raw2
    assert _manifest(west, "team/app", imageDigest=digest) == raw  # still there, untagged
    # deletes do not replicate
    east.batch_delete_image(repositoryName="team/app", imageIds=[{"imageTag": "v1"}])
    east.put_image(repositoryName="team/app", imageManifest=raw.decode(), imageTag="v3")
    _settled(east, "team/app", digest)
    assert _manifest(west, "team/app", imageTag="v1") == raw2
    assert _manifest(west, "team/app", imageTag="v3") == raw
    # a copy is not replicated again, and its registry's status shows nothing
    assert _statuses(west, "team/app", digest) == []


def test_filters_choose_repositories_and_earlier_images_stay(make_server: ServerFactory) -> None:
    server = make_server()
    east = server.client()
    west = server.client(region_name="eu-west-1")
    east.create_repository(repositoryName="prod-api")
    east.create_repository(repositoryName="dev/api")
    _, before = _push(east, "prod-api", "old", "before")
    _configure(
        east,
        {
            "destinations": [_dest("eu-west-1")],
            "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}],
        },
    )
    _, covered = _push(east, "prod-api", "new", "covered")
    _, skipped = _push(east, "dev/api", "v1", "skipped")
    _settled(east, "prod-api", covered)
    assert _statuses(east, "dev/api", skipped) == []
    assert _statuses(east, "prod-api", before) == []  # pushed before the configuration
    names = [r["repositoryName"] for r in west.describe_repositories()["repositories"]]
    assert names == ["prod-api"]
    listed = west.list_images(repositoryName="prod-api")["imageIds"]
    assert listed == [{"imageDigest": covered, "imageTag": "new"}]


def test_a_manifest_list_arrives_with_every_child(make_server: ServerFactory) -> None:
    server = make_server()
    east = server.client()
    west = server.client(region_name="eu-west-1")
    _configure(east, {"destinations": [_dest("eu-west-1")]})
    east.create_repository(repositoryName="multi")
    children = []
    for arch in ("amd64", "arm64"):
        raw = make_image(east, "multi", seed=arch)
        digest = east.put_image(repositoryName="multi", imageManifest=raw.decode())["image"][
            "imageId"
        ]["imageDigest"]
        children.append((raw, digest, arch))
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER,
                    "size": len(raw),
                    "digest": digest,
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for raw, digest, arch in children
            ],
        }
    ).encode()
    put = east.put_image(repositoryName="multi", imageManifest=index.decode(), imageTag="latest")
    index_digest = put["image"]["imageId"]["imageDigest"]
    assert _settled(east, "multi", index_digest)[0]["status"] == "COMPLETE"
    assert _manifest(west, "multi", imageTag="latest") == index
    for raw, digest, _ in children:
        assert _manifest(west, "multi", imageDigest=digest) == raw


def test_replication_template_shapes_the_new_repository(make_server: ServerFactory) -> None:
    server = make_server()
    east = server.client()
    west = server.client(region_name="eu-west-1")
    west.create_repository_creation_template(
        prefix="ROOT",
        appliedFor=["REPLICATION"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "origin", "Value": "replication"}],
    )
    _configure(east, {"destinations": [_dest("eu-west-1")]})
    east.create_repository(repositoryName="templated")
    _, digest = _push(east, "templated", "v1", "t")
    _settled(east, "templated", digest)
    [repo] = west.describe_repositories(repositoryNames=["templated"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    tags = west.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "origin", "Value": "replication"}]
    # moving an immutable tag at the destination fails that destination, with its code
    _, moved = _push(east, "templated", "v1", "moved")
    assert _settled(east, "templated", moved) == [
        {
            "region": "eu-west-1",
            "registryId": ACCOUNT,
            "status": "FAILED",
            "failureCode": "TAG_IMMUTABLE",
        }
    ]


def test_cross_account_needs_the_destination_registry_policy(make_server: ServerFactory) -> None:
    server = make_server()
    east = server.client()
    other = server.client(region_name="eu-west-1")
    _configure(east, {"destinations": [_dest("eu-west-1", OTHER)]})
    east.create_repository(repositoryName="shared")
    _, refused = _push(east, "shared", "v1", "refused")
    assert _settled(east, "shared", refused) == [
        {
            "region": "eu-west-1",
            "registryId": OTHER,
            "status": "FAILED",
            "failureCode": "PERMISSION_DENIED",
        }
    ]
    allow_replicate_only = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["ecr:ReplicateImage"],
                "Resource": f"arn:aws:ecr:eu-west-1:{OTHER}:repository/*",
            }
        ],
    }
    _put_registry_policy(server, f"{OTHER}.eu-west-1", allow_replicate_only)
    _, still_refused = _push(east, "shared", "v2", "no-create")  # CreateRepository missing
    assert _settled(east, "shared", still_refused)[0]["failureCode"] == "PERMISSION_DENIED"
    allow = dict(allow_replicate_only)
    allow["Statement"] = [
        {
            **allow_replicate_only["Statement"][0],
            "Action": ["ecr:ReplicateImage", "ecr:CreateRepository"],
        }
    ]
    _put_registry_policy(server, f"{OTHER}.eu-west-1", allow)
    raw, allowed = _push(east, "shared", "v3", "allowed")
    assert _settled(east, "shared", allowed)[0]["status"] == "COMPLETE"
    found = other.batch_get_image(
        registryId=OTHER, repositoryName="shared", imageIds=[{"imageTag": "v3"}]
    )["images"]
    assert [str(i["imageManifest"]).encode() for i in found] == [raw]


def test_replication_status_errors(server: Server) -> None:
    ecr = server.client()
    ecr.create_repository(repositoryName="status-errors")
    code, _, _ = client_error(
        ecr.describe_image_replication_status,
        repositoryName="status-missing",
        imageId={"imageTag": "v1"},
    )
    assert code == "RepositoryNotFoundException"
    code, message, _ = client_error(
        ecr.describe_image_replication_status,
        repositoryName="status-errors",
        imageId={"imageTag": "v1"},
    )
    assert code == "ImageNotFoundException"
    assert "status-errors" in message
    code, _, _ = client_error(
        ecr.describe_image_replication_status,
        repositoryName="status-errors",
        imageId={"imageDigest": "sha256:nothex"},
    )
    assert code == "InvalidParameterException"


def test_v2_pushes_replicate_an_oci_index_its_children_and_referrers(
    make_server: ServerFactory,
) -> None:
    import httpx

    server = make_server()
    east = server.client()
    _configure(east, {"destinations": [_dest("eu-west-1")]})
    east.create_repository(repositoryName="oci/app")
    index_type = "application/vnd.oci.image.index.v1+json"
    manifest_type = "application/vnd.oci.image.manifest.v1+json"
    west_host = {"Host": f"{ACCOUNT}.dkr.ecr.eu-west-1.localhost"}
    with httpx.Client(base_url=server.endpoint) as v2:

        def blob(data: bytes) -> dict[str, Any]:
            digest = "sha256:" + hashlib.sha256(data).hexdigest()
            answer = v2.post(f"/v2/oci/app/blobs/uploads/?digest={digest}", content=data)
            assert answer.status_code == 201, answer.text
            return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}

        def put(reference: str, doc: dict[str, Any], media_type: str) -> tuple[bytes, str]:
            raw = json.dumps(doc).encode()
            answer = v2.put(
                f"/v2/oci/app/manifests/{reference}",
                content=raw,
                headers={"Content-Type": media_type},
            )
            assert answer.status_code == 201, answer.text
            return raw, answer.headers["Docker-Content-Digest"]

        children = []
        for arch in ("amd64", "arm64"):
            config = {
                **blob(arch.encode()),
                "mediaType": "application/vnd.oci.image.config.v1+json",
            }
            layer = blob(f"layer of {arch}".encode())
            doc = {
                "schemaVersion": 2,
                "mediaType": manifest_type,
                "config": config,
                "layers": [layer],
            }
            raw, digest = put(
                "sha256:" + hashlib.sha256(json.dumps(doc).encode()).hexdigest(), doc, manifest_type
            )
            children.append((raw, digest, arch))
        index_doc = {
            "schemaVersion": 2,
            "mediaType": index_type,
            "manifests": [
                {
                    "mediaType": manifest_type,
                    "digest": digest,
                    "size": len(raw),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for raw, digest, arch in children
            ],
        }
        index, index_digest = put("v1", index_doc, index_type)
        empty = {**blob(b"{}"), "mediaType": "application/vnd.oci.empty.v1+json"}
        signature_doc = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "artifactType": "application/vnd.example.signature",
            "config": empty,
            "layers": [blob(b"signature")],
            "subject": {"mediaType": index_type, "digest": index_digest, "size": len(index)},
        }
        _, signature_digest = put(
            "sha256:" + hashlib.sha256(json.dumps(signature_doc).encode()).hexdigest(),
            signature_doc,
            manifest_type,
        )
        _settled(east, "oci/app", index_digest)
        _settled(east, "oci/app", signature_digest)
        got = v2.get("/v2/oci/app/manifests/v1", headers={**west_host, "Accept": index_type})
        assert got.status_code == 200 and got.content == index
        for raw, digest, _ in children:
            child = v2.get(
                f"/v2/oci/app/manifests/{digest}", headers={**west_host, "Accept": manifest_type}
            )
            assert child.content == raw
            layer_digest = json.loads(raw)["layers"][0]["digest"]
            assert v2.get(f"/v2/oci/app/blobs/{layer_digest}", headers=west_host).status_code == 200
        referrers = v2.get(f"/v2/oci/app/referrers/{index_digest}", headers=west_host).json()
        assert [m["digest"] for m in referrers["manifests"]] == [signature_digest]
        assert v2.get("/v2/oci/app/tags/list", headers=west_host).json()["tags"] == ["v1"]
