"""The web page under /ui/: what it shows, how it pages, who may see it, and that nothing a
client stored or sent reaches the HTML unescaped (the browser's view: tests/test_ui_browser.py)."""

from __future__ import annotations

import base64
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Server, ServerFactory, make_image, upload_blob

ACCOUNT = "123456789012"
HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
EVIL = "<script>alert('x')</script>\"&'"


def get(server: Server, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(server.endpoint + path, timeout=30, **kwargs)


def push(ecr: Any, repo: str, tag: str | None, *, seed: str = "", **kw: Any) -> str:
    manifest = make_image(ecr, repo, seed=seed or uuid.uuid4().hex, **kw)
    args: dict[str, Any] = {"repositoryName": repo, "imageManifest": manifest.decode()}
    if tag is not None:
        args["imageTag"] = tag
    return str(ecr.put_image(**args)["image"]["imageId"]["imageDigest"])


def test_a_browser_asking_for_slash_is_sent_to_the_page_and_api_clients_are_not(
    server: Server,
) -> None:
    page = get(server, "/", headers=HTML, follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/ui/"
    api = get(server, "/", headers={"Accept": "application/json"})
    assert api.status_code == 405
    assert api.json()["__type"] == "UnknownOperationException"
    assert get(server, "/", follow_redirects=False).status_code == 405  # curl's */*
    assert httpx.put(server.endpoint + "/", headers=HTML).status_code == 405
    assert get(server, "/ui", follow_redirects=False).headers["location"] == "/ui/"


def test_the_pages_show_registries_repositories_images_and_one_image(
    server: Server, ecr: Any, repo: str
) -> None:
    older = push(ecr, repo, "v1")
    newer = push(ecr, repo, "v2", media_type="application/vnd.oci.image.manifest.v1+json")
    ecr.put_image(
        repositoryName=repo,
        imageTag="latest",
        imageManifest=ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v2"}])[
            "images"
        ][0]["imageManifest"],
    )

    home = get(server, "/ui/")
    assert home.status_code == 200 and home.headers["content-type"].startswith("text/html")
    assert f'href="/ui/{ACCOUNT}/"' in home.text and "us-east-1" in home.text
    assert "default-src 'none'" in home.headers["content-security-policy"]

    repos = get(server, f"/ui/{ACCOUNT}/?after={repo[:-1]}")
    row = re.search(rf'<tr>\s*<td><a href="/ui/{ACCOUNT}/{repo}">.*?</tr>', repos.text, re.S)
    assert row is not None, repos.text
    cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(0))
    assert cells[0] == "2"  # images

    images = get(server, f"/ui/{ACCOUNT}/{repo}")
    assert images.status_code == 200
    assert images.text.index(newer) < images.text.index(older)  # newest first
    assert '<span class="tag">latest</span>' in images.text
    assert f"127.0.0.1:{server.port}/{repo}" in images.text

    one = get(server, f"/ui/{ACCOUNT}/{repo}@{newer}")
    assert one.status_code == 200
    text = one.text
    assert f"docker pull 127.0.0.1:{server.port}/{repo}@{newer}" in text
    assert f"docker pull 127.0.0.1:{server.port}/{repo}:latest" in text
    assert "application/vnd.oci.image.manifest.v1+json" in text
    assert "&#34;architecture&#34;: &#34;amd64&#34;" in text  # the config, formatted
    assert "Layers" in text and "Manifest" in text

    assert get(server, f"/ui/{ACCOUNT}/{repo}@sha256:{'0' * 64}").status_code == 404
    assert get(server, f"/ui/{ACCOUNT}/no/such-repo").status_code == 404
    assert get(server, "/ui/not-a-registry/").status_code == 404
    assert get(server, f"/ui/{ACCOUNT}/{repo}@nonsense").status_code == 404
    assert get(server, "/ui/static/openecr.css").headers["content-type"].startswith("text/css")


