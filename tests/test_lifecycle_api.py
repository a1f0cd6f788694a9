"""Lifecycle policies through boto3: Put/Get/DeleteLifecyclePolicy with ECR's validation and
errors, previews, and runs that expire exactly the previewed images."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from conftest import Server, ServerFactory
from lifecycle_examples import EXAMPLES, Example, rule
from lifecycle_seed import ACCOUNT, INDEX, manifest, push, runtime_on, seed, utcnow
from openecr.config import ConfigError, from_env
from openecr.domain.creation_templates import AppliedFor
from openecr.domain.model import ImageId
from openecr.service.pulls import PullRecorder

PREFIX = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
FAILURE = PREFIX + "'Lifecycle policy validation failure: {}'"


def _error(caught: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response: Any = caught.value.response
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        response["ResponseMetadata"]["HTTPStatusCode"],
    )


def start_preview(ecr: Any, **kwargs: Any) -> dict[str, Any]:
    """StartLifecyclePolicyPreview (which answers IN_PROGRESS: previews run in the background),
    then botocore's own waiter until the preview is COMPLETE."""
    started: dict[str, Any] = ecr.start_lifecycle_policy_preview(**kwargs)
    assert started["status"] == "IN_PROGRESS"
    waiter = ecr.get_waiter("lifecycle_policy_preview_complete")
    waiter.wait(
        repositoryName=kwargs["repositoryName"], WaiterConfig={"Delay": 0.02, "MaxAttempts": 500}
    )
    return started


def _policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def _described(ecr: Any, name: str) -> set[str]:
    details = ecr.describe_images(repositoryName=name)["imageDetails"]
    return {d["imageDigest"] for d in details}


# --- put / get / delete ---------------------------------------------------------------------


def test_put_get_delete_round_trip(ecr: Any, repo: str) -> None:
    text = _policy(rule(1, "untagged", "sinceImagePushed", 14))
    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    assert {k: put[k] for k in ("registryId", "repositoryName", "lifecyclePolicyText")} == {
        "registryId": "123456789012",
        "repositoryName": repo,
        "lifecyclePolicyText": text,
    }
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert got["lifecyclePolicyText"] == text
    assert "lastEvaluatedAt" not in got  # never evaluated yet
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert deleted["lifecyclePolicyText"] == text
    with pytest.raises(ClientError) as caught:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert _error(caught) == (
        "LifecyclePolicyNotFoundException",
        "Lifecycle policy does not exist for the repository with name "
        f"'{repo}' in the registry with id '123456789012'",
        400,
    )


def test_put_replaces_the_policy(ecr: Any, repo: str) -> None:
    first = _policy(rule(1, "untagged", "sinceImagePushed", 14))
    second = _policy(rule(3, "any", "imageCountMoreThan", 100))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=first)
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=second)
    assert ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"] == second


@pytest.mark.parametrize("operation", ["get_lifecycle_policy", "delete_lifecycle_policy"])
def test_get_and_delete_without_a_policy(ecr: Any, repo: str, operation: str) -> None:
    with pytest.raises(ClientError) as caught:
        getattr(ecr, operation)(repositoryName=repo)
    assert _error(caught)[0] == "LifecyclePolicyNotFoundException"


@pytest.mark.parametrize(
    "operation",
    [
        "get_lifecycle_policy",
        "delete_lifecycle_policy",
        "put_lifecycle_policy",
        "start_lifecycle_policy_preview",
        "get_lifecycle_policy_preview",
    ],
)
def test_unknown_repository(ecr: Any, repo_name: str, operation: str) -> None:
    params: dict[str, Any] = {"repositoryName": repo_name}
    if operation == "put_lifecycle_policy":
        params["lifecyclePolicyText"] = _policy(rule(1, "untagged", "sinceImagePushed", 14))
    with pytest.raises(ClientError) as caught:
        getattr(ecr, operation)(**params)
    assert _error(caught) == (
        "RepositoryNotFoundException",
        f"The repository with name '{repo_name}' does not exist in the registry with id "
        "'123456789012'",
        400,
    )


