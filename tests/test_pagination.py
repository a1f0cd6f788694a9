"""Pagination of ListImages, DescribeImages and DescribeRepositories through botocore's
paginators and the aws CLI: every item exactly once, page sizes honoured, tokens checked."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from conftest import InProcessServer, Server, aws_json, free_port, make_image

REPOS = [f"page/r{i}" for i in range(7)]
IMAGES = "page/r0"
# image seed -> its tags, pushed in this order
LAYOUT: dict[str, list[str]] = {
    "a": ["a1", "a2", "a3"],
    "b": [],
    "c": ["c1"],
    "d": [],
    "e": ["e1", "e2"],
}
INVALID_TOKEN = "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'"


@pytest.fixture(scope="module")
def paged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own, so that the sets to page through are exactly known."""
    server = InProcessServer(tmp_path_factory.mktemp("paged") / "data", free_port()).start()
    ecr = server.client()
    for name in reversed(REPOS):
        ecr.create_repository(repositoryName=name)
    for seed, tags in LAYOUT.items():
        manifest = make_image(ecr, IMAGES, seed=seed).decode()
        ecr.put_image(repositoryName=IMAGES, imageManifest=manifest, **_tag(tags[:1]))
        for tag in tags[1:]:
            ecr.put_image(repositoryName=IMAGES, imageManifest=manifest, imageTag=tag)
    yield server
    server.stop()


def _tag(tags: list[str]) -> dict[str, str]:
    return {"imageTag": tags[0]} if tags else {}


@pytest.fixture
def client(paged: Server) -> Any:
    return paged.client()


def pages(client: Any, operation: str, **params: Any) -> list[dict[str, Any]]:
    return list(client.get_paginator(operation).paginate(**params))


def ids_of(page: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(i["imageDigest"], i.get("imageTag")) for i in page["imageIds"]]


def all_ids(client: Any, tag_status: str = "ANY") -> list[tuple[str, str | None]]:
    answer = client.list_images(
        repositoryName=IMAGES, maxResults=1000, filter={"tagStatus": tag_status}
    )
    assert "nextToken" not in answer
    return ids_of(answer)


