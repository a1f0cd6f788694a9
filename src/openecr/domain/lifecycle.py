"""Lifecycle policies: parsing with ECR's validation, and the pure evaluation engine.

``parse_policy(text)`` returns a :class:`Policy` or raises ``InvalidParameter`` with ECR's
wording (``Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint:
'Lifecycle policy validation failure: ...'``). ``evaluate(policy, images, now)`` says what a run
at ``now`` does to each image, as AWS documents it:

* every rule is evaluated against every image, then the rules are applied lowest
  ``rulePriority`` first; an image is acted on by at most one rule;
* an image that a higher-priority rule's selection holds cannot be acted on by a lower-priority
  rule (the lower rules still count it);
* ``imageCountMoreThan: N`` keeps the N most recently pushed images of its selection and acts on
  the rest, oldest first; ``sinceImagePushed`` / ``sinceImagePulled`` /
  ``sinceImageTransitioned: N days`` act on images pushed (pulled, archived) more than N days
  before ``now``; an archived image is expired only once archived for 90 days;
* an image that a stored index lists is never acted on unless that index is expired in the
  same run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from openecr.errors import LifecyclePolicyInvalid as PolicyInvalid

TAG_STATUSES = ("tagged", "untagged", "any")
COUNT_TYPES = (
    "imageCountMoreThan",
    "sinceImagePushed",
    "sinceImagePulled",
    "sinceImageTransitioned",
)
COUNT_UNITS = ("days",)
ACTION_TYPES = ("expire", "transition")
TARGET_STORAGE_CLASSES = ("archive",)
STORAGE_CLASSES = ("standard", "archive")
MAX_WILDCARDS = 4
MINIMUM_ARCHIVE = timedelta(days=90)  # a policy expires no image archived for less

_RULE_KEYS = ("rulePriority", "description", "selection", "action")
_RULE_REQUIRED = ("rulePriority", "selection", "action")
_SELECTION_KEYS = (
    "tagStatus",
    "tagPrefixList",
    "tagPatternList",
    "storageClass",
    "countType",
    "countUnit",
    "countNumber",
)
_SELECTION_REQUIRED = ("tagStatus", "countType", "countNumber")
_ACTION_KEYS = ("type", "targetStorageClass")


@dataclass(frozen=True, slots=True)
class Rule:
    priority: int
    tag_status: str  # tagged | untagged | any
    count_type: str
    count_number: int
    action: str = "expire"  # expire | transition
    count_unit: str | None = None
    tag_prefixes: tuple[str, ...] = ()
    tag_patterns: tuple[str, ...] = ()
    storage_class: str = "standard"
    target_storage_class: str | None = None
    description: str | None = None

    def matches_tags(self, tags: Sequence[str]) -> bool:
        """Whether the tag criteria select an image with ``tags``: every prefix and every
        pattern of the rule matches some tag (AND)."""
        if self.tag_status == "untagged":
            return not tags
        if self.tag_status == "any":
            return True
        if not tags:
            return False
        return all(any(t.startswith(p) for t in tags) for p in self.tag_prefixes) and all(
            any(_pattern(p).fullmatch(t) for t in tags) for p in self.tag_patterns
        )


@dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[Rule, ...]  # by priority, lowest first


@dataclass(frozen=True, slots=True)
class LifecycleImage:
    """What the engine knows of one image."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    seq: int = 0  # push order, breaks ties of ``pushed_at``
    last_pulled_at: datetime | None = None  # None: never pulled (push time counts)
    storage_class: str = "standard"  # or archive
    last_transitioned_at: datetime | None = None  # when it was last archived
    parents: tuple[str, ...] = field(default=())  # stored indexes that list this image


@dataclass(frozen=True, slots=True)
class Action:
    """One image a run acts on, and the rule that does it."""

    image: LifecycleImage
    rule: Rule

    @property
    def type(self) -> str:
        return self.rule.action

    @property
    def target_storage_class(self) -> str | None:
        return self.rule.target_storage_class