def test_the_policy_goes_with_its_repository(ecr: Any, repo: str) -> None:
    text = _policy(rule(1, "untagged", "sinceImagePushed", 14))
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    ecr.delete_repository(repositoryName=repo)
    ecr.create_repository(repositoryName=repo)
    with pytest.raises(ClientError) as caught:
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert _error(caught)[0] == "LifecyclePolicyNotFoundException"


# --- validation -----------------------------------------------------------------------------


def _with(doc: dict[str, Any], part: str, **changes: Any) -> dict[str, Any]:
    doc = json.loads(json.dumps(doc))
    target = doc if part == "rule" else doc[part]
    for key, value in changes.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
    return doc


AGE = rule(1, "untagged", "sinceImagePushed", 14)
COUNT = rule(1, "untagged", "imageCountMoreThan", 3)
TAGGED = rule(1, "tagged", "imageCountMoreThan", 3, prefixes=["v"])
PAD = " " * 100  # the model's 100-character minimum

INVALID: list[tuple[str, str, str]] = [
    ("not-json", "{not json" + PAD, "Could not map policyString into LifecyclePolicy."),
    (
        "no-rules",
        json.dumps({"rulez": []}) + PAD,
        'object has missing required properties (["rules"])',
    ),
    (
        "empty-rules",
        json.dumps({"rules": []}) + PAD,
        "array is too short: must have at least 1 elements but instance has 0 elements",
    ),
    (
        "extra-property",
        _policy(_with(AGE, "rule", extra=1)),
        'object instance has properties which are not allowed by the schema: (["extra"])',
    ),
    (
        "missing-action",
        _policy(_with(AGE, "rule", action=None)),
        'object has missing required properties (["action"])',
    ),
    (
        "priority-zero",
        _policy(_with(AGE, "rule", rulePriority=0)),
        "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
    ),
    (
        "priority-string",
        _policy(_with(AGE, "rule", rulePriority="1")),
        'instance type (string) does not match any allowed primitive type (allowed: ["integer"])',
    ),
    (
        "duplicate-priority",
        _policy(AGE, _with(TAGGED, "rule")),
        "Rules must have unique priorities.",
    ),
    (
        "bad-tag-status",
        _policy(_with(AGE, "selection", tagStatus="some")),
        'instance value ("some") not found in enum (possible values: ["tagged","untagged","any"])',
    ),
    (
        "tagged-without-lists",
        _policy(_with(TAGGED, "selection", tagPrefixList=None)),
        "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
    ),
    (
        "untagged-with-prefixes",
        _policy(_with(AGE, "selection", tagPrefixList=["v"])),
        "tagPrefixList and tagPatternList are not allowed when tagStatus=UNTAGGED.",
    ),
    (
        "any-with-patterns",
        _policy(_with(AGE, "selection", tagStatus="any", tagPatternList=["v*"])),
        "tagPrefixList and tagPatternList are not allowed when tagStatus=ANY.",
    ),
    (
        "five-wildcards",
        _policy(_with(TAGGED, "selection", tagPrefixList=None, tagPatternList=["test*1*2*3*4*5"])),
        "Tag pattern 'test*1*2*3*4*5' must not contain more than 4 wildcards.",
    ),
    (
        "two-untagged-rules",
        _policy(AGE, _with(COUNT, "rule", rulePriority=2)),
        "Only one rule can select Untagged images per storage class",
    ),
    (
        "any-not-last",
        _policy(
            _with(AGE, "selection", tagStatus="any"),
            _with(TAGGED, "rule", rulePriority=2),
        ),
        "Rule for tagStatus=ANY must have the lowest priority per storage class",
    ),
    (
        "bad-count-type",
        _policy(_with(AGE, "selection", countType="sinceForever")),
        'instance value ("sinceForever") not found in enum (possible values: '
        '["imageCountMoreThan","sinceImagePushed","sinceImagePulled","sinceImageTransitioned"])',
    ),
    (
        "days-without-unit",
        _policy(_with(AGE, "selection", countUnit=None)),
        "countUnit is required when countType=sinceImagePushed.",
    ),
    (
        "count-with-unit",
        _policy(_with(COUNT, "selection", countUnit="days")),
        "countUnit is not allowed when countType=imageCountMoreThan.",
    ),
    (
        "bad-unit",
        _policy(_with(AGE, "selection", countUnit="weeks")),
        'instance value ("weeks") not found in enum (possible values: ["days"])',
    ),
    (
        "count-zero",
        _policy(_with(COUNT, "selection", countNumber=0)),
        "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
    ),
    (
        "bad-action",
        _policy(_with(AGE, "action", type="delete")),
        'instance value ("delete") not found in enum (possible values: ["expire","transition"])',
    ),
    (
        "transition-without-target",
        _policy(_with(AGE, "action", type="transition")),
        "targetStorageClass is required when action type=transition.",
    ),
    (
        "bad-target",
        _policy(_with(AGE, "action", type="transition", targetStorageClass="glacier")),
        'instance value ("glacier") not found in enum (possible values: ["archive"])',
    ),
    (
        "expire-with-target",
        _policy(_with(AGE, "action", targetStorageClass="archive")),
        "targetStorageClass is not allowed when action type=expire.",
    ),
    (
        "bad-storage-class",
        _policy(_with(AGE, "selection", storageClass="cold")),
        'instance value ("cold") not found in enum (possible values: ["standard","archive"])',
    ),
]


