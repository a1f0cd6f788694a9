"""Pull time update exclusions through boto3 (register, deregister, list) and the service's
``is_excluded`` over a real store."""

from __future__ import annotations

import time

import pytest

from conftest import ACCOUNT, Server, ServerFactory
from conftest import client_error as error
from conftest import unvalidated_client as raw_client
from openecr.backends.memory_metadata import MemoryMetadataStore
from openecr.errors import LimitExceeded
from openecr.service.pull_time_exclusions import MAX_EXCLUSIONS, PullTimeExclusionService

PATTERN = "^arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\\w+=,.@-]+(/[\\w+=,.@-]+)*$"


def user(n: int) -> str:
    return f"arn:aws:iam::{ACCOUNT}:user/puller-{n:04d}"


def test_register_list_and_deregister(make_server: ServerFactory) -> None:
    ecr = make_server().client()
    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == []
    role = f"arn:aws:iam::{ACCOUNT}:role/ci/scanner"
    before = time.time()
    made = ecr.register_pull_time_update_exclusion(principalArn=role)
    assert made["principalArn"] == role
    assert int(before) <= made["createdAt"].timestamp() <= time.time()
    ecr.register_pull_time_update_exclusion(principalArn=user(1))
    foreign = "arn:aws-cn:iam::210987654321:user/elsewhere"  # any account, any partition
    ecr.register_pull_time_update_exclusion(principalArn=foreign)
    listed = ecr.list_pull_time_update_exclusions()
    assert listed["pullTimeUpdateExclusions"] == [foreign, role, user(1)]
    assert "nextToken" not in listed
    assert error(ecr.register_pull_time_update_exclusion, principalArn=role) == (
        "ExclusionAlreadyExistsException",
        f"The pull time update exclusion for principal '{role}' already exists in the registry "
        f"with id '{ACCOUNT}'",
        400,
    )
    gone = ecr.deregister_pull_time_update_exclusion(principalArn=role)
    assert gone["principalArn"] == role
    assert ecr.list_pull_time_update_exclusions()["pullTimeUpdateExclusions"] == [foreign, user(1)]
    assert error(ecr.deregister_pull_time_update_exclusion, principalArn=role) == (
        "ExclusionNotFoundException",
        f"The pull time update exclusion for principal '{role}' does not exist in the registry "
        f"with id '{ACCOUNT}'",
        400,
    )


@pytest.mark.parametrize(
    ("arn", "message"),
    [
        (
            "arn:aws:iam::123456789012:group/devs",
            f"Invalid parameter at 'principalArn' failed to satisfy constraint: 'must satisfy "
            f"regular expression '{PATTERN}''",
        ),
        (
            "arn:aws:sts::123456789012:assumed-role/ci/session",
            f"Invalid parameter at 'principalArn' failed to satisfy constraint: 'must satisfy "
            f"regular expression '{PATTERN}''",
        ),
        (
            f"arn:aws:iam::{ACCOUNT}:user/" + "u" * 200,
            "Invalid parameter at 'principalArn' failed to satisfy constraint: "
            "'must have length less than or equal to 200'",
        ),
    ],
    ids=["group", "assumed-role-session", "too-long"],
)
def test_principals_must_be_iam_users_or_roles(server: Server, arn: str, message: str) -> None:
    client = raw_client(server)
    for call in (
        client.register_pull_time_update_exclusion,
        client.deregister_pull_time_update_exclusion,
    ):
        assert error(call, principalArn=arn) == ("InvalidParameterException", message, 400)


def test_list_pages_hold_at_most_100(make_server: ServerFactory) -> None:
    server = make_server()
    client = raw_client(server)
    arns = [user(n) for n in range(105)]
    for arn in reversed(arns):
        client.register_pull_time_update_exclusion(principalArn=arn)
    first = client.list_pull_time_update_exclusions(maxResults=1000)
    assert first["pullTimeUpdateExclusions"] == arns[:100]
    rest = client.list_pull_time_update_exclusions(nextToken=first["nextToken"])
    assert rest["pullTimeUpdateExclusions"] == arns[100:]
    assert "nextToken" not in rest
    seen: list[str] = []
    token = None
    while True:
        page = client.list_pull_time_update_exclusions(
            maxResults=40, **({"nextToken": token} if token else {})
        )
        seen += page["pullTimeUpdateExclusions"]
        token = page.get("nextToken")
        if token is None:
            break
    assert seen == arns
    assert error(client.list_pull_time_update_exclusions, nextToken="nope") == (
        "InvalidParameterException",
        "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'",
        400,
    )
    assert error(client.list_pull_time_update_exclusions, maxResults=0)[0] == (
        "InvalidParameterException"
    )


def test_exclusions_are_per_registry_and_survive_a_restart(make_server: ServerFactory) -> None:
    server = make_server()
    server.client().register_pull_time_update_exclusion(principalArn=user(7))
    server.restart()
    listed = server.client().list_pull_time_update_exclusions()
    assert listed["pullTimeUpdateExclusions"] == [user(7)]


def test_the_registry_limit() -> None:
    service = PullTimeExclusionService(MemoryMetadataStore())
    for n in range(MAX_EXCLUSIONS):
        service.register(ACCOUNT, user(n))
    with pytest.raises(LimitExceeded) as caught:
        service.register(ACCOUNT, user(MAX_EXCLUSIONS))
    assert caught.value.ecr_type == "LimitExceededException"
    assert caught.value.message == (
        f"The registry with id '{ACCOUNT}' already has the maximum of 1000 pull time update "
        "exclusions"
    )
    service.register("210987654321", user(MAX_EXCLUSIONS))  # another registry has room
    service.deregister(ACCOUNT, user(0))
    service.register(ACCOUNT, user(MAX_EXCLUSIONS))


def test_is_excluded() -> None:
    service = PullTimeExclusionService(MemoryMetadataStore())
    service.register(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/ci/scanner")
    service.register(ACCOUNT, user(1))
    assert service.is_excluded(ACCOUNT, user(1))
    assert not service.is_excluded(ACCOUNT, user(2))
    assert not service.is_excluded("210987654321", user(1))
    assert service.is_excluded(ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/ci/scanner")
    # a session of a registered role is the role (assumed-role ARNs carry no path)
    assert service.is_excluded(ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/scanner/run-1")
    assert not service.is_excluded(ACCOUNT, f"arn:aws:sts::{ACCOUNT}:assumed-role/other/run-1")
    assert not service.is_excluded(ACCOUNT, "arn:aws:sts::210987654321:assumed-role/scanner/run-1")
    service.deregister(ACCOUNT, user(1))
    assert not service.is_excluded(ACCOUNT, user(1))