# --- parsing -------------------------------------------------------------------------------------


def _pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expect(value: object, kind: str) -> None:
    if _json_type(value) != kind:
        raise PolicyInvalid(
            f"instance type ({_json_type(value)}) does not match any allowed primitive type "
            f'(allowed: ["{kind}"])'
        )


def _object(value: object, allowed: Sequence[str], required: Sequence[str]) -> dict[str, Any]:
    _expect(value, "object")
    assert isinstance(value, dict)
    missing = sorted(k for k in required if k not in value)
    if missing:
        raise PolicyInvalid(f"object has missing required properties ({json.dumps(missing)})")
    extra = sorted(k for k in value if k not in allowed)
    if extra:
        raise PolicyInvalid(
            "object instance has properties which are not allowed by the schema: "
            f"({json.dumps(extra)})"
        )
    return value


def _enum(value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise PolicyInvalid(
            f"instance value ({json.dumps(value)}) not found in enum "
            f"(possible values: {json.dumps(list(allowed), separators=(',', ':'))})"
        )
    return value


def _positive(value: object) -> int:
    _expect(value, "integer")
    assert isinstance(value, int)
    if value < 1:
        raise PolicyInvalid(
            f"numeric instance is lower than the required minimum (minimum: 1, found: {value})"
        )
    return value


def _strings(value: object) -> tuple[str, ...]:
    _expect(value, "array")
    assert isinstance(value, list)
    for item in value:
        _expect(item, "string")
    return tuple(value)


def _rule(doc: object) -> Rule:
    raw = _object(doc, _RULE_KEYS, _RULE_REQUIRED)
    priority = _positive(raw["rulePriority"])
    description = raw.get("description")
    if description is not None:
        _expect(description, "string")
    sel = _object(raw["selection"], _SELECTION_KEYS, _SELECTION_REQUIRED)
    act = _object(raw["action"], _ACTION_KEYS, ("type",))
    tag_status = _enum(sel["tagStatus"], TAG_STATUSES)
    count_type = _enum(sel["countType"], COUNT_TYPES)
    count_unit = None if sel.get("countUnit") is None else _enum(sel["countUnit"], COUNT_UNITS)
    count_number = _positive(sel["countNumber"])
    prefixes = _strings(sel["tagPrefixList"]) if "tagPrefixList" in sel else ()
    patterns = _strings(sel["tagPatternList"]) if "tagPatternList" in sel else ()
    storage_class = _enum(sel.get("storageClass", "standard"), STORAGE_CLASSES)
    action = _enum(act["type"], ACTION_TYPES)
    target = act.get("targetStorageClass")
    if target is not None:
        target = _enum(target, TARGET_STORAGE_CLASSES)

    if tag_status == "tagged" and not (prefixes or patterns):
        raise PolicyInvalid("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.")
    if tag_status != "tagged" and ("tagPrefixList" in sel or "tagPatternList" in sel):
        raise PolicyInvalid(
            f"tagPrefixList and tagPatternList are not allowed when tagStatus={tag_status.upper()}."
        )
    for pattern in patterns:
        if pattern.count("*") > MAX_WILDCARDS:
            raise PolicyInvalid(
                f"Tag pattern '{pattern}' must not contain more than {MAX_WILDCARDS} wildcards."
            )
    if count_type == "imageCountMoreThan" and count_unit is not None:
        raise PolicyInvalid("countUnit is not allowed when countType=imageCountMoreThan.")
    if count_type != "imageCountMoreThan" and count_unit is None:
        raise PolicyInvalid(f"countUnit is required when countType={count_type}.")
    if action == "transition" and target is None:
        raise PolicyInvalid("targetStorageClass is required when action type=transition.")
    if action == "expire" and target is not None:
        raise PolicyInvalid("targetStorageClass is not allowed when action type=expire.")
    return Rule(
        priority=priority,
        tag_status=tag_status,
        count_type=count_type,
        count_number=count_number,
        action=action,
        count_unit=count_unit,
        tag_prefixes=prefixes,
        tag_patterns=patterns,
        storage_class=storage_class,
        target_storage_class=target,
        description=description,
    )


def parse_policy(text: str) -> Policy:
    """The policy ``text`` states; raises :class:`PolicyInvalid` as ECR would."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        doc = None
    if not isinstance(doc, dict):
        raise PolicyInvalid("Could not map policyString into LifecyclePolicy.")
    raw = _object(doc, ("rules",), ("rules",))
    _expect(raw["rules"], "array")
    if not raw["rules"]:
        raise PolicyInvalid(
            "array is too short: must have at least 1 elements but instance has 0 elements"
        )
    rules = sorted((_rule(r) for r in raw["rules"]), key=lambda r: r.priority)
    seen: set[int] = set()
    for rule in rules:
        if rule.priority in seen:
            raise PolicyInvalid("Rules must have unique priorities.")
        seen.add(rule.priority)
    for storage_class in STORAGE_CLASSES:
        mine = [r for r in rules if r.storage_class == storage_class]
        if any(r.tag_status == "any" for r in mine[:-1]):
            raise PolicyInvalid(
                "Rule for tagStatus=ANY must have the lowest priority per storage class"
            )
        if sum(r.tag_status == "untagged" for r in mine) > 1:
            raise PolicyInvalid("Only one rule can select Untagged images per storage class")
    return Policy(tuple(rules))


# --- evaluation ----------------------------------------------------------------------------------


def _push_order(image: LifecycleImage) -> tuple[datetime, int]:
    return image.pushed_at, image.seq


def _selected(rule: Rule, images: Iterable[LifecycleImage]) -> list[LifecycleImage]:
    """The images the rule's storage class and tag criteria hold, oldest push first."""
    return sorted(
        (i for i in images if i.storage_class == rule.storage_class and rule.matches_tags(i.tags)),
        key=_push_order,
    )


def _due(rule: Rule, selected: list[LifecycleImage], now: datetime) -> list[LifecycleImage]:
    """The selected images the rule's count acts on, oldest push first."""
    if rule.count_type == "imageCountMoreThan":
        return selected[: max(0, len(selected) - rule.count_number)]
    limit = timedelta(days=rule.count_number)
    if rule.count_type == "sinceImagePushed":
        return [i for i in selected if now - i.pushed_at > limit]
    if rule.count_type == "sinceImagePulled":
        return [i for i in selected if now - (i.last_pulled_at or i.pushed_at) > limit]
    return [  # sinceImageTransitioned
        i
        for i in selected
        if i.last_transitioned_at is not None and now - i.last_transitioned_at > limit
    ]


def _allowed(rule: Rule, image: LifecycleImage, now: datetime) -> bool:
    """Whether the rule may act on the image at all: an archived image is expired only after
    the minimum archive duration, and nothing is transitioned to the class it is in."""
    if rule.action == "transition":
        return image.storage_class != rule.target_storage_class
    if image.storage_class != "archive":
        return True
    archived = image.last_transitioned_at
    return archived is not None and now - archived >= MINIMUM_ARCHIVE


def evaluate(policy: Policy, images: Sequence[LifecycleImage], now: datetime) -> list[Action]:
    """What a run at ``now`` does: the actions in the order they apply (rule priority, then
    oldest push first)."""
    actions: dict[str, Action] = {}
    held: set[str] = set()  # images a higher-priority rule's selection holds
    for rule in policy.rules:
        selected = _selected(rule, images)
        for image in _due(rule, selected, now):
            if image.digest in held or image.digest in actions:
                continue
            if _allowed(rule, image, now):
                actions[image.digest] = Action(image, rule)
        held.update(i.digest for i in selected)
    expired = {d for d, a in actions.items() if a.type == "expire"}
    changed = True
    while changed:  # an image an index lists stays unless that index goes too
        changed = False
        for digest, action in list(actions.items()):
            if any(p not in expired for p in action.image.parents):
                del actions[digest]
                expired.discard(digest)
                changed = True
    return list(actions.values())