@pytest.mark.parametrize(("text", "detail"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_policies_are_refused(ecr: Any, repo: str, text: str, detail: str) -> None:
    for call in (ecr.put_lifecycle_policy, ecr.start_lifecycle_policy_preview):
        with pytest.raises(ClientError) as caught:
            call(repositoryName=repo, lifecyclePolicyText=text)
        assert _error(caught) == ("InvalidParameterException", FAILURE.format(detail), 400)
    with pytest.raises(ClientError):
        ecr.get_lifecycle_policy(repositoryName=repo)  # nothing was stored


def test_valid_policies_of_every_kind_are_accepted(ecr: Any, repo: str) -> None:
    transition = rule(2, "tagged", "sinceImagePulled", 30, patterns=["*-old", "team-*-*"])
    transition["action"] = {"type": "transition", "targetStorageClass": "archive"}
    archived = rule(3, "any", "sinceImageTransitioned", 90)
    archived["selection"]["storageClass"] = "archive"
    text = _policy(COUNT, transition, archived, rule(9, "any", "sinceImagePushed", 400))
    assert ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)


# --- previews and runs ------------------------------------------------------------------------


def test_preview_errors(ecr: Any, repo: str) -> None:
    with pytest.raises(ClientError) as caught:
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert _error(caught) == (
        "LifecyclePolicyPreviewNotFoundException",
        "Lifecycle policy preview does not exist for the repository with name "
        f"'{repo}' in the registry with id '123456789012'",
        400,
    )
    with pytest.raises(ClientError) as caught:
        ecr.start_lifecycle_policy_preview(repositoryName=repo)  # no text, no policy
    assert _error(caught)[0] == "LifecyclePolicyNotFoundException"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_documented_examples_preview_then_run(
    server: Server, ecr: Any, repo: str, example: Example
) -> None:
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, example.images, utcnow())
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=example.policy)
        started = start_preview(ecr, repositoryName=repo)
        assert started["lifecyclePolicyText"] == example.policy
        preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
        expected = {digests[name] for name in example.expired}
        previewed = {r["imageDigest"] for r in preview["previewResults"]}
        assert previewed == expected
        assert preview["summary"]["expiringImageTotalCount"] == len(expected)
        by_digest = {d: n for n, d in digests.items()}
        tags = {n: sorted(t) for n, t, _ in example.images}
        for result in preview["previewResults"]:
            assert result["action"] == {"type": "EXPIRE"}
            assert result["storageClass"] == "STANDARD"
            assert sorted(result.get("imageTags", [])) == tags[by_digest[result["imageDigest"]]]

        report = runtime.registry.lifecycle.run(repository=repo)
        assert {a.digest for a in report.actions} == expected
        assert {a.outcome for a in report.actions} <= {"expired"}
    assert _described(ecr, repo) == set(digests.values()) - expected
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName=repo)