def test_an_index_lists_its_platforms_and_children_link_back(
    server: Server, ecr: Any, repo: str
) -> None:
    children = []
    for arch in ("amd64", "arm64"):
        raw = make_image(ecr, repo, seed=arch)
        digest = ecr.put_image(repositoryName=repo, imageManifest=raw.decode())["image"]["imageId"][
            "imageDigest"
        ]
        children.append(
            {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": digest,
                "size": len(raw),
                "platform": {"os": "linux", "architecture": arch},
            }
        )
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests": children,
        }
    )
    top = ecr.put_image(repositoryName=repo, imageTag="multi", imageManifest=index)["image"][
        "imageId"
    ]["imageDigest"]
    page = get(server, f"/ui/{ACCOUNT}/{repo}@{top}").text
    assert "linux/amd64" in page and "linux/arm64" in page
    assert f'href="/ui/{ACCOUNT}/{repo}@{children[1]["digest"]}"' in page
    child = get(server, f"/ui/{ACCOUNT}/{repo}@{children[0]['digest']}").text
    assert "Listed by" in child and top in child


def test_images_page_by_keyset_and_filter_by_tag_prefix(
    server: Server, ecr: Any, repo: str
) -> None:
    from openecr.api.ui import app

    pushed = [push(ecr, repo, f"build-{i:03}") for i in range(app.PAGE_SIZE + 3)]
    push(ecr, repo, "release-1")
    first = get(server, f"/ui/{ACCOUNT}/{repo}").text
    more = re.search(r'href="(\?after=\d+)">Older', first)
    assert more is not None
    second = get(server, f"/ui/{ACCOUNT}/{repo}{more.group(1).replace('&amp;', '&')}").text
    seen_first = [d for d in pushed if d in first]
    seen_second = [d for d in pushed if d in second]
    assert len(seen_first) == app.PAGE_SIZE - 1 and len(seen_second) == 4
    assert not set(seen_first) & set(seen_second)
    assert "Older" not in second and "Newest" in second

    filtered = get(server, f"/ui/{ACCOUNT}/{repo}", params={"tag": "build-05"}).text
    assert [d for d in pushed if d in filtered] == pushed[50:53]
    assert "release-1" not in filtered
    none = get(server, f"/ui/{ACCOUNT}/{repo}", params={"tag": "zzz"}).text
    assert "No tag starts with" in none


def test_tag_start_finds_the_first_tag_with_a_prefix() -> None:
    from openecr.service.browse import tag_start

    tags = sorted(["a", "a-", "a.b", "a0", "aZ", "a_", "az", "b", "-x", "A"])
    for prefix in ["a", "a-", "a.", "a0", "b", "-", "A", "az", "c"]:
        start = tag_start(prefix)
        assert start is not None
        after = [t for t in tags if t > start]
        expected = [t for t in tags if t >= prefix]
        assert after == expected, prefix


def test_everything_a_client_controls_is_escaped(server: Server, ecr: Any, repo: str) -> None:
    config = json.dumps({"architecture": EVIL, "os": "linux", "config": {"Labels": {"x": EVIL}}})
    config_digest = upload_blob(ecr, repo, config.encode())
    layer = upload_blob(ecr, repo, b"layer " + uuid.uuid4().bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": f"application/x-{EVIL}",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": len(config),
            "digest": config_digest,
        },
        "layers": [{"mediaType": f"application/{EVIL}", "size": 14 + 16, "digest": layer}],
        "annotations": {EVIL: EVIL},
    }
    digest = ecr.put_image(
        repositoryName=repo, imageTag="evil", imageManifest=json.dumps(manifest)
    )["image"]["imageId"]["imageDigest"]
    pages = [
        get(server, f"/ui/{ACCOUNT}/{repo}@{digest}"),
        get(server, f"/ui/{ACCOUNT}/{repo}@{digest}", headers={"Host": f"h{EVIL}"}),
        get(server, f"/ui/{ACCOUNT}/{repo}", params={"tag": EVIL}),
        get(server, f"/ui/{ACCOUNT}/{repo}", params={"after": EVIL}),
        get(server, f"/ui/{ACCOUNT}/", params={"after": EVIL}),
        get(server, f"/ui/{ACCOUNT}/{repo}@{EVIL}"),
        get(server, f"/ui/{ACCOUNT}/{EVIL}"),
        get(server, f"/ui/{EVIL}/"),
    ]
    for page in pages:
        assert page.status_code in (200, 404), page.text
        assert "<script" not in page.text
        assert "alert('x')" not in page.text  # quotes are escaped too
    # in the formatted manifest and config (JSON escapes the double quote)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\\&#34;&amp;&#39;" in pages[0].text
    assert "&lt;script&gt;" in pages[1].text and "&lt;script&gt;" in pages[2].text


