"""Pull-through cache rules through boto3 (create, describe, update, delete, validate with
ECR's errors) and the cache itself: a second openecr on loopback is the upstream, anonymous
and behind credentials; pulls through BatchGetImage, GetDownloadUrlForLayer and /v2 fetch,
verify, store and serve; cached copies outlive the upstream; tags are re-checked after the
TTL; concurrent first pulls all succeed."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ACCOUNT, Server, ServerFactory, make_image
from conftest import client_error as error
from openecr.domain.pullthrough import (
    PullThroughRule,
    match_rule,
    normalize_prefix,
    parse_upstream_url,
)
from test_iam_policy import policy, statement
from test_policies import A_ROOT, ALICE, A, as_, credentials_file, denied, token_headers

SECRET_ARN = (
    f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/upstream-abc123"
)
OTHER_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:ecr-pullthroughcache/none-xyz"
DOCKER_V2 = "application/vnd.docker.distribution.manifest.v2+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
UPSTREAM_KEY, UPSTREAM_SECRET = "AKIDUPSTREAM", "upstream-secret"


def unique(prefix: str = "pt") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def push(client: Any, repository: str, tag: str, seed: str = "") -> tuple[str, bytes]:
    """Push a one-layer image; return its digest and manifest."""
    manifest = make_image(client, repository, seed=seed or uuid.uuid4().hex)
    client.put_image(
        repositoryName=repository,
        imageManifest=manifest.decode(),
        imageManifestMediaType=DOCKER_V2,
        imageTag=tag,
    )
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), manifest


def secrets_file(tmp_path: Path, username: str, token: str) -> Path:
    path = tmp_path / "secrets.toml"
    path.write_text(
        f'[[secrets]]\narn = "{SECRET_ARN}"\nusername = "{username}"\naccessToken = "{token}"\n'
    )
    return path


@pytest.fixture
def upstream(make_server: ServerFactory) -> Server:
    return make_server()


@pytest.fixture
def mirror(make_server: ServerFactory) -> Server:
    return make_server()


def rule(client: Any, prefix: str, url: str, **extra: Any) -> dict[str, Any]:
    made: dict[str, Any] = client.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url, **extra
    )
    return made


# --- the domain ------------------------------------------------------------------------------


def test_prefixes_and_upstream_names() -> None:
    assert normalize_prefix("hub/") == "hub"
    assert normalize_prefix("ROOT") == "ROOT"
    hub = PullThroughRule("hub", "localhost:5000", 0, 0)
    deep = PullThroughRule("hub/library", "localhost:5001", 0, 0)
    root = PullThroughRule("ROOT", "localhost:5002", 0, 0, upstream_prefix="mirror")
    assert hub.upstream_repository("hub/library/alpine") == "library/alpine"
    assert hub.upstream_repository("hub") is None
    assert hub.upstream_repository("hubby/x") is None
    assert root.upstream_repository("alpine") == "mirror/alpine"
    assert match_rule([root, hub, deep], "hub/library/alpine") == (deep, "alpine")
    assert match_rule([root, hub], "hub/x") == (hub, "x")
    assert match_rule([root, hub], "other/x") == (root, "mirror/other/x")
    assert match_rule([hub], "other/x") is None


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("quay.io", "https://quay.io"),
        ("localhost:5000", "https://localhost:5000"),
        ("http://127.0.0.1:5000/", "http://127.0.0.1:5000"),
        ("https://registry.example/mirror", "https://registry.example/mirror"),
        ("ftp://host", None),
        ("http://", None),
        ("http://user:pw@host", None),
        ("host:notaport", None),
        (" quay.io", None),
        ("http://host/?q=1", None),
    ],
)
def test_upstream_urls(url: str, base: str | None) -> None:
    assert parse_upstream_url(url) == base


# --- the rules -------------------------------------------------------------------------------


def test_create_describe_update_delete(make_server: ServerFactory, tmp_path: Path) -> None:
    server = make_server("--secrets", str(secrets_file(tmp_path, "u", "t")))
    ecr = server.client()
    made = rule(ecr, "hub/", "registry-1.docker.io", credentialArn=SECRET_ARN)
    assert made["ecrRepositoryPrefix"] == "hub"
    assert made["upstreamRegistryUrl"] == "registry-1.docker.io"
    assert made["upstreamRegistry"] == "docker-hub"  # inferred from the host
    assert made["credentialArn"] == SECRET_ARN
    assert made["registryId"] == ACCOUNT
    assert "updatedAt" not in made
    root = rule(ecr, "ROOT", "http://127.0.0.1:1", upstreamRepositoryPrefix="mirror/")
    assert root["ecrRepositoryPrefix"] == "ROOT"
    assert root["upstreamRepositoryPrefix"] == "mirror"
    assert "upstreamRegistry" not in root  # a host of no kind ECR knows
    rule(ecr, "quay", "quay.io", upstreamRegistry="quay")

    code, message, _ = error(
        ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="hub", upstreamRegistryUrl="x.io"
    )
    assert code == "PullThroughCacheRuleAlreadyExistsException"
    assert "'hub'" in message

    rules = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert [r["ecrRepositoryPrefix"] for r in rules] == ["ROOT", "hub", "quay"]
    assert all("createdAt" in r and "updatedAt" in r for r in rules)
    named = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=["quay/"])
    assert [r["ecrRepositoryPrefix"] for r in named["pullThroughCacheRules"]] == ["quay"]
    page = ecr.describe_pull_through_cache_rules(maxResults=2)
    assert len(page["pullThroughCacheRules"]) == 2
    rest = ecr.describe_pull_through_cache_rules(maxResults=2, nextToken=page["nextToken"])
    assert [r["ecrRepositoryPrefix"] for r in rest["pullThroughCacheRules"]] == ["quay"]
    assert "nextToken" not in rest
    code, _, _ = error(ecr.describe_pull_through_cache_rules, ecrRepositoryPrefixes=["nope"])
    assert code == "PullThroughCacheRuleNotFoundException"

    updated = ecr.update_pull_through_cache_rule(
        ecrRepositoryPrefix="quay", credentialArn=SECRET_ARN
    )
    assert updated["credentialArn"] == SECRET_ARN
    assert "updatedAt" in updated and "upstreamRegistryUrl" not in updated
    code, message, _ = error(
        ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="quay", credentialArn=OTHER_ARN
    )
    assert code == "SecretNotFoundException" and OTHER_ARN in message
    code, _, _ = error(
        ecr.update_pull_through_cache_rule, ecrRepositoryPrefix="gone", credentialArn=SECRET_ARN
    )
    assert code == "PullThroughCacheRuleNotFoundException"

    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="quay")
    assert deleted["ecrRepositoryPrefix"] == "quay"
    assert deleted["credentialArn"] == SECRET_ARN
    code, _, _ = error(ecr.delete_pull_through_cache_rule, ecrRepositoryPrefix="quay")
    assert code == "PullThroughCacheRuleNotFoundException"
    code, _, _ = error(ecr.validate_pull_through_cache_rule, ecrRepositoryPrefix="quay")
    assert code == "PullThroughCacheRuleNotFoundException"


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"upstreamRegistryUrl": "ftp://host"}, "UnsupportedUpstreamRegistryException", "ftp"),
        ({"upstreamRegistryUrl": " "}, "InvalidParameterException", "upstreamRegistryUrl"),
        (
            {"upstreamRegistryUrl": "registry-1.docker.io", "upstreamRegistry": "docker-hub"},
            "InvalidParameterException",
            "credentialArn is required",
        ),
        (
            {"upstreamRegistryUrl": "quay.io", "credentialArn": OTHER_ARN},
            "SecretNotFoundException",
            "--secrets",
        ),
        (
            {"upstreamRegistryUrl": "quay.io", "customRoleArn": "not-a-role"},
            "InvalidParameterException",
            "customRoleArn",
        ),
        (
            {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "Bad"},
            "InvalidParameterException",
            "ecrRepositoryPrefix",
        ),
        (
            {"upstreamRegistryUrl": "quay.io", "ecrRepositoryPrefix": "a" * 31},
            "InvalidParameterException",
            "ecrRepositoryPrefix",
        ),
    ],
)
def test_create_refuses(server: Server, params: dict[str, str], code: str, fragment: str) -> None:
    from conftest import unvalidated_client

    ecr = unvalidated_client(server)
    got, message, status = error(
        ecr.create_pull_through_cache_rule, **{"ecrRepositoryPrefix": unique(), **params}
    )
    assert (got, status) == (code, 400)
    assert fragment in message
    listed = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    assert params.get("ecrRepositoryPrefix", "") not in [r["ecrRepositoryPrefix"] for r in listed]


def test_rule_limit(make_server: ServerFactory) -> None:
    ecr = make_server().client()
    for i in range(50):
        rule(ecr, f"p{i:02d}", "quay.io")
    code, message, _ = error(
        ecr.create_pull_through_cache_rule, ecrRepositoryPrefix="p50", upstreamRegistryUrl="q.io"
    )
    assert code == "LimitExceededException" and "50" in message


def test_validate(mirror: Server, upstream: Server) -> None:
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    rule(ecr, "down", "http://127.0.0.1:1")
    ok = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="up")
    assert ok["isValid"] is True and "failure" not in ok
    assert ok["upstreamRegistryUrl"] == f"http://127.0.0.1:{upstream.port}"
    bad = ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="down")
    assert bad["isValid"] is False and "cannot be reached" in bad["failure"]


# --- the cache -------------------------------------------------------------------------------


def test_batch_get_image_caches_and_serves(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("library/app")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "v1")
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    cached = f"up/{name}"
    got = ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    [image] = got["images"]
    assert image["imageManifest"].encode() == manifest
    assert image["imageId"] == {"imageDigest": digest, "imageTag": "v1"}
    # the repository was made and holds the image; layers come when pulled
    assert ecr.describe_repositories(repositoryNames=[cached])["repositories"]
    layers = json.loads(manifest)["layers"]
    url = ecr.get_download_url_for_layer(repositoryName=cached, layerDigest=layers[0]["digest"])
    body = httpx.get(url["downloadUrl"]).content
    assert "sha256:" + hashlib.sha256(body).hexdigest() == layers[0]["digest"]
    # by digest, and an id the upstream does not have
    again = ecr.batch_get_image(
        repositoryName=cached, imageIds=[{"imageDigest": digest}, {"imageTag": "nope"}]
    )
    assert [i["imageId"]["imageDigest"] for i in again["images"]] == [digest]
    assert [f["failureCode"] for f in again["failures"]] == ["ImageNotFound"]
    # outside the prefix nothing is fetched
    code, _, _ = error(ecr.batch_get_image, repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert code == "RepositoryNotFoundException"


def test_registry_api_pull(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("team/app")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "latest")
    rule(mirror.client(), "up", f"127.0.0.1:{upstream.port}".join(["http://", ""]))
    base = f"{mirror.endpoint}/v2/up/{name}"
    with httpx.Client() as http:
        head = http.head(f"{base}/manifests/latest", headers={"Accept": DOCKER_V2})
        assert head.status_code == 200 and head.headers["docker-content-digest"] == digest
        got = http.get(f"{base}/manifests/latest", headers={"Accept": DOCKER_V2})
        assert got.content == manifest
        doc = json.loads(manifest)
        for blob in [doc["config"], *doc["layers"]]:
            answer = http.get(f"{base}/blobs/{blob['digest']}")
            assert answer.status_code == 200
            assert "sha256:" + hashlib.sha256(answer.content).hexdigest() == blob["digest"]
        missing = http.get(f"{base}/manifests/absent")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        absent = http.get(f"{base}/blobs/sha256:{'0' * 64}")
        assert absent.status_code == 404 and absent.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_multi_arch_list_is_cached_with_every_child(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("multi")
    source.create_repository(repositoryName=name)
    children = []
    for arch in ("amd64", "arm64"):
        digest, manifest = push(source, name, f"only-{arch}", seed=arch)
        children.append(
            {
                "mediaType": DOCKER_V2,
                "size": len(manifest),
                "digest": digest,
                "platform": {"architecture": arch, "os": "linux"},
            }
        )
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})
    source.put_image(
        repositoryName=name, imageManifest=index, imageManifestMediaType=OCI_INDEX, imageTag="v1"
    )
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    got = ecr.batch_get_image(repositoryName=f"up/{name}", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"] == index
    stored = ecr.describe_images(repositoryName=f"up/{name}")["imageDetails"]
    digests = {d["imageDigest"] for d in stored}
    assert {c["digest"] for c in children} < digests and len(digests) == 3


def test_upstream_with_credentials(make_server: ServerFactory, tmp_path: Path) -> None:
    creds = tmp_path / "credentials.toml"
    creds.write_text(
        f'[[credentials]]\naccess_key_id = "{UPSTREAM_KEY}"\n'
        f'secret_access_key = "{UPSTREAM_SECRET}"\naccount_id = "{ACCOUNT}"\n'
    )
    upstream = make_server("--credentials", str(creds))
    source = upstream.client(aws_access_key_id=UPSTREAM_KEY, aws_secret_access_key=UPSTREAM_SECRET)
    token = source.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    name = unique("private")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "v1")
    mirror = make_server("--secrets", str(secrets_file(tmp_path, user, password)))
    ecr = mirror.client()
    url = f"http://127.0.0.1:{upstream.port}"
    rule(ecr, "anon", url)
    rule(ecr, "auth", url, credentialArn=SECRET_ARN)
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="auth")["isValid"] is True
    assert ecr.validate_pull_through_cache_rule(ecrRepositoryPrefix="anon")["isValid"] is False
    # without the secret the upstream refuses: nothing is cached, ECR's upstream error
    code, message, _ = error(
        ecr.batch_get_image, repositoryName=f"anon/{name}", imageIds=[{"imageTag": "v1"}]
    )
    assert code == "UnableToGetUpstreamImageException" and "credentials" in message
    denied = httpx.get(f"{mirror.endpoint}/v2/anon/{name}/manifests/v1")
    assert denied.status_code == 502
    got = ecr.batch_get_image(repositoryName=f"auth/{name}", imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    layer = json.loads(manifest)["layers"][0]["digest"]
    blob = httpx.get(f"{mirror.endpoint}/v2/auth/{name}/blobs/{layer}")
    assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == layer
    # a cached repository that then loses its upstream access: per-image failure codes
    ecr.create_repository(repositoryName=f"anon/{name}")
    failed = ecr.batch_get_image(repositoryName=f"anon/{name}", imageIds=[{"imageTag": "v1"}])
    assert [f["failureCode"] for f in failed["failures"]] == ["UpstreamAccessDenied"]
    assert digest not in json.dumps(failed)


def test_upstream_down_serves_the_cache(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("flaky")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "v1")
    push(source, name, "v2")
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    cached = f"up/{name}"
    ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v1"}])
    config = json.loads(manifest)["config"]["digest"]
    layer = json.loads(manifest)["layers"][0]["digest"]
    ecr.get_download_url_for_layer(repositoryName=cached, layerDigest=config)
    upstream.stop()
    got = ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    assert httpx.get(f"{mirror.endpoint}/v2/{cached}/blobs/{config}").status_code == 200
    # what was never cached: ECR's upstream errors
    missing = ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v2"}])
    assert [f["failureCode"] for f in missing["failures"]] == ["UpstreamUnavailable"]
    code, _, _ = error(ecr.get_download_url_for_layer, repositoryName=cached, layerDigest=layer)
    assert code == "UnableToGetUpstreamLayerException"
    answer = httpx.get(f"{mirror.endpoint}/v2/{cached}/manifests/v2")
    assert answer.status_code == 502 and answer.json()["errors"][0]["code"] == "UNKNOWN"
    code, _, _ = error(
        ecr.batch_get_image, repositoryName=f"up/{unique()}", imageIds=[{"imageTag": "v1"}]
    )
    assert code == "UnableToGetUpstreamImageException"
    upstream.start()
    again = ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v2"}])
    assert again["failures"] == [] and digest not in json.dumps(again)


@pytest.mark.parametrize("ttl", ["0", "86400"])
def test_tags_are_rechecked_after_the_ttl(
    make_server: ServerFactory, upstream: Server, ttl: str
) -> None:
    source = upstream.client()
    name = unique("moving")
    source.create_repository(repositoryName=name)
    first, _ = push(source, name, "latest")
    mirror = make_server("--pull-through-ttl", ttl)
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")

    def pulled() -> str:
        got = ecr.batch_get_image(repositoryName=f"up/{name}", imageIds=[{"imageTag": "latest"}])
        digest: str = got["images"][0]["imageId"]["imageDigest"]
        return digest

    assert pulled() == first
    second, _ = push(source, name, "latest")
    assert pulled() == (second if ttl == "0" else first)


def test_concurrent_first_pulls(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("crowd")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "v1")
    rule(mirror.client(), "up", f"http://127.0.0.1:{upstream.port}")
    results: list[bytes] = []

    def pull() -> None:
        with httpx.Client(timeout=60) as http:
            got = http.get(
                f"{mirror.endpoint}/v2/up/{name}/manifests/v1", headers={"Accept": DOCKER_V2}
            )
            results.append(got.content if got.status_code == 200 else got.text.encode())

    threads = [threading.Thread(target=pull) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [manifest] * 8
    images = mirror.client().describe_images(repositoryName=f"up/{name}")["imageDetails"]
    assert [i["imageDigest"] for i in images] == [digest]


def test_pushes_into_a_cache_repository_are_refused(
    make_server: ServerFactory, upstream: Server
) -> None:
    """Only the cache writes into its repositories: every push operation of both APIs is
    refused with InvalidParameterException / DENIED, nothing is stored, and the cache keeps
    caching. The repository stays a cache when its rule is deleted."""
    source = upstream.client()
    name = unique("mixed")
    source.create_repository(repositoryName=name)
    digest, manifest = push(source, name, "v1")
    mirror = make_server("--create-on-push")
    ecr = mirror.client()
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    cached = f"up/{name}"
    ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v1"}])
    layer = json.loads(manifest)["layers"][0]["digest"]
    httpx.get(f"{mirror.endpoint}/v2/{cached}/blobs/{layer}").raise_for_status()

    def refused_everywhere(repository: str, ecr_code: str = "InvalidParameterException") -> None:
        code, message, status = error(ecr.initiate_layer_upload, repositoryName=repository)
        assert (code, status) == (ecr_code, 400)
        assert repository in message
        code, _, _ = error(
            ecr.put_image,
            repositoryName=repository,
            imageManifest=manifest.decode(),
            imageManifestMediaType=DOCKER_V2,
            imageTag="mine",
        )
        assert code == ecr_code
        base = f"{mirror.endpoint}/v2/{repository}"
        with httpx.Client() as http:
            answers = [
                http.post(f"{base}/blobs/uploads/"),
                http.post(f"{base}/blobs/uploads/", params={"mount": layer, "from": cached}),
                http.put(
                    f"{base}/manifests/mine",
                    content=manifest,
                    headers={"Content-Type": DOCKER_V2},
                ),
            ]
        for answer in answers:
            assert answer.status_code == 403, answer.text
            assert answer.json()["errors"][0]["code"] == "DENIED"

    refused_everywhere(cached)
    message = error(ecr.initiate_layer_upload, repositoryName=cached)[1]
    assert "is a pull through cache repository" in message
    tags = ecr.describe_images(repositoryName=cached)["imageDetails"][0]["imageTags"]
    assert tags == ["v1"]
    # a name the rule covers is not created by a /v2 push (create-on-push), only by the cache;
    # ECR's API has no create-on-push: the repository is not found
    refused_everywhere(f"up/{unique('fresh')}", "RepositoryNotFoundException")
    listed = [r["repositoryName"] for r in ecr.describe_repositories()["repositories"]]
    assert listed == [cached]

    # an upload opened before the repository became a cache cannot complete
    early = unique("early")
    ecr.create_repository(repositoryName=f"later/{early}")
    upload = ecr.initiate_layer_upload(repositoryName=f"later/{early}")["uploadId"]
    ecr.upload_layer_part(
        repositoryName=f"later/{early}",
        uploadId=upload,
        partFirstByte=0,
        partLastByte=2,
        layerPartBlob=b"abc",
    )
    rule(ecr, "later", f"http://127.0.0.1:{upstream.port}")
    code, _, _ = error(
        ecr.complete_layer_upload,
        repositoryName=f"later/{early}",
        uploadId=upload,
        layerDigests=["sha256:" + hashlib.sha256(b"abc").hexdigest()],
    )
    assert code == "InvalidParameterException"

    # the cache itself still writes: a tag that appeared upstream is fetched
    second, _ = push(source, name, "v2")
    got = ecr.batch_get_image(repositoryName=cached, imageIds=[{"imageTag": "v2"}])
    assert got["images"][0]["imageId"]["imageDigest"] == second

    # the rule goes; what it cached stays a cache (pushes refused), other names are open
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="up")
    refused_everywhere(cached)
    assert {
        i["imageDigest"] for i in ecr.describe_images(repositoryName=cached)["imageDetails"]
    } == {
        digest,
        second,
    }
    own = f"up/{unique('own')}"
    ecr.create_repository(repositoryName=own)
    pushed, _ = push(ecr, own, "local")
    got = ecr.batch_get_image(repositoryName=own, imageIds=[{"imageTag": "local"}])
    assert got["images"][0]["imageId"]["imageDigest"] == pushed


def test_creation_template_applies(mirror: Server, upstream: Server) -> None:
    source = upstream.client()
    name = unique("tpl")
    source.create_repository(repositoryName=name)
    push(source, name, "v1")
    ecr = mirror.client()
    ecr.create_repository_creation_template(
        prefix="up",
        appliedFor=["PULL_THROUGH_CACHE"],
        imageTagMutability="IMMUTABLE",
        resourceTags=[{"Key": "cache", "Value": "yes"}],
    )
    rule(ecr, "up", f"http://127.0.0.1:{upstream.port}")
    ecr.batch_get_image(repositoryName=f"up/{name}", imageIds=[{"imageTag": "v1"}])
    [repo] = ecr.describe_repositories(repositoryNames=[f"up/{name}"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert tags == [{"Key": "cache", "Value": "yes"}]


def test_importing_needs_batch_import_upstream_image(
    make_server: ServerFactory, upstream: Server, tmp_path: Path
) -> None:
    """With --credentials the caller of a pull that caches needs ecr:BatchImportUpstreamImage
    (and ecr:CreateRepository when the pull creates the repository), as the registry's
    policies decide; a refusal is AccessDeniedException / DENIED. Served from the cache, a
    pull needs neither."""
    source = upstream.client()
    source.create_repository(repositoryName="lib/app")
    _, manifest = push(source, "lib/app", "v1")
    config, layer = (
        d["digest"] for d in [json.loads(manifest)["config"], *json.loads(manifest)["layers"]]
    )
    mirror = make_server(
        "--credentials", str(credentials_file(tmp_path)), "--pull-through-ttl", "0"
    )
    owner, alice = as_(mirror, A_ROOT), as_(mirror, ALICE)
    rule(owner, "up", f"http://127.0.0.1:{upstream.port}")
    name = "up/lib/app"
    v2 = httpx.Client(base_url=mirror.endpoint, headers=token_headers(mirror, ALICE))

    def deny(*actions: str) -> None:
        owner.put_registry_policy(
            policyText=policy(
                statement(
                    Effect="Deny",
                    Principal={"AWS": ALICE},
                    Action=[f"ecr:{a}" for a in actions],
                    Resource=f"arn:aws:ecr:us-east-1:{A}:repository/*",
                )
            )
        )

    def v2_denied(path: str, action: str) -> None:
        answer = v2.get(f"/v2/{name}/{path}")
        [found] = answer.json()["errors"]
        assert (answer.status_code, found["code"]) == (403, "DENIED")
        assert found["message"] == denied(ALICE, action, name, explicit=True)

    # no import: nothing fetched, no repository
    deny("BatchImportUpstreamImage")
    code, message, _ = error(
        alice.batch_get_image, repositoryName=name, imageIds=[{"imageTag": "v1"}]
    )
    assert (code, message) == (
        "AccessDeniedException",
        denied(ALICE, "BatchImportUpstreamImage", name, explicit=True),
    )
    v2_denied("manifests/v1", "BatchImportUpstreamImage")
    # no repository creation: the same, for CreateRepository
    deny("CreateRepository")
    code, message, _ = error(
        alice.batch_get_image, repositoryName=name, imageIds=[{"imageTag": "v1"}]
    )
    assert message == denied(ALICE, "CreateRepository", name, explicit=True)
    v2_denied("manifests/v1", "CreateRepository")
    assert owner.describe_repositories()["repositories"] == []
    # the owner's pull creates and caches; then alice needs only BatchImportUpstreamImage
    owner.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    got = alice.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    assert v2.get(f"/v2/{name}/blobs/{layer}").status_code == 200  # imported by alice
    deny("BatchImportUpstreamImage")
    v2_denied(f"blobs/{config}", "BatchImportUpstreamImage")
    code, message, _ = error(
        alice.get_download_url_for_layer, repositoryName=name, layerDigest=config
    )
    assert message == denied(ALICE, "BatchImportUpstreamImage", name, explicit=True)
    # what is cached is served without the right to import, a tag that moved upstream too
    assert v2.get(f"/v2/{name}/manifests/v1").content == manifest
    assert v2.get(f"/v2/{name}/blobs/{layer}").status_code == 200
    moved, _ = push(source, "lib/app", "v1")
    got = alice.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageManifest"].encode() == manifest
    got = owner.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == moved
    owner.delete_registry_policy()
    assert v2.get(f"/v2/{name}/blobs/{config}").status_code == 200
    v2.close()