def test_preview_of_a_given_text_leaves_the_policy_alone(
    server: Server, ecr: Any, repo: str
) -> None:
    now = utcnow()
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, [("old", [], 30), ("new", [], 1)], now)
    text = _policy(rule(1, "untagged", "sinceImagePushed", 7))
    start_preview(ecr, repositoryName=repo, lifecyclePolicyText=text)
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
    assert [r["imageDigest"] for r in preview["previewResults"]] == [digests["old"]]
    assert preview["previewResults"][0]["appliedRulePriority"] == 1
    assert "imageTags" not in preview["previewResults"][0]
    with pytest.raises(ClientError):
        ecr.get_lifecycle_policy(repositoryName=repo)
    assert _described(ecr, repo) == set(digests.values())  # a preview deletes nothing


def test_preview_filters_and_pages(server: Server, ecr: Any, repo: str) -> None:
    now = utcnow()
    images = [(f"t{i}", [f"v{i}"], 40 - i) for i in range(5)] + [
        (f"u{i}", [], 30 - i) for i in range(3)
    ]
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, images, now)
    text = _policy(
        rule(1, "untagged", "imageCountMoreThan", 1),
        rule(2, "any", "imageCountMoreThan", 1),
    )
    start_preview(ecr, repositoryName=repo, lifecyclePolicyText=text)
    full = ecr.get_lifecycle_policy_preview(repositoryName=repo)["previewResults"]
    order = [r["imageDigest"] for r in full]
    # rule 1 first (u0, u1, oldest first), then rule 2 (t0..t4; u2 is held by rule 1)
    assert order == [digests[n] for n in ["u0", "u1", "t0", "t1", "t2", "t3", "t4"]]

    pages: list[str] = []
    kwargs: dict[str, Any] = {"repositoryName": repo, "maxResults": 3}
    while True:
        page = ecr.get_lifecycle_policy_preview(**kwargs)
        assert len(page["previewResults"]) <= 3
        assert page["summary"]["expiringImageTotalCount"] == 7
        pages.extend(r["imageDigest"] for r in page["previewResults"])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert pages == order

    tagged = ecr.get_lifecycle_policy_preview(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert [r["imageDigest"] for r in tagged["previewResults"]] == order[2:]
    untagged = ecr.get_lifecycle_policy_preview(
        repositoryName=repo, filter={"tagStatus": "UNTAGGED"}
    )
    assert [r["imageDigest"] for r in untagged["previewResults"]] == order[:2]
    named = ecr.get_lifecycle_policy_preview(
        repositoryName=repo, imageIds=[{"imageTag": "v3"}, {"imageDigest": digests["u0"]}]
    )
    assert [r["imageDigest"] for r in named["previewResults"]] == [digests["u0"], digests["t3"]]

    with pytest.raises(ClientError) as caught:
        ecr.get_lifecycle_policy_preview(
            repositoryName=repo, imageIds=[{"imageTag": "v3"}], maxResults=2
        )
    assert _error(caught)[0] == "InvalidParameterException"
    with pytest.raises(ClientError) as caught:
        ecr.get_lifecycle_policy_preview(repositoryName=repo, nextToken="garbage")
    assert _error(caught)[0] == "InvalidParameterException"


def test_transitions_archive_then_archived_images_expire(
    server: Server, ecr: Any, repo: str, caplog: pytest.LogCaptureFixture
) -> None:
    doc = rule(1, "any", "sinceImagePushed", 5)
    doc["action"] = {"type": "transition", "targetStorageClass": "archive"}
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=_policy(doc))
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, [("old", ["v1"], 9), ("new", ["v2"], 1)], utcnow())
        start_preview(ecr, repositoryName=repo)
        preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
        assert [r["imageDigest"] for r in preview["previewResults"]] == [digests["old"]]
        assert preview["previewResults"][0]["action"] == {
            "type": "TRANSITION",
            "targetStorageClass": "ARCHIVE",
        }
        assert preview["summary"] == {
            "expiringImageTotalCount": 0,
            "transitioningImageTotalCounts": [
                {"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}
            ],
        }
        with caplog.at_level(logging.INFO, logger="openecr.lifecycle"):
            report = runtime.registry.lifecycle.run(repository=repo)
        assert [(a.digest, a.action, a.outcome) for a in report.actions] == [
            (digests["old"], "TRANSITION", "transitioned")
        ]
        assert any(digests["old"] in r.getMessage() for r in caplog.records)
        details = ecr.describe_images(repositoryName=repo)["imageDetails"]
        status = {d["imageDigest"]: d.get("imageStatus") for d in details}
        assert status == {digests["old"]: "ARCHIVED", digests["new"]: "ACTIVE"}
        # a second run finds nothing more to transition
        assert runtime.registry.lifecycle.run(repository=repo).actions == []

        # an archive rule expires archived images, but only after 90 days of archive
        expire = rule(1, "any", "sinceImageTransitioned", 1)
        expire["selection"]["storageClass"] = "archive"
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=_policy(expire))
        later = runtime.registry.lifecycle
        later.clock = lambda: utcnow() + timedelta(days=89)
        assert later.run(repository=repo).actions == []
        later.clock = lambda: utcnow() + timedelta(days=91)
        start_preview(ecr, repositoryName=repo)  # the server's clock: now
        assert ecr.get_lifecycle_policy_preview(repositoryName=repo)["previewResults"] == []
        assert [a.outcome for a in later.run(repository=repo).actions] == ["expired"]
    assert _described(ecr, repo) == {digests["new"]}