@pytest.fixture
def secured(make_server: ServerFactory, tmp_path: Path) -> Server:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(
        "[[credentials]]\n"
        'access_key_id = "AKIDUIREADER"\nsecret_access_key = "ui-secret"\n'
        f'account_id = "{ACCOUNT}"\n'
        "[[credentials]]\n"
        'access_key_id = "AKIDOTHER"\nsecret_access_key = "other-secret"\n'
        'account_id = "210987654321"\n'
    )
    return make_server("--credentials", str(credentials))


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_with_credentials_the_page_needs_a_key_pair_or_a_registry_password(
    secured: Server,
) -> None:
    mine = secured.client(aws_access_key_id="AKIDUIREADER", aws_secret_access_key="ui-secret")
    theirs = secured.client(aws_access_key_id="AKIDOTHER", aws_secret_access_key="other-secret")
    mine.create_repository(repositoryName="mine/app")
    theirs.create_repository(repositoryName="their/app")

    refused = get(secured, "/ui/")
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic realm=")
    for wrong in (basic("AKIDUIREADER", "nope"), basic("AWS", "oe1.x.y"), {"Authorization": "x"}):
        assert get(secured, f"/ui/{ACCOUNT}/", headers=wrong).status_code == 401
    assert get(secured, "/ui/static/openecr.css").status_code == 200

    home = get(secured, "/ui/", headers=basic("AKIDUIREADER", "ui-secret"))
    assert home.status_code == 200
    assert f"/ui/{ACCOUNT}/" in home.text and "210987654321" not in home.text
    repos = get(secured, f"/ui/{ACCOUNT}/", headers=basic("AKIDUIREADER", "ui-secret")).text
    assert "mine/app" in repos and "their/app" not in repos
    other = get(secured, "/ui/210987654321/", headers=basic("AKIDUIREADER", "ui-secret"))
    assert other.status_code == 404

    token = base64.b64decode(
        theirs.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    ).decode()
    user, _, password = token.partition(":")
    page = get(secured, "/ui/210987654321/", headers=basic(user, password))
    assert page.status_code == 200 and "their/app" in page.text


def test_repository_pages_follow_the_policies_the_apis_enforce(secured: Server) -> None:
    """Visibility by account, as the APIs have it: the registries listed are the caller's own,
    while a repository's pages ask the policies (ecr:DescribeImages for its images,
    ecr:BatchGetImage for one image): an explicit Deny hides a repository of one's own account,
    and a repository policy can open one of another account to the caller."""
    mine = secured.client(aws_access_key_id="AKIDUIREADER", aws_secret_access_key="ui-secret")
    theirs = secured.client(aws_access_key_id="AKIDOTHER", aws_secret_access_key="other-secret")
    me = basic("AKIDUIREADER", "ui-secret")
    mine.create_repository(repositoryName="mine/denied")
    theirs.create_repository(repositoryName="their/shared")
    digest = push(theirs, "their/shared", "v1")
    other = "210987654321"

    assert get(secured, f"/ui/{ACCOUNT}/mine/denied", headers=me).status_code == 200
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "ecr:DescribeImages",
            }
        ],
    }
    mine.set_repository_policy(
        repositoryName="mine/denied", policyText=json.dumps(deny), force=True
    )
    assert get(secured, f"/ui/{ACCOUNT}/mine/denied", headers=me).status_code == 404

    shared = f"/ui/{other}/their/shared"
    assert get(secured, shared, headers=me).status_code == 404
    assert get(secured, f"{shared}@{digest}", headers=me).status_code == 404
    allow = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": ["ecr:DescribeImages", "ecr:BatchGetImage"],
            }
        ],
    }
    theirs.set_repository_policy(repositoryName="their/shared", policyText=json.dumps(allow))
    page = get(secured, shared, headers=me)
    assert page.status_code == 200 and digest in page.text
    assert get(secured, f"{shared}@{digest}", headers=me).status_code == 200
    # the other account's registry itself (its list of repositories) stays its own
    assert get(secured, f"/ui/{other}/", headers=me).status_code == 404
    home = get(secured, "/ui/", headers=me)
    assert f"/ui/{other}/" not in home.text