def error(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return response["Error"]["Code"], response["Error"]["Message"]


def test_the_fixture_holds_what_the_tests_expect(client: Any) -> None:
    ids = all_ids(client)
    assert len(ids) == 8
    assert len({d for d, _ in ids}) == 5
    assert sorted(t for _, t in ids if t) == sorted(t for ts in LAYOUT.values() for t in ts)
    assert len(all_ids(client, "TAGGED")) == 6
    assert len(all_ids(client, "UNTAGGED")) == 2


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_describe_repositories_walks_every_repository_once(client: Any, size: int) -> None:
    walked = pages(client, "describe_repositories", PaginationConfig={"PageSize": size})
    names = [r["repositoryName"] for page in walked for r in page["repositories"]]
    assert names == sorted(REPOS)
    assert len(walked) == math.ceil(len(REPOS) / size)
    assert all(len(page["repositories"]) <= size for page in walked)
    assert "nextToken" not in walked[-1]


@pytest.mark.parametrize("size", [1, 2, 3, 8, 1000])
@pytest.mark.parametrize("tag_status", ["ANY", "TAGGED", "UNTAGGED"])
def test_list_images_walks_every_id_once(client: Any, size: int, tag_status: str) -> None:
    walked = pages(
        client,
        "list_images",
        repositoryName=IMAGES,
        filter={"tagStatus": tag_status},
        PaginationConfig={"PageSize": size},
    )
    ids = [i for page in walked for i in ids_of(page)]
    expected = all_ids(client, tag_status)
    assert ids == expected
    assert len(set(ids)) == len(ids)
    assert all(len(page["imageIds"]) <= size for page in walked)
    assert len(walked) == max(1, math.ceil(len(expected) / size))


@pytest.mark.parametrize("size", [1, 2, 4, 5, 1000])
@pytest.mark.parametrize("tag_status", ["ANY", "TAGGED", "UNTAGGED"])
def test_describe_images_walks_every_image_once(client: Any, size: int, tag_status: str) -> None:
    walked = pages(
        client,
        "describe_images",
        repositoryName=IMAGES,
        filter={"tagStatus": tag_status},
        PaginationConfig={"PageSize": size},
    )
    details = [d for page in walked for d in page["imageDetails"]]
    assert all(len(page["imageDetails"]) <= size for page in walked)
    digests = [d["imageDigest"] for d in details]
    assert len(set(digests)) == len(digests)
    expected: dict[str, set[str]] = {}
    for digest, tag in all_ids(client, tag_status):
        expected.setdefault(digest, set()).update([tag] if tag else [])
    assert {d["imageDigest"]: set(d.get("imageTags", [])) for d in details} == expected
    assert digests == list(expected)  # push order, as ListImages


def test_max_items_and_starting_token_resume_mid_page(client: Any) -> None:
    paginator = client.get_paginator("list_images")
    first = paginator.paginate(
        repositoryName=IMAGES, PaginationConfig={"PageSize": 3, "MaxItems": 4}
    ).build_full_result()
    assert len(first["imageIds"]) == 4
    rest = paginator.paginate(
        repositoryName=IMAGES,
        PaginationConfig={"PageSize": 3, "StartingToken": first["NextToken"]},
    ).build_full_result()
    assert "NextToken" not in rest
    walked = ids_of(first) + ids_of(rest)
    assert walked == all_ids(client)


def test_paging_survives_changes_between_pages(paged: Server) -> None:
    ecr = paged.client()
    name = "page/changing"
    ecr.create_repository(repositoryName=name)
    pushed = []
    for i in range(4):
        manifest = make_image(ecr, name, seed=f"changing-{i}").decode()
        pushed.append(ecr.put_image(repositoryName=name, imageManifest=manifest)["image"])
    first = ecr.list_images(repositoryName=name, maxResults=2)
    assert len(first["imageIds"]) == 2
    # drop an image already returned and one not yet returned; push a new one
    ecr.batch_delete_image(
        repositoryName=name,
        imageIds=[first["imageIds"][0], {"imageDigest": pushed[2]["imageId"]["imageDigest"]}],
    )
    late = make_image(ecr, name, seed="changing-late").decode()
    new = ecr.put_image(repositoryName=name, imageManifest=late)["image"]["imageId"]
    rest = ecr.list_images(repositoryName=name, maxResults=2, nextToken=first["nextToken"])
    seen = [i["imageDigest"] for i in first["imageIds"] + rest["imageIds"]]
    assert "nextToken" not in rest
    assert seen == [
        pushed[0]["imageId"]["imageDigest"],
        pushed[1]["imageId"]["imageDigest"],
        pushed[3]["imageId"]["imageDigest"],
        new["imageDigest"],
    ]
    ecr.delete_repository(repositoryName=name, force=True)


def test_a_tag_added_between_pages_is_not_repeated(paged: Server) -> None:
    ecr = paged.client()
    name = "page/retagged"
    ecr.create_repository(repositoryName=name)
    manifest = make_image(ecr, name, seed="retag").decode()
    for tag in ("b", "d", "f"):
        ecr.put_image(repositoryName=name, imageManifest=manifest, imageTag=tag)
    first = ecr.list_images(repositoryName=name, maxResults=2)
    assert [i["imageTag"] for i in first["imageIds"]] == ["b", "d"]
    for tag in ("a", "e"):
        ecr.put_image(repositoryName=name, imageManifest=manifest, imageTag=tag)
    rest = ecr.list_images(repositoryName=name, maxResults=2, nextToken=first["nextToken"])
    assert [i["imageTag"] for i in rest["imageIds"]] == ["e", "f"]
    ecr.delete_repository(repositoryName=name, force=True)


def _token(key: Any, scope: str | None = None) -> str:
    doc = {"after": key} if scope is None else {"after": key, "in": scope}
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


OPERATIONS = {
    "describe_repositories": {},
    "list_images": {"repositoryName": IMAGES},
    "describe_images": {"repositoryName": IMAGES},
}
SCOPES = {
    "describe_repositories": "repositories",
    "list_images": "images",
    "describe_images": "details",
}

RAW_BAD_TOKENS = [
    "garbage!",
    "bm90IGpzb24",  # base64 of "not json"
    base64.urlsafe_b64encode(b"[1, 2]").decode(),
    base64.urlsafe_b64encode(b"[" * 100_000).decode(),
    base64.urlsafe_b64encode(b'{"after": ' + b"9" * 5000 + b"}").decode(),
    "A" * 10000,
    "\u00e9\u0000",
]
# keys that are wrong inside a token that otherwise looks like this server's
BAD_KEYS = [
    None,
    True,
    -1,
    10**30,
    1.5,
    [1],
    {"a": 1},
    "page/r0\u0000",
    "\u00b2/a1",
    "1/" + "x" * 400,
    "1/bad tag",
]
# valid repository names (a DescribeRepositories key) that are not image positions
IMAGE_BAD_KEYS = ["99999999999999999999/a1", "nonsense"]


@pytest.mark.parametrize("token", RAW_BAD_TOKENS)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_invalid_next_token_is_refused(client: Any, operation: str, token: str) -> None:
    code, message = error(getattr(client, operation), nextToken=token, **OPERATIONS[operation])
    assert (code, message) == ("InvalidParameterException", INVALID_TOKEN)


@pytest.mark.parametrize(
    ("operation", "key"),
    [(op, key) for op in OPERATIONS for key in BAD_KEYS]
    + [(op, key) for op in ("list_images", "describe_images") for key in IMAGE_BAD_KEYS],
)
def test_a_bad_key_in_a_token_is_refused(client: Any, operation: str, key: Any) -> None:
    for token in (_token(key, SCOPES[operation]), _token(key)):
        code, message = error(getattr(client, operation), nextToken=token, **OPERATIONS[operation])
        assert (code, message) == ("InvalidParameterException", INVALID_TOKEN)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("describe_repositories", "list_images"),
        ("describe_repositories", "describe_images"),
        ("list_images", "describe_repositories"),
        ("list_images", "describe_images"),
        ("describe_images", "describe_repositories"),
        ("describe_images", "list_images"),
    ],
)
def test_a_token_of_another_operation_is_refused(client: Any, source: str, target: str) -> None:
    token = getattr(client, source)(maxResults=1, **OPERATIONS[source])["nextToken"]
    code, message = error(getattr(client, target), nextToken=token, **OPERATIONS[target])
    assert (code, message) == ("InvalidParameterException", INVALID_TOKEN)