def test_since_image_pulled_counts_from_the_last_pull(server: Server, ecr: Any, repo: str) -> None:
    now = utcnow()
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, [("pulled", ["a"], 60), ("idle", ["b"], 60)], now)
        recorder = PullRecorder(runtime.metadata, clock=lambda: now - timedelta(days=2))
        record = runtime.registry.images.lookup(ACCOUNT, repo, ImageId(tag="a"))
        recorder.note(record.repository_id, {record.seq: record.digest})
        assert recorder.flush() == 1
        ecr.put_lifecycle_policy(
            repositoryName=repo,
            lifecyclePolicyText=_policy(rule(1, "any", "sinceImagePulled", 30)),
        )
        start_preview(ecr, repositoryName=repo)
        preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
        assert [r["imageDigest"] for r in preview["previewResults"]] == [digests["idle"]]
        runtime.registry.lifecycle.run(repository=repo)
    assert _described(ecr, repo) == {digests["pulled"]}


def test_an_index_keeps_its_children(server: Server, ecr: Any, repo: str) -> None:
    now = utcnow()
    with runtime_on(server.data_dir) as runtime:
        old = now - timedelta(days=30)
        child = push(runtime, repo, manifest("child"), [], old)
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": INDEX,
                "manifests": [
                    {
                        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                        "digest": child,
                        "size": 1,
                        "platform": {"architecture": "amd64", "os": "linux"},
                    }
                ],
            }
        ).encode()
        parent = push(runtime, repo, index, ["release"], old, INDEX)
        lone = push(runtime, repo, manifest("lone"), [], old)
        ecr.put_lifecycle_policy(
            repositoryName=repo,
            lifecyclePolicyText=_policy(rule(1, "untagged", "sinceImagePushed", 7)),
        )
        start_preview(ecr, repositoryName=repo)
        preview = ecr.get_lifecycle_policy_preview(repositoryName=repo)
        assert [r["imageDigest"] for r in preview["previewResults"]] == [lone]
        runtime.registry.lifecycle.run(repository=repo)
        assert _described(ecr, repo) == {child, parent}
        # the index goes with its last tag; then the next run frees the child
        ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "release"}])
        assert _described(ecr, repo) == {child}
        report = runtime.registry.lifecycle.run(repository=repo)
        assert [a.digest for a in report.actions] == [child]
    assert _described(ecr, repo) == set()


