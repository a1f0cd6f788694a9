"""The lifecycle engine (openecr.domain.lifecycle) on AWS's documented examples and its own
rules, with a moved clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lifecycle_examples import EXAMPLES, Example, rule
from openecr.domain.lifecycle import LifecycleImage, evaluate, parse_policy
from openecr.errors import LifecyclePolicyInvalid

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def _images(example: Example) -> list[LifecycleImage]:
    return [
        LifecycleImage(name, tuple(tags), NOW - timedelta(days=days), seq=i)
        for i, (name, tags, days) in enumerate(example.images)
    ]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.id)
def test_documented_examples(example: Example) -> None:
    actions = evaluate(parse_policy(example.policy), _images(example), NOW)
    assert {a.image.digest for a in actions} == example.expired
    assert all(a.type == "expire" for a in actions)


def test_actions_come_by_priority_then_oldest_first() -> None:
    example = next(e for e in EXAMPLES if e.id == "untagged-then-any")
    actions = evaluate(parse_policy(example.policy), _images(example), NOW)
    assert [(a.rule.priority, a.image.digest) for a in actions] == [(1, "B"), (2, "A"), (2, "C")]


def _policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)})


def test_moving_the_clock_expires_an_image_once_it_is_old_enough() -> None:
    policy = parse_policy(_policy(rule(1, "any", "sinceImagePushed", 14)))
    image = LifecycleImage("a", ("v1",), NOW)
    assert evaluate(policy, [image], NOW + timedelta(days=14)) == []
    assert [a.image for a in evaluate(policy, [image], NOW + timedelta(days=14, seconds=1))] == [
        image
    ]


def test_since_image_pulled_uses_the_last_pull_else_the_push() -> None:
    policy = parse_policy(_policy(rule(1, "any", "sinceImagePulled", 10)))
    pulled = LifecycleImage("pulled", (), NOW - timedelta(days=30), 0, NOW - timedelta(days=2))
    never = LifecycleImage("never", (), NOW - timedelta(days=30), 1)
    assert [a.image.digest for a in evaluate(policy, [pulled, never], NOW)] == ["never"]


def _archive_rule(count_type: str, days: int) -> dict[str, Any]:
    doc = rule(1, "any", count_type, days)
    doc["selection"]["storageClass"] = "archive"
    return doc


def test_since_image_transitioned_counts_from_the_archiving() -> None:
    policy = parse_policy(_policy(_archive_rule("sinceImageTransitioned", 100)))
    pushed = NOW - timedelta(days=400)
    images = [
        LifecycleImage("long", (), pushed, 0, None, "archive", NOW - timedelta(days=101)),
        LifecycleImage("recent", (), pushed, 1, None, "archive", NOW - timedelta(days=99)),
        LifecycleImage("standard", (), pushed, 2),
    ]
    assert [a.image.digest for a in evaluate(policy, images, NOW)] == ["long"]


def test_an_archived_image_is_expired_only_after_90_days_of_archive() -> None:
    policy = parse_policy(_policy(_archive_rule("sinceImagePushed", 1)))
    pushed = NOW - timedelta(days=400)
    images = [
        LifecycleImage("ninety", (), pushed, 0, None, "archive", NOW - timedelta(days=90)),
        LifecycleImage("eighty-nine", (), pushed, 1, None, "archive", NOW - timedelta(days=89)),
    ]
    assert [a.image.digest for a in evaluate(policy, images, NOW)] == ["ninety"]


def test_nothing_is_transitioned_to_the_class_it_is_in() -> None:
    doc = _archive_rule("sinceImagePushed", 1)
    doc["action"] = {"type": "transition", "targetStorageClass": "archive"}
    image = LifecycleImage("a", (), NOW - timedelta(days=9), 0, None, "archive", NOW)
    assert evaluate(parse_policy(_policy(doc)), [image], NOW) == []


def test_archive_rules_select_no_standard_image() -> None:
    doc = rule(1, "any", "imageCountMoreThan", 1)
    doc["selection"]["storageClass"] = "archive"
    images = [LifecycleImage(str(i), (), NOW - timedelta(days=i), i) for i in range(3)]
    assert evaluate(parse_policy(_policy(doc)), images, NOW) == []


def test_transition_is_an_action_of_its_own() -> None:
    doc = rule(1, "any", "sinceImagePushed", 1)
    doc["action"] = {"type": "transition", "targetStorageClass": "archive"}
    actions = evaluate(
        parse_policy(_policy(doc)), [LifecycleImage("a", (), NOW - timedelta(days=5))], NOW
    )
    assert [(a.type, a.target_storage_class) for a in actions] == [("transition", "archive")]


def test_an_image_an_index_lists_stays_unless_the_index_expires_too() -> None:
    policy = parse_policy(_policy(rule(1, "untagged", "sinceImagePushed", 1)))
    old = NOW - timedelta(days=9)
    child = LifecycleImage("child", (), old, 0, parents=("index",))
    kept_index = LifecycleImage("index", ("v1",), old, 1)
    assert evaluate(policy, [child, kept_index], NOW) == []
    gone_index = LifecycleImage("index", (), old, 1)
    assert {a.image.digest for a in evaluate(policy, [child, gone_index], NOW)} == {
        "child",
        "index",
    }


def test_a_child_of_a_child_of_a_kept_index_stays() -> None:
    policy = parse_policy(_policy(rule(1, "untagged", "sinceImagePushed", 1)))
    old = NOW - timedelta(days=9)
    images = [
        LifecycleImage("leaf", (), old, 0, parents=("mid",)),
        LifecycleImage("mid", (), old, 1, parents=("top",)),
        LifecycleImage("top", ("v1",), old, 2),
    ]
    assert evaluate(policy, images, NOW) == []


def test_push_order_breaks_ties_of_push_time() -> None:
    policy = parse_policy(_policy(rule(1, "any", "imageCountMoreThan", 1)))
    images = [LifecycleImage(d, (), NOW, seq) for seq, d in [(2, "second"), (1, "first")]]
    assert [a.image.digest for a in evaluate(policy, images, NOW)] == ["first"]


def test_rules_parse_sorted_by_priority_with_their_fields() -> None:
    policy = parse_policy(
        _policy(
            rule(7, "any", "imageCountMoreThan", 3),
            rule(2, "tagged", "sinceImagePushed", 4, prefixes=["v"], patterns=["*-rc"]),
        )
    )
    first, second = policy.rules
    assert (first.priority, first.tag_prefixes, first.tag_patterns) == (2, ("v",), ("*-rc",))
    assert (first.count_unit, first.count_number, second.priority) == ("days", 4, 7)


def test_invalid_policy_says_why() -> None:
    with pytest.raises(LifecyclePolicyInvalid) as caught:
        parse_policy(_policy(rule(1, "tagged", "imageCountMoreThan", 1)))
    detail = "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."
    assert caught.value.detail == detail
