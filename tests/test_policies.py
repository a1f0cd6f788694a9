"""Repository and registry policies through boto3 and /v2 (httpx): the six operations, ECR's
validation and errors, and enforcement across two accounts in one credentials file
(docs/policies.md)."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ACCOUNT, InProcessServer, Server, ServerFactory, free_port, make_image
from conftest import client_error as error
from conftest import unvalidated_client as raw_client
from openecr.backends.memory_metadata import MemoryMetadataStore
from openecr.service.policies import PolicyService
from test_iam_policy import INVALID, UNSUPPORTED, VALID, policy, statement

A, B = "111111111111", "222222222222"
A_ROOT = f"arn:aws:iam::{A}:root"
ALICE = f"arn:aws:iam::{A}:user/alice"
B_ROOT = f"arn:aws:iam::{B}:root"
BOB = f"arn:aws:iam::{B}:user/bob"
# access key -> (secret, account, principal or None)
KEYS = {
    "AKIAAROOT00000000000": ("secret-a", A, None),
    "AKIAALICE0000000000A": ("secret-alice", A, ALICE),
    "AKIABROOT00000000000": ("secret-b", B, None),
    "AKIABOB000000000000B": ("secret-bob", B, BOB),
}
KEY_OF = {A_ROOT: "AKIAAROOT00000000000", ALICE: "AKIAALICE0000000000A"}
KEY_OF |= {B_ROOT: "AKIABROOT00000000000", BOB: "AKIABOB000000000000B"}
PULL = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def credentials_file(directory: Path) -> Path:
    lines = []
    for key, (secret, account, principal) in KEYS.items():
        lines += [
            "[[credentials]]",
            f'access_key_id = "{key}"',
            f'secret_access_key = "{secret}"',
            f'account_id = "{account}"',
        ]
        if principal is not None:
            lines.append(f'principal = "{principal}"')
        lines.append("")
    path = directory / "credentials.toml"
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("policies")
    server = InProcessServer(
        base / "data", free_port(), ["--credentials", str(credentials_file(base))]
    )
    server.start()
    yield server
    server.stop()


def as_(server: Server, principal: str) -> Any:
    key = KEY_OF[principal]
    return server.client(aws_access_key_id=key, aws_secret_access_key=KEYS[key][0])


def denied(principal: str, action: str, name: str, *, explicit: bool = False) -> str:
    reason = (
        "with an explicit deny in a resource-based policy"
        if explicit
        else f"because no resource-based policy allows the ecr:{action} action"
    )
    return (
        f"User: {principal} is not authorized to perform: ecr:{action} on resource: "
        f"arn:aws:ecr:us-east-1:{A}:repository/{name} {reason}"
    )


def pushed(ecr: Any, name: str, tag: str = "v1") -> tuple[str, dict[str, Any]]:
    """Push an image; return its digest and manifest document."""
    manifest = make_image(ecr, name, seed=tag)
    ecr.put_image(repositoryName=name, imageManifest=manifest.decode(), imageTag=tag)
    return "sha256:" + hashlib.sha256(manifest).hexdigest(), json.loads(manifest)


def unique(prefix: str) -> str:
    return f"{prefix}/{uuid.uuid4().hex[:8]}"


# --- the operations (open mode: stored and validated) --------------------------------------------


def test_repository_policy_round_trip(ecr: Any, repo: str) -> None:
    text = policy()
    done = ecr.set_repository_policy(repositoryName=repo, policyText=text)
    done.pop("ResponseMetadata")
    assert done == {"registryId": ACCOUNT, "repositoryName": repo, "policyText": text}
    got = ecr.get_repository_policy(repositoryName=repo)
    assert (got["registryId"], got["repositoryName"], got["policyText"]) == (ACCOUNT, repo, text)
    replaced = policy(statement(Action="ecr:*"))
    ecr.set_repository_policy(repositoryName=repo, policyText=replaced)
    assert ecr.get_repository_policy(repositoryName=repo)["policyText"] == replaced
    gone = ecr.delete_repository_policy(repositoryName=repo)
    assert (gone["repositoryName"], gone["policyText"]) == (repo, replaced)
    not_found = (
        "RepositoryPolicyNotFoundException",
        f"Repository policy does not exist for the repository with name '{repo}' in the registry "
        f"with id '{ACCOUNT}'",
        400,
    )
    assert error(ecr.get_repository_policy, repositoryName=repo) == not_found
    assert error(ecr.delete_repository_policy, repositoryName=repo) == not_found


def test_repository_policy_of_a_missing_repository(ecr: Any) -> None:
    missing = (
        "RepositoryNotFoundException",
        f"The repository with name 'no/such' does not exist in the registry with id '{ACCOUNT}'",
        400,
    )
    assert error(ecr.set_repository_policy, repositoryName="no/such", policyText="{") == missing
    assert error(ecr.get_repository_policy, repositoryName="no/such") == missing
    assert error(ecr.delete_repository_policy, repositoryName="no/such") == missing


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_valid_repository_policies(ecr: Any, repo: str, text: str) -> None:
    assert ecr.set_repository_policy(repositoryName=repo, policyText=text)["policyText"] == text


@pytest.mark.parametrize("text", INVALID.values(), ids=INVALID.keys())
def test_invalid_repository_policies(server: Server, repo: str, text: str) -> None:
    ecr = raw_client(server)
    assert error(ecr.set_repository_policy, repositoryName=repo, policyText=text) == (
        "InvalidParameterException",
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
        "'Invalid repository policy provided'",
        400,
    )
    assert error(ecr.get_repository_policy, repositoryName=repo)[0] == (
        "RepositoryPolicyNotFoundException"
    )


@pytest.mark.parametrize(("condition", "says"), UNSUPPORTED.values(), ids=UNSUPPORTED.keys())
def test_unsupported_conditions_say_so(
    ecr: Any, repo: str, condition: dict[str, Any], says: str
) -> None:
    text = policy(statement(Condition=condition))
    code, message, _ = error(ecr.set_repository_policy, repositoryName=repo, policyText=text)
    assert code == "InvalidParameterException"
    assert message.startswith("Invalid parameter at 'PolicyText' failed to satisfy constraint: ")
    assert "openecr does not evaluate" in message and says in message


def test_a_policy_locking_the_caller_out_needs_force(ecr: Any, repo: str) -> None:
    lockout = policy(statement(Effect="Deny", Principal="*", Action="ecr:SetRepositoryPolicy"))
    code, message, _ = error(ecr.set_repository_policy, repositoryName=repo, policyText=lockout)
    assert code == "InvalidParameterException"
    assert "set force to apply it anyway" in message
    done = ecr.set_repository_policy(repositoryName=repo, policyText=lockout, force=True)
    assert done["policyText"] == lockout


def test_registry_policy_round_trip(make_server: ServerFactory) -> None:
    ecr = make_server().client()
    not_found = (
        "RegistryPolicyNotFoundException",
        f"Registry policy does not exist in the registry with id '{ACCOUNT}'",
        400,
    )
    assert error(ecr.get_registry_policy) == not_found
    assert error(ecr.delete_registry_policy) == not_found
    text = policy(statement(Action=["ecr:ReplicateImage", "ecr:CreateRepository"]))
    assert ecr.put_registry_policy(policyText=text)["policyText"] == text
    got = ecr.get_registry_policy()
    assert (got["registryId"], got["policyText"]) == (ACCOUNT, text)
    gone = ecr.delete_registry_policy()
    assert (gone["registryId"], gone["policyText"]) == (ACCOUNT, text)
    assert error(ecr.get_registry_policy) == not_found


def test_registry_policy_scope_v1_grants_only_its_actions(make_server: ServerFactory) -> None:
    ecr = make_server().client()
    invalid = (
        "InvalidParameterException",
        "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
        "'Invalid registry policy provided'",
        400,
    )
    wide = policy(statement(Action=PULL))
    ecr.put_registry_policy(policyText=wide)  # V2 (the default) covers every action
    ecr.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
    assert error(ecr.put_registry_policy, policyText=wide) == invalid
    assert error(ecr.put_registry_policy, policyText=policy(statement(Action="ecr:*"))) == invalid
    v1 = policy(statement(Action=["ecr:ReplicateImage", "ecr:BatchImportUpstreamImage"]))
    ecr.put_registry_policy(policyText=v1)
    assert ecr.get_registry_policy()["policyText"] == v1
    assert error(ecr.put_registry_policy, policyText="{}") == invalid


def test_without_credentials_policies_are_not_enforced(ecr: Any, repo: str) -> None:
    digest, _ = pushed(ecr, repo)
    deny_all = policy(statement(Effect="Deny", Principal="*", Action="ecr:*"))
    ecr.set_repository_policy(repositoryName=repo, policyText=deny_all, force=True)
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": digest}])
    assert got["images"] and not got["failures"]


# --- enforcement: two accounts ---------------------------------------------------------------


def test_another_account_needs_the_repository_policy(secured: Server) -> None:
    name = unique("cross")
    owner, bob, b_root = as_(secured, A_ROOT), as_(secured, BOB), as_(secured, B_ROOT)
    owner.create_repository(repositoryName=name)
    digest, manifest = pushed(owner, name)
    layer = manifest["layers"][0]["digest"]
    ids = [{"imageDigest": digest}]
    for action, call, params in (
        ("BatchGetImage", bob.batch_get_image, {"imageIds": ids}),
        ("GetDownloadUrlForLayer", bob.get_download_url_for_layer, {"layerDigest": layer}),
        ("DescribeImages", bob.describe_images, {}),
    ):
        assert error(call, registryId=A, repositoryName=name, **params) == (
            "AccessDeniedException",
            denied(BOB, action, name),
            400,
        )
    owner.set_repository_policy(
        repositoryName=name, policyText=policy(statement(Principal={"AWS": B}, Action=PULL))
    )
    for who in (bob, b_root):  # the account names every principal in it
        got = who.batch_get_image(registryId=A, repositoryName=name, imageIds=ids)
        assert [i["imageId"]["imageDigest"] for i in got["images"]] == [digest]
        url = who.get_download_url_for_layer(registryId=A, repositoryName=name, layerDigest=layer)
        assert httpx.get(url["downloadUrl"]).status_code == 200
    # what the policy does not grant stays refused
    assert error(bob.describe_images, registryId=A, repositoryName=name)[1] == denied(
        BOB, "DescribeImages", name
    )
    assert error(bob.delete_repository, registryId=A, repositoryName=name, force=True)[1] == (
        denied(BOB, "DeleteRepository", name)
    )
    assert error(bob.set_repository_policy, registryId=A, repositoryName=name, policyText="{}")[
        1
    ] == denied(BOB, "SetRepositoryPolicy", name)
    # a policy naming one user allows that user only
    owner.set_repository_policy(
        repositoryName=name, policyText=policy(statement(Principal={"AWS": BOB}, Action="ecr:*"))
    )
    assert bob.describe_images(registryId=A, repositoryName=name)["imageDetails"]
    assert error(b_root.batch_get_image, registryId=A, repositoryName=name, imageIds=ids)[1] == (
        denied(B_ROOT, "BatchGetImage", name)
    )
    # conditions: only users of account B
    owner.set_repository_policy(
        repositoryName=name,
        policyText=policy(
            statement(
                Principal="*",
                Condition={"StringLike": {"aws:PrincipalArn": f"arn:aws:iam::{B}:user/*"}},
            )
        ),
    )
    assert bob.batch_get_image(registryId=A, repositoryName=name, imageIds=ids)["images"]
    assert error(b_root.batch_get_image, registryId=A, repositoryName=name, imageIds=ids)[0] == (
        "AccessDeniedException"
    )
    # the owner deletes the policy: account B is out again
    owner.delete_repository_policy(repositoryName=name)
    assert error(bob.batch_get_image, registryId=A, repositoryName=name, imageIds=ids)[0] == (
        "AccessDeniedException"
    )


def test_a_deny_refuses_a_principal_of_the_owning_account(secured: Server) -> None:
    name = unique("deny")
    owner, alice = as_(secured, A_ROOT), as_(secured, ALICE)
    owner.create_repository(repositoryName=name)
    digest, _ = pushed(alice, name)  # the owning account's principals need no policy
    ids = [{"imageDigest": digest}]
    owner.set_repository_policy(
        repositoryName=name,
        policyText=policy(
            statement(Effect="Deny", Principal={"AWS": ALICE}, Action=["ecr:BatchGetImage"])
        ),
    )
    assert error(alice.batch_get_image, repositoryName=name, imageIds=ids) == (
        "AccessDeniedException",
        denied(ALICE, "BatchGetImage", name, explicit=True),
        400,
    )
    assert alice.describe_images(repositoryName=name)["imageDetails"]  # not denied
    assert owner.batch_get_image(repositoryName=name, imageIds=ids)["images"]
    # a Deny wins over an Allow in the registry policy too
    owner.put_registry_policy(
        policyText=policy(statement(Effect="Deny", Principal={"AWS": ALICE}, Action="ecr:List*"))
    )
    try:
        assert error(alice.list_images, repositoryName=name)[1] == denied(
            ALICE, "ListImages", name, explicit=True
        )
        assert owner.list_images(repositoryName=name)["imageIds"]
    finally:
        owner.delete_registry_policy()


def test_the_registry_policy_by_scope(secured: Server) -> None:
    owner, bob = as_(secured, A_ROOT), as_(secured, BOB)
    name = unique("registry")
    owner.create_repository(repositoryName=name)
    digest, _ = pushed(owner, name)
    ids = [{"imageDigest": digest}]
    resource = f"arn:aws:ecr:us-east-1:{A}:repository/*"
    owner.put_registry_policy(
        policyText=policy(
            statement(
                Principal={"AWS": BOB},
                Action=["ecr:BatchGetImage", "ecr:CreateRepository"],
                Resource=resource,
            )
        )
    )
    try:
        # V2 (the default): the registry policy covers every action
        assert bob.batch_get_image(registryId=A, repositoryName=name, imageIds=ids)["images"]
        made = unique("by-bob")
        created = bob.create_repository(registryId=A, repositoryName=made)["repository"]
        assert created["registryId"] == A
        # V1: only ReplicateImage, CreateRepository and BatchImportUpstreamImage
        owner.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V1")
        assert error(bob.batch_get_image, registryId=A, repositoryName=name, imageIds=ids)[1] == (
            denied(BOB, "BatchGetImage", name)
        )
        assert bob.create_repository(registryId=A, repositoryName=unique("by-bob"))
    finally:
        owner.put_account_setting(name="REGISTRY_POLICY_SCOPE", value="V2")
        owner.delete_registry_policy()
    assert error(bob.create_repository, registryId=A, repositoryName=unique("by-bob"))[0] == (
        "AccessDeniedException"
    )


def test_registry_allows_for_replication() -> None:
    service = PolicyService(MemoryMetadataStore())
    replicate = ["ecr:ReplicateImage", "ecr:CreateRepository"]
    assert service.registry_allows(A, ALICE, replicate, region="us-east-1")  # its own account
    assert not service.registry_allows(A, B_ROOT, replicate, region="us-east-1")
    service.put_registry_policy(
        A, policy(statement(Principal={"AWS": B}, Action=replicate, Resource="*"))
    )
    assert service.registry_allows(A, B_ROOT, replicate, region="us-east-1")
    assert not service.registry_allows(A, B_ROOT, [*replicate, "ecr:PutImage"], region="us-east-1")
    service.put_registry_policy(
        A,
        policy(
            statement(Principal={"AWS": B}, Action=replicate),
            statement(Effect="Deny", Principal={"AWS": ALICE}, Action="ecr:ReplicateImage"),
        ),
    )
    assert not service.registry_allows(A, ALICE, replicate, region="us-east-1")


# --- /v2: the token carries the principal ------------------------------------------------------


def token_headers(server: Server, principal: str) -> dict[str, str]:
    data = as_(server, principal).get_authorization_token()["authorizationData"][0]
    host = f"{A}.dkr.ecr.us-east-1.amazonaws.com:{server.port}"
    return {"Authorization": f"Basic {data['authorizationToken']}", "Host": host}


def v2_error(response: httpx.Response) -> tuple[int, str, str]:
    [found] = response.json()["errors"]
    return response.status_code, found["code"], found["message"]


def test_a_pull_from_another_account_over_v2(secured: Server) -> None:
    name = unique("v2")
    owner = as_(secured, A_ROOT)
    owner.create_repository(repositoryName=name)
    digest, manifest = pushed(owner, name)
    layer = manifest["layers"][0]["digest"]
    bob = token_headers(secured, BOB)
    with httpx.Client(base_url=secured.endpoint) as client:
        response = client.get(f"/v2/{name}/manifests/v1", headers=bob)
        assert v2_error(response) == (403, "DENIED", denied(BOB, "BatchGetImage", name))
        owner.set_repository_policy(
            repositoryName=name, policyText=policy(statement(Principal={"AWS": BOB}, Action=PULL))
        )
        assert client.get(f"/v2/{name}/manifests/v1", headers=bob).status_code == 200
        assert client.get(f"/v2/{name}/blobs/{layer}", headers=bob).status_code == 200
        response = client.get(f"/v2/{name}/tags/list", headers=bob)  # ListImages: not granted
        assert v2_error(response) == (403, "DENIED", denied(BOB, "ListImages", name))
        response = client.post(f"/v2/{name}/blobs/uploads/", headers=bob)
        assert v2_error(response)[:2] == (403, "DENIED")
        # only the manifest: BatchGetImage without GetDownloadUrlForLayer
        owner.set_repository_policy(
            repositoryName=name,
            policyText=policy(statement(Principal={"AWS": BOB}, Action="ecr:BatchGetImage")),
        )
        assert client.get(f"/v2/{name}/manifests/{digest}", headers=bob).status_code == 200
        response = client.get(f"/v2/{name}/blobs/{layer}", headers=bob)
        assert v2_error(response) == (403, "DENIED", denied(BOB, "GetDownloadUrlForLayer", name))
        # a Deny on a principal of the owning account, over /v2
        owner.set_repository_policy(
            repositoryName=name,
            policyText=policy(statement(Effect="Deny", Principal={"AWS": ALICE}, Action=PULL)),
        )
        alice = token_headers(secured, ALICE)
        response = client.get(f"/v2/{name}/manifests/v1", headers=alice)
        assert v2_error(response) == (
            403,
            "DENIED",
            denied(ALICE, "BatchGetImage", name, explicit=True),
        )
        root = token_headers(secured, A_ROOT)
        assert client.get(f"/v2/{name}/manifests/v1", headers=root).status_code == 200


def test_a_token_names_its_principal(secured: Server) -> None:
    data = as_(secured, BOB).get_authorization_token()["authorizationData"][0]
    password = base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]
    payload = password.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["a"], claims["p"]) == (B, BOB)


# --- pull-time update exclusions: the principal that pulls -------------------------------------


def test_excluded_principals_leave_pull_times_alone(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server("--credentials", str(credentials_file(tmp_path)))
    owner = as_(server, A_ROOT)
    name = "pulls/app"
    owner.create_repository(repositoryName=name)
    digests = {tag: pushed(owner, name, tag) for tag in ("api", "v2", "layer", "root")}
    owner.register_pull_time_update_exclusion(principalArn=ALICE)
    alice = as_(server, ALICE)
    alice.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "api"}])
    layer = digests["layer"][1]["layers"][0]["digest"]
    alice.get_download_url_for_layer(repositoryName=name, layerDigest=layer)
    with httpx.Client(base_url=server.endpoint) as client:
        response = client.get(f"/v2/{name}/manifests/v2", headers=token_headers(server, ALICE))
        assert response.status_code == 200
    owner.batch_get_image(repositoryName=name, imageIds=[{"imageTag": "root"}])
    server.restart()  # a stop writes every pull time noted

    def pulled(tag: str) -> bool:
        [found] = as_(server, A_ROOT).describe_images(
            repositoryName=name, imageIds=[{"imageTag": tag}]
        )["imageDetails"]
        return "lastRecordedPullTime" in found

    assert {tag: pulled(tag) for tag in digests} == {
        "api": False,
        "v2": False,
        "layer": False,
        "root": True,
    }
    # once deregistered, the principal's pulls count again
    as_(server, A_ROOT).deregister_pull_time_update_exclusion(principalArn=ALICE)
    as_(server, ALICE).batch_get_image(repositoryName=name, imageIds=[{"imageTag": "api"}])
    server.restart()
    assert pulled("api")


def test_a_mount_needs_the_source_readable(secured: Server) -> None:
    """A cross-repository mount reads the source: without GetDownloadUrlForLayer there it is an
    ordinary upload session (202), not a mount (201)."""
    owner, alice = as_(secured, A_ROOT), as_(secured, ALICE)
    source, target = unique("mount-src"), unique("mount-dst")
    for name in (source, target):
        owner.create_repository(repositoryName=name)
    _, manifest = pushed(owner, source)
    layer = manifest["layers"][0]["digest"]
    path = f"/v2/{target}/blobs/uploads/?mount={layer}&from={source}"
    with httpx.Client(base_url=secured.endpoint) as client:
        owner_headers = token_headers(secured, A_ROOT)
        owner.set_repository_policy(
            repositoryName=source,
            policyText=policy(
                statement(
                    Effect="Deny", Principal={"AWS": ALICE}, Action="ecr:GetDownloadUrlForLayer"
                )
            ),
        )
        response = client.post(path, headers=token_headers(secured, ALICE))
        assert response.status_code == 202  # an upload session: nothing was mounted
        assert client.head(f"/v2/{target}/blobs/{layer}", headers=owner_headers).status_code == 404
        response = client.post(path, headers=owner_headers)
        assert response.status_code == 201
    assert alice.describe_repositories(repositoryNames=[target])["repositories"]


def test_get_authorization_token_is_not_refused_by_policy(secured: Server) -> None:
    owner = as_(secured, A_ROOT)
    owner.put_registry_policy(
        policyText=policy(
            statement(Effect="Deny", Principal="*", Action="ecr:GetAuthorizationToken")
        )
    )
    try:
        assert as_(secured, ALICE).get_authorization_token()["authorizationData"]
    finally:
        owner.delete_registry_policy()


def test_a_template_policy_stored_unvalidated_is_not_applied(make_server: ServerFactory) -> None:
    """A template written by an older version (whose policy check was only "a JSON object")
    creates repositories without its invalid policy; a valid one becomes the policy."""
    from openecr.bootstrap import open_metadata

    server = make_server("--create-on-push")
    ecr = server.client()
    for prefix in ("valid", "legacy"):
        ecr.create_repository_creation_template(
            prefix=prefix, appliedFor=["CREATE_ON_PUSH"], repositoryPolicy=policy()
        )
    store = open_metadata(f"sqlite:///{server.data_dir / 'metadata.db'}")
    try:
        with store.write() as tx:
            stored = tx.get_document(ACCOUNT, "creation-template", "legacy")
            assert stored is not None
            doc = json.loads(stored)
            assert doc["repositoryPolicy"] == policy()
            doc["repositoryPolicy"] = '{"Statement": []}'
            tx.put_document(ACCOUNT, "creation-template", "legacy", json.dumps(doc))
    finally:
        store.close()
    for name in ("valid/app", "legacy/app"):
        data = name.encode()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = httpx.post(
            f"{server.endpoint}/v2/{name}/blobs/uploads/", params={"digest": digest}, content=data
        )
        assert response.status_code == 201, response.text
    assert ecr.get_repository_policy(repositoryName="valid/app")["policyText"] == policy()
    assert error(ecr.get_repository_policy, repositoryName="legacy/app")[0] == (
        "RepositoryPolicyNotFoundException"
    )