@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        (0, "Member must have value greater than or equal to 1"),
        (-5, "Member must have value greater than or equal to 1"),
        (1001, "Member must have value less than or equal to 1000"),
    ],
)
@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_max_results_bounds(paged: Server, operation: str, value: int, constraint: str) -> None:
    client = paged.client(config=Config(parameter_validation=False))
    code, message = error(getattr(client, operation), maxResults=value, **OPERATIONS[operation])
    assert code == "InvalidParameterException"
    assert (
        message == f"Invalid parameter at 'maxResults' failed to satisfy constraint: '{constraint}'"
    )


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_max_results_extremes_are_accepted(client: Any, operation: str) -> None:
    result_key = {
        "describe_repositories": "repositories",
        "list_images": "imageIds",
        "describe_images": "imageDetails",
    }[operation]
    one = getattr(client, operation)(maxResults=1, **OPERATIONS[operation])
    assert len(one[result_key]) == 1
    assert "nextToken" in one
    most = getattr(client, operation)(maxResults=1000, **OPERATIONS[operation])
    assert "nextToken" not in most


@pytest.mark.parametrize("extra", [{"maxResults": 1}, {"nextToken": "x"}])
def test_paging_named_items_is_refused(client: Any, extra: dict[str, Any]) -> None:
    code, message = error(client.describe_repositories, repositoryNames=[IMAGES], **extra)
    assert code == "InvalidParameterException"
    assert "'repositoryNames'" in message
    digest = all_ids(client)[0][0]
    code, message = error(
        client.describe_images, repositoryName=IMAGES, imageIds=[{"imageDigest": digest}], **extra
    )
    assert code == "InvalidParameterException"
    assert "'imageIds'" in message


def aws(server: Server, *args: str) -> Any:
    return aws_json(server, *args)


@pytest.mark.slow  # the aws CLI
def test_aws_cli_paginates(paged: Server, client: Any) -> None:
    listed = aws(paged, "list-images", "--repository-name", IMAGES, "--page-size", "3")
    assert ids_of(listed) == all_ids(client)
    assert "nextToken" not in listed and "NextToken" not in listed

    # botocore resumes mid-page by re-reading that page: the page size must stay the same
    first = aws(
        paged, "list-images", "--repository-name", IMAGES, "--max-items", "5", "--page-size", "3"
    )
    assert len(first["imageIds"]) == 5
    rest = aws(
        paged,
        "list-images",
        "--repository-name",
        IMAGES,
        "--starting-token",
        first["NextToken"],
        "--page-size",
        "3",
    )
    assert ids_of(first) + ids_of(rest) == all_ids(client)

    repos = aws(paged, "describe-repositories", "--page-size", "2")["repositories"]
    assert [r["repositoryName"] for r in repos] == sorted(REPOS)
    details = aws(paged, "describe-images", "--repository-name", IMAGES, "--page-size", "1")
    assert len(details["imageDetails"]) == len(LAYOUT)