def test_dry_run_changes_nothing(server: Server, ecr: Any, repo: str) -> None:
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, repo, [("old", [], 30)], utcnow())
        ecr.put_lifecycle_policy(
            repositoryName=repo,
            lifecyclePolicyText=_policy(rule(1, "untagged", "sinceImagePushed", 7)),
        )
        report = runtime.registry.lifecycle.run(repository=repo, dry_run=True)
    assert [(a.digest, a.outcome) for a in report.actions] == [(digests["old"], "would expire")]
    assert _described(ecr, repo) == {digests["old"]}
    assert "lastEvaluatedAt" not in ecr.get_lifecycle_policy(repositoryName=repo)


def test_the_server_runs_policies_periodically(make_server: ServerFactory) -> None:
    server = make_server("--lifecycle-interval", "1")
    ecr = server.client()
    ecr.create_repository(repositoryName="periodic")
    with runtime_on(server.data_dir) as runtime:
        digests = seed(runtime, "periodic", [("old", [], 30), ("new", ["v1"], 0)], utcnow())
    ecr.put_lifecycle_policy(
        repositoryName="periodic",
        lifecyclePolicyText=_policy(rule(1, "untagged", "sinceImagePushed", 7)),
    )
    deadline = time.monotonic() + 20
    while _described(ecr, "periodic") != {digests["new"]}:
        assert time.monotonic() < deadline, "the periodic run did not expire the image"
        time.sleep(0.2)
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName="periodic")


def test_the_lifecycle_interval_setting() -> None:
    assert from_env({}).lifecycle_interval == 3600
    assert from_env({"OPENECR_LIFECYCLE_INTERVAL": "0"}).lifecycle_interval == 0
    config = from_env({}, lifecycle_interval=2.5)
    again = from_env({k: v for k, v in config.environ().items() if v is not None})
    assert again.lifecycle_interval == 2.5
    for bad in ("soon", "-1", "nan"):
        with pytest.raises(ConfigError):
            from_env({"OPENECR_LIFECYCLE_INTERVAL": bad})


def test_a_creation_templates_policy_runs(server: Server, ecr: Any, repo_name: str) -> None:
    prefix = repo_name.split("/")[0] + "-" + repo_name.split("-")[-1]
    name = f"{prefix}/app"
    text = _policy(rule(1, "untagged", "sinceImagePushed", 7))
    ecr.create_repository_creation_template(
        prefix=prefix, appliedFor=["CREATE_ON_PUSH"], lifecyclePolicy=text
    )
    with runtime_on(server.data_dir) as runtime:
        spec = runtime.registry.templates.apply(ACCOUNT, name, AppliedFor.CREATE_ON_PUSH)
        runtime.registry.repositories.create(ACCOUNT, spec)  # as a /v2 push creates it
        assert ecr.get_lifecycle_policy(repositoryName=name)["lifecyclePolicyText"] == text
        digests = seed(runtime, name, [("old", [], 30), ("new", [], 1)], utcnow())
        report = runtime.registry.lifecycle.run(repository=name)
    assert [(a.digest, a.outcome) for a in report.actions] == [(digests["old"], "expired")]
    assert _described(ecr, name) == {digests["new"]}
    ecr.delete_repository_creation_template(prefix=prefix)
