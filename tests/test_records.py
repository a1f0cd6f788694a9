"""quick_init: the faster constructor of frozen records builds the same records."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from openecr.domain.model import ImageId, ImageRecord
from openecr.domain.records import quick_init


@dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


@quick_init
@dataclass(frozen=True, slots=True)
class Quick:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


def test_the_same_fields_defaults_and_factories() -> None:
    for args, kwargs in (((1,), {}), ((1, "x"), {}), ((1,), {"c": [2]}), ((), {"a": 3, "b": "y"})):
        plain, quick = Plain(*args, **kwargs), Quick(*args, **kwargs)
        assert dataclasses.asdict(plain) == dataclasses.asdict(quick)
    first, second = Quick(1), Quick(1)
    assert first.c == [] and first.c is not second.c  # a new list per record


def test_still_frozen_hashable_and_comparable() -> None:
    record = Quick(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.a = 2  # type: ignore[misc]
    assert ImageId("sha256:" + "0" * 64, "t") == ImageId("sha256:" + "0" * 64, "t")
    assert hash(ImageId(tag="t")) == hash(ImageId(None, "t"))
    assert repr(ImageId(tag="t")) == "ImageId(digest=None, tag='t')"


def test_missing_and_unknown_arguments_are_refused_as_before() -> None:
    with pytest.raises(TypeError):
        Quick()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Quick(1, d=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        ImageRecord(1, "d")  # type: ignore[call-arg]


def test_an_image_record_keeps_every_field() -> None:
    now = datetime.now(UTC)
    record = ImageRecord(1, "d", b"{}", "m", None, 2, now, None, 7, "ARCHIVE", now, None, now)
    assert (record.seq, record.storage_class, record.last_pulled_at) == (7, "ARCHIVE", now)
    assert record == dataclasses.replace(record)


def test_refuses_what_it_cannot_copy() -> None:
    @dataclass(slots=True)
    class Unfrozen:
        a: int

    @dataclass(frozen=True)
    class Unslotted:
        a: int

    @dataclass(frozen=True, slots=True)
    class KeywordOnly:
        a: int = field(kw_only=True)

    @dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    for cls in (Unfrozen, Unslotted, KeywordOnly, PostInit):
        with pytest.raises(TypeError):
            quick_init(cls)
