"""The MetadataStore contract: every Transaction method and the store's transactions, as every
backend must behave (``metadata_store`` runs each test on each backend)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from openecr.backends.memory_metadata import ConstraintError
from openecr.domain.model import (
    BlobInfo,
    ExclusionFilter,
    ImageRecord,
    Repository,
    TagMutability,
    UploadSession,
    UploadState,
)
from openecr.domain.storage import StorageTotals
from openecr.ports.metadata import MetadataStore, Transaction

REGISTRY = "123456789012"
OTHER_REGISTRY = "210987654321"
OCI = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
# what a broken uniqueness rule raises, per backend
CONSTRAINT_ERRORS = (ConstraintError, IntegrityError)


class Boom(Exception):
    """Raised inside a write to roll it back."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def digest(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def new_repo(tx: Transaction, name: str, registry: str = REGISTRY) -> Repository:
    return tx.create_repository(Repository(0, registry, name, T0))


def image(
    repo_id: int, name: str, *, subject: str | None = None, media_type: str = OCI
) -> ImageRecord:
    manifest = json.dumps({"name": name}).encode()
    return ImageRecord(
        repo_id, digest(name), manifest, media_type, None, len(manifest), T0, subject
    )


def push(tx: Transaction, repo_id: int, *names: str, tagged: bool = True) -> list[str]:
    """Insert an image per name (tagged with its name unless not ``tagged``); their digests."""
    for i, name in enumerate(names):
        tx.insert_image(image(repo_id, name))
        if tagged:
            tx.set_tag(repo_id, name, digest(name), at(i))
    return [digest(n) for n in names]


def session(repo_id: int, upload_id: str = "u1", token: str = "t0") -> UploadSession:
    return UploadSession(upload_id, repo_id, T0, UploadState(f"key-{upload_id}", 0, token))


def repo_id_of(store: MetadataStore, name: str, registry: str = REGISTRY) -> int:
    with store.read() as tx:
        found = tx.get_repository(registry, name)
    assert found is not None
    return found.id


# repositories


def test_create_repository_returns_it_with_an_id_and_get_finds_it(
    metadata_store: MetadataStore,
) -> None:
    wanted = Repository(
        0,
        REGISTRY,
        "team/app",
        datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        TagMutability.IMMUTABLE_WITH_EXCLUSION,
        (ExclusionFilter("v*"), ExclusionFilter("latest")),
        scan_on_push=True,
        encryption_type="KMS",
        kms_key="arn:aws:kms:us-east-1:123456789012:key/k",
    )
    with metadata_store.write() as tx:
        created = tx.create_repository(wanted)
        other = new_repo(tx, "team/other")
    assert created.id > 0 and other.id != created.id
    assert created.created_at == wanted.created_at and created.created_at.tzinfo == UTC
    expected = Repository(
        created.id,
        REGISTRY,
        "team/app",
        T0,
        TagMutability.IMMUTABLE_WITH_EXCLUSION,
        (ExclusionFilter("v*"), ExclusionFilter("latest")),
        scan_on_push=True,
        encryption_type="KMS",
        kms_key="arn:aws:kms:us-east-1:123456789012:key/k",
    )
    assert created == expected
    with metadata_store.read() as tx:
        assert tx.get_repository(REGISTRY, "team/app") == expected
        assert tx.get_repository(REGISTRY, "team/none") is None
        assert tx.get_repository(OTHER_REGISTRY, "team/app") is None


def test_list_repositories_in_name_byte_order_after_a_name(metadata_store: MetadataStore) -> None:
    names = ["b", "a/b", "ab", "a-b", "a_b", "a.b", "a", "b/a", "c0", "c"]
    with metadata_store.write() as tx:
        for name in names:
            new_repo(tx, name)
        new_repo(tx, "zz", OTHER_REGISTRY)
    ordered = sorted(names)  # code point order is UTF-8 byte order
    with metadata_store.read() as tx:
        assert [r.name for r in tx.list_repositories(REGISTRY, None, 100)] == ordered
        assert [r.name for r in tx.list_repositories(REGISTRY, None, 3)] == ordered[:3]
        assert [r.name for r in tx.list_repositories(REGISTRY, "a/b", 2)] == ["a_b", "ab"]
        assert [r.name for r in tx.list_repositories(REGISTRY, "aa", 100)] == [
            "ab",
            "b",
            "b/a",
            "c",
            "c0",
        ]
        assert tx.list_repositories(REGISTRY, "c0", 100) == []
        paged: list[str] = []
        after: str | None = None
        while page := tx.list_repositories(REGISTRY, after, 3):
            paged += [r.name for r in page]
            after = page[-1].name
        assert paged == ordered


def test_registries_are_isolated(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        mine = new_repo(tx, "team/app")
        theirs = new_repo(tx, "team/app", OTHER_REGISTRY)
        push(tx, theirs.id, "v1")
    assert mine.id != theirs.id
    with metadata_store.read() as tx:
        assert tx.get_repository(REGISTRY, "team/app") == mine
        assert tx.get_repository(OTHER_REGISTRY, "team/app") == theirs
        assert tx.list_repositories(REGISTRY, None, 10) == [mine]
        assert tx.list_repositories(OTHER_REGISTRY, None, 10) == [theirs]
        assert tx.count_images(mine.id) == 0
        assert tx.lookup_image(REGISTRY, "team/app", "v1", None) == (mine.id, None)
        assert tx.lookup_image(OTHER_REGISTRY, "team/app", "v1", None)[1] is not None
        assert tx.lookup_image("000000000000", "team/app", "v1", None) == (None, None)


def test_set_tag_mutability_replaces_mode_and_filters(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.set_tag_mutability(
            repo.id, TagMutability.IMMUTABLE_WITH_EXCLUSION, [ExclusionFilter("a*")]
        )
    with metadata_store.write() as tx:
        tx.set_tag_mutability(
            repo.id, TagMutability.MUTABLE_WITH_EXCLUSION, [ExclusionFilter("b*")]
        )
        tx.set_tag_mutability(repo.id + other.id + 100, TagMutability.IMMUTABLE, [])  # no repo
    with metadata_store.read() as tx:
        found = tx.get_repository(REGISTRY, "team/app")
        assert tx.get_repository(REGISTRY, "team/other") == other
    assert found is not None
    assert found.tag_mutability is TagMutability.MUTABLE_WITH_EXCLUSION
    assert found.exclusion_filters == (ExclusionFilter("b*"),)
    assert found.tag_is_immutable("b1") and not found.tag_is_immutable("a1")
    with metadata_store.write() as tx:
        tx.set_tag_mutability(repo.id, TagMutability.IMMUTABLE, [])
    with metadata_store.read() as tx:
        found = tx.get_repository(REGISTRY, "team/app")
    assert found is not None and found.tag_mutability is TagMutability.IMMUTABLE
    assert found.exclusion_filters == ()


def test_set_scan_on_push_changes_only_that_repository(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.set_scan_on_push(repo.id, True)
        tx.set_scan_on_push(repo.id + other.id + 100, True)  # no such repository: nothing
    with metadata_store.read() as tx:
        found = tx.get_repository(REGISTRY, "team/app")
        assert tx.get_repository(REGISTRY, "team/other") == other
    assert found is not None and found.scan_on_push
    with metadata_store.write() as tx:
        tx.set_scan_on_push(repo.id, False)
    with metadata_store.read() as tx:
        found = tx.get_repository(REGISTRY, "team/app")
    assert found is not None and not found.scan_on_push


def fill(tx: Transaction, repo_id: int) -> None:
    """Give a repository one of every kind of row."""
    index, child = push(tx, repo_id, "index", "child")
    tx.add_references(repo_id, index, [child])
    tx.link_blob(repo_id, BlobInfo(digest("layer"), 5, "application/octet-stream"))
    tx.create_upload(session(repo_id, f"upload-{repo_id}"))
    tx.put_resource_tags(repo_id, [("team", "a")])


def test_delete_repository_deletes_all_of_its_rows_and_only_them(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write() as tx:
        doomed = new_repo(tx, "team/doomed")
        kept = new_repo(tx, "team/kept")
        fill(tx, doomed.id)
        fill(tx, kept.id)
    with metadata_store.write() as tx:
        tx.delete_repository(doomed.id)
    index, child, layer = digest("index"), digest("child"), digest("layer")
    with metadata_store.read() as tx:
        assert tx.get_repository(REGISTRY, "team/doomed") is None
        assert tx.list_repositories(REGISTRY, None, 10) == [kept]
        assert tx.lookup_image(REGISTRY, "team/doomed", "index", None) == (None, None)
        assert tx.count_images(doomed.id) == 0
        assert tx.get_image(doomed.id, index) is None
        assert tx.get_tag(doomed.id, "index") is None
        assert tx.tags_of(doomed.id, index) == []
        assert tx.list_tags(doomed.id, None, None) == []
        assert tx.list_images(doomed.id, "ANY", None, 10) == []
        assert tx.images_referencing(doomed.id, child) == []
        assert tx.get_linked_blob(doomed.id, layer) is None
        assert tx.get_upload(f"upload-{doomed.id}") is None
        assert tx.get_resource_tags(doomed.id) == []
        # the other repository keeps everything; the blob record outlives the link
        assert tx.count_images(kept.id) == 2
        assert tx.list_tags(kept.id, None, None) == ["child", "index"]
        assert tx.images_referencing(kept.id, child) == [index]
        assert tx.get_linked_blob(kept.id, layer) is not None
        assert tx.get_upload(f"upload-{kept.id}") is not None
        assert tx.get_resource_tags(kept.id) == [("team", "a")]
        assert tx.get_blob(layer) == BlobInfo(layer, 5, "application/octet-stream")
    with metadata_store.write() as tx:
        again = new_repo(tx, "team/doomed")  # the name is free again, with nothing in it
        assert tx.count_images(again.id) == 0
        assert tx.get_linked_blob(again.id, layer) is None


def test_count_images(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        assert tx.count_images(repo.id) == 0
        push(tx, repo.id, "a", "b")
        push(tx, repo.id, "c", tagged=False)
        push(tx, other.id, "d")
        assert tx.count_images(repo.id) == 3
        tx.delete_image(repo.id, digest("a"))
    with metadata_store.read() as tx:
        assert tx.count_images(repo.id) == 2
        assert tx.count_images(other.id) == 1


def test_storage_totals(metadata_store: MetadataStore) -> None:
    with metadata_store.read() as tx:
        assert tx.storage_totals() == StorageTotals(0, 0, 0, 0, 0)
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/app", registry=OTHER_REGISTRY)
        push(tx, repo.id, "a", "b")
        push(tx, other.id, "a")  # the same digest in another repository: two images
        tx.link_blob(repo.id, BlobInfo(digest("x"), 10))
        tx.link_blob(other.id, BlobInfo(digest("x"), 10))  # one blob, linked twice
        tx.link_blob(other.id, BlobInfo(digest("y"), 5))
        tx.create_upload(session(repo.id, "u1"))
    with metadata_store.read() as tx:
        assert tx.storage_totals() == StorageTotals(2, 3, 2, 15, 1)
    with metadata_store.write() as tx:
        tx.delete_repository(other.id)
        tx.delete_upload("u1")
    with metadata_store.read() as tx:
        totals = tx.storage_totals()
    assert (totals.repositories, totals.images, totals.uploads) == (1, 2, 0)


# images and tags


def test_insert_image_then_get_it(metadata_store: MetadataStore) -> None:
    record = ImageRecord(
        0,
        digest("a"),
        b'{"schemaVersion": 2}',
        OCI,
        "application/vnd.example+json",
        20,
        datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2))),
        digest("subject"),
        seq=12345,  # ignored: the store numbers images
    )
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.insert_image(replace(record, repository_id=repo.id))
    with metadata_store.read() as tx:
        found = tx.get_image(repo.id, digest("a"))
        assert tx.get_image(other.id, digest("a")) is None
        assert tx.get_image(repo.id, digest("b")) is None
    assert found is not None and found.seq > 0
    assert found == ImageRecord(
        repo.id,
        digest("a"),
        b'{"schemaVersion": 2}',
        OCI,
        "application/vnd.example+json",
        20,
        T0,
        digest("subject"),
        seq=found.seq,
    )
    assert found.pushed_at.tzinfo == UTC and type(found.manifest) is bytes


def test_seq_follows_push_order(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        push(tx, repo.id, "a")
        push(tx, other.id, "x")
        push(tx, repo.id, "b", "c")
    with metadata_store.read() as tx:
        seqs = []
        for name in "abc":
            found = tx.get_image(repo.id, digest(name))
            assert found is not None
            seqs.append(found.seq)
    assert seqs == sorted(set(seqs))


def test_set_tag_points_a_tag_and_moves_it(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        one, two = push(tx, repo.id, "one", "two", tagged=False)
        tx.set_tag(repo.id, "latest", one, at(1))
        assert tx.get_tag(repo.id, "latest") == one
    with metadata_store.write() as tx:
        tx.set_tag(repo.id, "latest", two, at(2))
    with metadata_store.read() as tx:
        assert tx.get_tag(repo.id, "latest") == two
        assert tx.get_tag(other.id, "latest") is None
        assert tx.get_tag(repo.id, "missing") is None
        assert tx.tags_of(repo.id, one) == []
        assert tx.tags_of(repo.id, two) == ["latest"]
        assert tx.list_tags(repo.id, None, None) == ["latest"]


def test_tags_of_lists_the_most_recently_set_first(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        (target,) = push(tx, repo.id, "img", tagged=False)
        tx.set_tag(repo.id, "a", target, at(1))
        tx.set_tag(repo.id, "b", target, at(3))
        tx.set_tag(repo.id, "c", target, at(2))
        assert tx.tags_of(repo.id, target) == ["b", "c", "a"]
        tx.set_tag(repo.id, "a", target, at(4))  # set again: first
        assert tx.tags_of(repo.id, target) == ["a", "b", "c"]
        tx.set_tag(repo.id, "z", target, at(5))
        tx.set_tag(repo.id, "y", target, at(5))  # same instant: by name
    with metadata_store.read() as tx:
        assert tx.tags_of(repo.id, target) == ["y", "z", "a", "b", "c"]
        assert tx.tags_of(repo.id, digest("other")) == []


def test_delete_tag_leaves_the_image(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        (target,) = push(tx, repo.id, "v1")
        tx.set_tag(repo.id, "latest", target, at(9))
    with metadata_store.write() as tx:
        tx.delete_tag(repo.id, "v1")
        tx.delete_tag(repo.id, "missing")
    with metadata_store.read() as tx:
        assert tx.get_tag(repo.id, "v1") is None
        assert tx.get_tag(repo.id, "latest") == target
        assert tx.tags_of(repo.id, target) == ["latest"]
        assert tx.get_image(repo.id, target) is not None


def test_delete_image_removes_its_tags_and_the_references_it_made(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        index, child, other = push(tx, repo.id, "index", "child", "other")
        tx.set_tag(repo.id, "latest", index, at(9))
        tx.add_references(repo.id, index, [child, other])
    with metadata_store.write() as tx:
        tx.delete_image(repo.id, child)  # references to it stay (the service checks them)
        tx.delete_image(repo.id, digest("missing"))
    with metadata_store.read() as tx:
        assert tx.get_image(repo.id, child) is None
        assert tx.get_tag(repo.id, "child") is None
        assert tx.images_referencing(repo.id, child) == [index]
    with metadata_store.write() as tx:
        tx.delete_image(repo.id, index)
    with metadata_store.read() as tx:
        assert tx.get_image(repo.id, index) is None
        assert tx.list_tags(repo.id, None, None) == ["other"]
        assert tx.tags_of(repo.id, index) == []
        assert tx.images_referencing(repo.id, child) == []
        assert tx.images_referencing(repo.id, other) == []
        assert tx.count_images(repo.id) == 1


def test_a_tag_naming_no_stored_image(metadata_store: MetadataStore) -> None:
    """Tags are not checked against images: readers that join them see no image."""
    ghost = digest("ghost")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        (real,) = push(tx, repo.id, "real")
        tx.set_tag(repo.id, "ghost", ghost, at(1))
    with metadata_store.read() as tx:
        assert tx.get_tag(repo.id, "ghost") == ghost
        assert tx.tags_of(repo.id, ghost) == ["ghost"]
        assert tx.list_tags(repo.id, None, None) == ["ghost", "real"]
        assert tx.lookup_image(REGISTRY, "team/app", "ghost", real) == (repo.id, None)
        snap = tx.snapshot(repo.id, ["ghost"], [ghost], every_tag=True)
        assert (dict(snap.tags), dict(snap.images), dict(snap.tags_by_digest)) == ({}, {}, {})
        assert [v.image.digest for v in tx.list_images(repo.id, "TAGGED", None, 10)] == [real]


def test_list_images_by_tag_status_in_push_order_after_a_seq(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        a, b = push(tx, repo.id, "a", "b")
        push(tx, other.id, "x")
        (c,) = push(tx, repo.id, "c", tagged=False)
        (d,) = push(tx, repo.id, "d")
        (e,) = push(tx, repo.id, "e", tagged=False)
        tx.set_tag(repo.id, "newest", a, at(10))
    with metadata_store.read() as tx:
        every = tx.list_images(repo.id, "ANY", None, 100)
        assert [v.image.digest for v in every] == [a, b, c, d, e]
        assert [v.tags for v in every] == [("newest", "a"), ("b",), (), ("d",), ()]
        assert every[0].image == tx.get_image(repo.id, a)
        tagged = tx.list_images(repo.id, "TAGGED", None, 100)
        assert [v.image.digest for v in tagged] == [a, b, d]
        untagged = tx.list_images(repo.id, "UNTAGGED", None, 100)
        assert [(v.image.digest, v.tags) for v in untagged] == [(c, ()), (e, ())]
        assert [v.image.digest for v in tx.list_images(repo.id, "ANY", None, 2)] == [a, b]
        seq_b = every[1].image.seq
        assert [v.image.digest for v in tx.list_images(repo.id, "ANY", seq_b, 2)] == [c, d]
        assert [v.image.digest for v in tx.list_images(repo.id, "TAGGED", seq_b, 9)] == [d]
        assert tx.list_images(repo.id, "ANY", every[-1].image.seq, 9) == []
        assert tx.list_images(repo.id, "ANY", None, 0) == []
        paged: list[str] = []
        after: int | None = None
        while page := tx.list_images(repo.id, "ANY", after, 2):
            paged += [v.image.digest for v in page]
            after = page[-1].image.seq
        assert paged == [a, b, c, d, e]


def test_snapshot_holds_the_named_images_and_their_tags(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        a, b, c = push(tx, repo.id, "a", "b", "c")
        (u,) = push(tx, repo.id, "u", tagged=False)
        tx.set_tag(repo.id, "a2", a, at(10))
        push(tx, other.id, "x")
    with metadata_store.read() as tx:
        images = {d: tx.get_image(repo.id, d) for d in (a, b, c, u)}
        snap = tx.snapshot(repo.id, ["a", "b", "b", "missing", "x"], [c, u, digest("no"), c])
        assert snap.repository_id == repo.id
        assert dict(snap.tags) == {"a": a, "b": b}
        assert dict(snap.images) == {a: images[a], b: images[b], c: images[c], u: images[u]}
        assert dict(snap.tags_by_digest) == {c: ("c",)}  # asked by digest, with tags
        assert snap.get_tag(repo.id, "a") == a and snap.get_tag(repo.id, "missing") is None
        assert snap.get_image(repo.id, u) == images[u]
        assert snap.tags_of(repo.id, c) == ["c"] and snap.tags_of(repo.id, u) == []
        every = tx.snapshot(repo.id, ["a"], [u, b], every_tag=True)
        assert dict(every.tags_by_digest) == {a: ("a2", "a"), b: ("b",)}
        both = tx.snapshot(repo.id, ["a2"], [a])  # one image named both ways
        assert dict(both.tags) == {"a2": a} and dict(both.images) == {a: images[a]}
        assert dict(both.tags_by_digest) == {a: ("a2", "a")}
        empty = tx.snapshot(repo.id, [], [])
        assert (dict(empty.tags), dict(empty.images), dict(empty.tags_by_digest)) == ({}, {}, {})
        foreign = tx.snapshot(other.id, ["a"], [a])
        assert (dict(foreign.tags), dict(foreign.images)) == ({}, {})


def test_snapshot_of_a_large_batch(metadata_store: MetadataStore) -> None:
    names = [f"v{i}" for i in range(700)]  # more than one IN list (500) of the SQL store
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        digests = push(tx, repo.id, *names)
    with metadata_store.read() as tx:
        by_tag = tx.snapshot(repo.id, names, [])
        by_digest = tx.snapshot(repo.id, [], digests)
    assert dict(by_tag.tags) == dict(zip(names, digests, strict=True))
    assert set(by_tag.images) == set(digests) == set(by_digest.images)
    assert dict(by_digest.tags_by_digest) == {d: (n,) for n, d in zip(names, digests, strict=True)}


def test_lookup_image(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        a, b = push(tx, repo.id, "a", "b")
        (u,) = push(tx, repo.id, "u", tagged=False)
        got = {d: tx.get_image(repo.id, d) for d in (a, b, u)}
    with metadata_store.read() as tx:

        def lookup(tag: str | None, digest_: str | None) -> tuple[int | None, ImageRecord | None]:
            return tx.lookup_image(REGISTRY, "team/app", tag, digest_)

        assert tx.lookup_image(REGISTRY, "team/none", "a", a) == (None, None)
        assert lookup("a", None) == (repo.id, got[a])
        assert lookup(None, u) == (repo.id, got[u])
        assert lookup("a", b) == (repo.id, got[a])  # the tag wins
        assert lookup("missing", None) == (repo.id, None)
        assert lookup(None, digest("missing")) == (repo.id, None)
        assert lookup(None, None) == (repo.id, None)
        assert lookup("missing", b) == (repo.id, got[b])  # an absent tag falls back to digest


def test_references(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        i1, i2, c1, c2 = push(tx, repo.id, "i1", "i2", "c1", "c2")
        tx.add_references(repo.id, i2, [c1, c2, c1])  # duplicates count once
        tx.add_references(repo.id, i1, [c1])
        tx.add_references(repo.id, digest("i3"), [])
    with metadata_store.read() as tx:
        assert tx.images_referencing(repo.id, c1) == sorted([i1, i2])
        assert tx.images_referencing(repo.id, c2) == [i2]
        assert tx.images_referencing(repo.id, i1) == []
        assert tx.images_referencing(other.id, c1) == []


def test_images_with_subject_in_push_order(metadata_store: MetadataStore) -> None:
    subject = digest("subject")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        for name in ("sig2", "sig1", "plain", "sig0"):
            named = None if name == "plain" else subject
            tx.insert_image(image(repo.id, name, subject=named))
        tx.insert_image(image(other.id, "sig9", subject=subject))
        tx.insert_image(image(repo.id, "elsewhere", subject=digest("another")))
    with metadata_store.read() as tx:
        found = tx.images_with_subject(repo.id, subject)
        assert [i.digest for i in found] == [digest("sig2"), digest("sig1"), digest("sig0")]
        assert found[0] == tx.get_image(repo.id, digest("sig2"))
        assert tx.images_with_subject(repo.id, digest("none")) == []


def test_list_tags_in_byte_order_after_a_tag(metadata_store: MetadataStore) -> None:
    names = ["b", "B", "a", "a-1", "a_1", "a.1", "a1", "A", "0", "z9", "Z"]
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        (target,) = push(tx, repo.id, "img", tagged=False)
        for i, name in enumerate(names):
            tx.set_tag(repo.id, name, target, at(i))
        tx.set_tag(other.id, "other", target, at(0))
    ordered = sorted(names)
    assert ordered[:4] == ["0", "A", "B", "Z"]  # byte order, not a locale's
    with metadata_store.read() as tx:
        assert tx.list_tags(repo.id, None, None) == ordered
        assert tx.list_tags(repo.id, None, 3) == ordered[:3]
        assert tx.list_tags(repo.id, "a", None) == ordered[ordered.index("a") + 1 :]
        assert tx.list_tags(repo.id, "a", 2) == ["a-1", "a.1"]
        assert tx.list_tags(repo.id, "aa", None) == ["b", "z9"]
        assert tx.list_tags(repo.id, "z9", None) == []
        assert tx.list_tags(repo.id, None, 0) == []


# blobs


def test_link_blob_is_idempotent_and_per_repository(metadata_store: MetadataStore) -> None:
    layer = BlobInfo(digest("layer"), 42, "application/vnd.oci.image.layer.v1.tar+gzip")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other", OTHER_REGISTRY)
        tx.link_blob(repo.id, layer)
        tx.link_blob(repo.id, layer)
    with metadata_store.write() as tx:
        tx.link_blob(repo.id, layer)
        assert tx.get_linked_blob(other.id, layer.digest) is None
        tx.link_blob(other.id, BlobInfo(layer.digest, 42, None))  # the first record stays
    with metadata_store.read() as tx:
        assert tx.get_linked_blob(repo.id, layer.digest) == layer
        assert tx.get_linked_blob(other.id, layer.digest) == layer
        assert tx.get_linked_blob(repo.id, digest("none")) is None
        assert tx.get_blob(layer.digest) == layer
        assert tx.get_blob(digest("none")) is None


def test_unlink_blob_says_whether_it_was_linked(metadata_store: MetadataStore) -> None:
    config = BlobInfo(digest("config"), 7, None)
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.link_blob(repo.id, config)
        tx.link_blob(other.id, config)
    with metadata_store.write() as tx:
        assert tx.unlink_blob(repo.id, config.digest) is True
        assert tx.unlink_blob(repo.id, config.digest) is False
        assert tx.unlink_blob(repo.id, digest("none")) is False
    with metadata_store.read() as tx:
        assert tx.get_linked_blob(repo.id, config.digest) is None
        assert tx.get_linked_blob(other.id, config.digest) == config
        assert tx.get_blob(config.digest) == config
    with metadata_store.write() as tx:
        assert tx.unlink_blob(other.id, config.digest) is True
    with metadata_store.read() as tx:
        assert tx.get_blob(config.digest) == config  # known blobs stay known
    with metadata_store.write() as tx:
        tx.link_blob(repo.id, config)
        assert tx.get_linked_blob(repo.id, config.digest) == config


# uploads


def test_upload_session_round_trip(metadata_store: MetadataStore) -> None:
    created = datetime(2026, 1, 2, 5, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    state = UploadState("uploads/abc", 0, "t0", '{"parts": []}')
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.create_upload(UploadSession("abc", repo.id, created, state))
        tx.create_upload(session(repo.id, "def"))
    with metadata_store.read() as tx:
        found = tx.get_upload("abc")
        assert tx.get_upload("missing") is None
        assert tx.get_upload("def") == session(repo.id, "def")
    assert found == UploadSession("abc", repo.id, T0, state)
    assert found.created_at.tzinfo == UTC


def test_update_upload_is_a_compare_and_set_on_the_token(metadata_store: MetadataStore) -> None:
    first = UploadState("k", 10, "t1", '{"etags": ["x"]}')
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.create_upload(session(repo.id, "u1", token="t0"))
        tx.create_upload(session(repo.id, "u2", token="t0"))
    with metadata_store.write() as tx:
        assert tx.update_upload("u1", "t0", first) is True
        assert tx.update_upload("u1", "t0", UploadState("k", 99, "t9")) is False  # stale
        assert tx.update_upload("missing", "t0", first) is False
    with metadata_store.read() as tx:
        assert tx.get_upload("u1") == UploadSession("u1", repo.id, T0, first)
        assert tx.get_upload("u2") == session(repo.id, "u2", token="t0")
    with metadata_store.write() as tx:
        same_token = UploadState("k2", 20, "t1", "")
        assert tx.update_upload("u1", "t1", same_token) is True  # the token may stay
        assert tx.get_upload("u1") == UploadSession("u1", repo.id, T0, same_token)


def test_delete_upload(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.create_upload(session(repo.id, "u1"))
        tx.create_upload(session(repo.id, "u2"))
    with metadata_store.write() as tx:
        tx.delete_upload("u1")
        tx.delete_upload("missing")
        assert tx.update_upload("u1", "t0", UploadState("k", 1, "t1")) is False
    with metadata_store.read() as tx:
        assert tx.get_upload("u1") is None
        assert tx.get_upload("u2") is not None


def test_update_upload_records_when_and_list_uploads(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.create_upload(session(repo.id, "u1"))
        tx.create_upload(session(repo.id, "u2"))
        tx.create_upload(session(other.id, "u3"))
    with metadata_store.write() as tx:
        assert tx.update_upload("u1", "t0", UploadState("k", 5, "t1"), at(60)) is True
        assert tx.update_upload("u2", "t0", UploadState("k", 5, "t1")) is True
    with metadata_store.read() as tx:
        everything = tx.list_uploads()
        mine = tx.list_uploads(repo.id)
        assert tx.list_uploads(12345) == []
    assert [u.id for u in everything] == ["u1", "u2", "u3"]
    assert [u.id for u in mine] == ["u1", "u2"]
    first, second = mine
    assert first.updated_at == at(60) and first.active_at == at(60)
    assert second.updated_at is None and second.active_at == T0


# image blobs (garbage collection's marks)


def test_image_blobs_keep_blobs_in_use_until_their_image_goes(
    metadata_store: MetadataStore,
) -> None:
    layer, config, shared = digest("layer"), digest("config"), digest("shared")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        one, two = push(tx, repo.id, "one", "two")
        (three,) = push(tx, other.id, "three")
        tx.add_image_blobs(repo.id, one, [one, config, layer, shared])
        tx.add_image_blobs(repo.id, one, [layer])  # idempotent
        tx.add_image_blobs(repo.id, two, [two, shared])
        tx.add_image_blobs(other.id, three, [three, shared])
    with metadata_store.read() as tx:
        assert tx.blobs_in_use() == {one, two, three, config, layer, shared}
        assert tx.blob_in_use(layer) and not tx.blob_in_use(digest("nothing"))
    with metadata_store.write() as tx:
        tx.delete_image(repo.id, one)
    with metadata_store.read() as tx:
        assert tx.blobs_in_use() == {two, three, shared}
    with metadata_store.write() as tx:
        tx.delete_repository(other.id)
    with metadata_store.read() as tx:
        assert tx.blobs_in_use() == {two, shared}


def test_forget_blob_forgets_only_blobs_no_image_keeps(metadata_store: MetadataStore) -> None:
    kept, dropped = digest("kept"), digest("dropped")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        (one,) = push(tx, repo.id, "one")
        tx.add_image_blobs(repo.id, one, [kept])
        for blob in (kept, dropped):
            tx.link_blob(repo.id, BlobInfo(blob, 3))
            tx.link_blob(other.id, BlobInfo(blob, 3))
    with metadata_store.write() as tx:
        assert tx.forget_blob(kept) is False
        assert tx.forget_blob(dropped) is True
        assert tx.forget_blob(digest("never stored")) is True
    with metadata_store.read() as tx:
        assert tx.get_blob(kept) == BlobInfo(kept, 3)
        assert tx.get_linked_blob(other.id, kept) is not None
        assert tx.get_blob(dropped) is None
        assert tx.get_linked_blob(repo.id, dropped) is None
        assert tx.get_linked_blob(other.id, dropped) is None


def test_forget_blob_rolls_back_with_its_transaction(metadata_store: MetadataStore) -> None:
    blob = digest("blob")
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.link_blob(repo.id, BlobInfo(blob, 3))
    with pytest.raises(Boom), metadata_store.write() as tx:
        tx.forget_blob(blob)
        raise Boom
    with metadata_store.read() as tx:
        assert tx.get_linked_blob(repo.id, blob) == BlobInfo(blob, 3)


# resource tags


def test_resource_tags(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        other = new_repo(tx, "team/other")
        tx.put_resource_tags(repo.id, [("team", "a"), ("env", "dev"), ("Cost", "1")])
        tx.put_resource_tags(other.id, [("team", "b")])
    with metadata_store.write() as tx:
        tx.put_resource_tags(repo.id, [("env", "prod"), ("owner", "x"), ("owner", "y")])
        tx.put_resource_tags(repo.id, [])
    with metadata_store.read() as tx:
        assert tx.get_resource_tags(repo.id) == [
            ("Cost", "1"),
            ("env", "prod"),
            ("owner", "y"),  # the last value of a key given twice
            ("team", "a"),
        ]
    with metadata_store.write() as tx:
        tx.delete_resource_tags(repo.id, ["env", "missing", "Cost"])
        tx.delete_resource_tags(repo.id, [])
    with metadata_store.read() as tx:
        assert tx.get_resource_tags(repo.id) == [("owner", "y"), ("team", "a")]
        assert tx.get_resource_tags(other.id) == [("team", "b")]
        assert tx.get_resource_tags(repo.id + other.id + 100) == []


# transactions


def test_a_write_that_raises_changes_nothing(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        (kept,) = push(tx, repo.id, "kept")
        tx.create_upload(session(repo.id, "u1"))
        tx.put_resource_tags(repo.id, [("team", "a")])
        tx.link_blob(repo.id, BlobInfo(digest("layer"), 1))
    before = everything(metadata_store, repo.id)
    with pytest.raises(Boom), metadata_store.write() as tx:
        new_repo(tx, "team/new")
        push(tx, repo.id, "new")
        tx.set_tag(repo.id, "kept", digest("new"), at(5))
        tx.delete_image(repo.id, kept)
        tx.add_references(repo.id, digest("new"), [kept])
        tx.set_tag_mutability(repo.id, TagMutability.IMMUTABLE, [])
        tx.link_blob(repo.id, BlobInfo(digest("layer2"), 2))
        tx.unlink_blob(repo.id, digest("layer"))
        tx.update_upload("u1", "t0", UploadState("k", 5, "t1"))
        tx.create_upload(session(repo.id, "u2"))
        tx.put_resource_tags(repo.id, [("team", "b")])
        tx.delete_resource_tags(repo.id, ["team"])
        tx.delete_repository(repo.id)
        raise Boom
    assert everything(metadata_store, repo.id) == before
    with metadata_store.read() as tx:
        assert tx.get_repository(REGISTRY, "team/new") is None
        assert tx.get_blob(digest("layer2")) is None
        assert tx.get_upload("u2") is None


def everything(store: MetadataStore, repo_id: int) -> tuple[object, ...]:
    """All a test reads of one repository."""
    with store.read() as tx:
        return (
            tx.list_repositories(REGISTRY, None, 100),
            tx.list_images(repo_id, "ANY", None, 100),
            tx.list_tags(repo_id, None, None),
            tx.images_referencing(repo_id, digest("kept")),
            tx.get_linked_blob(repo_id, digest("layer")),
            tx.get_upload("u1"),
            tx.get_resource_tags(repo_id),
        )


@pytest.mark.parametrize(
    "duplicate",
    [
        lambda tx, repo: new_repo(tx, repo.name),
        lambda tx, repo: tx.insert_image(image(repo.id, "a")),
        lambda tx, repo: tx.create_upload(session(repo.id, "u1")),
        lambda tx, repo: tx.add_references(repo.id, digest("a"), [digest("b")]),
    ],
    ids=["repository", "image", "upload", "reference"],
)
def test_a_duplicate_key_fails_and_rolls_the_write_back(
    metadata_store: MetadataStore, duplicate: Callable[[Transaction, Repository], object]
) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        push(tx, repo.id, "a", "b")
        tx.add_references(repo.id, digest("a"), [digest("b")])
        tx.create_upload(session(repo.id, "u1"))
    with pytest.raises(CONSTRAINT_ERRORS), metadata_store.write() as tx:
        tx.put_resource_tags(repo.id, [("lost", "yes")])
        duplicate(tx, repo)
    with metadata_store.read() as tx:
        assert tx.get_resource_tags(repo.id) == []
        assert tx.count_images(repo.id) == 2


def test_reads_see_only_committed_writes(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
    with metadata_store.write() as tx:
        push(tx, repo.id, "a")
        tx.put_resource_tags(repo.id, [("team", "a")])
        assert tx.count_images(repo.id) == 1  # a write sees its own changes
        with metadata_store.read() as reader:  # readers do not wait for the writer
            assert reader.count_images(repo.id) == 0
            assert reader.get_tag(repo.id, "a") is None
            assert reader.get_resource_tags(repo.id) == []
    with metadata_store.read() as tx:
        assert tx.count_images(repo.id) == 1
        assert tx.get_resource_tags(repo.id) == [("team", "a")]


def test_a_read_sees_one_state_throughout(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
    with metadata_store.read() as reader:
        assert reader.count_images(repo.id) == 0
        writer = threading.Thread(target=lambda: commit_image(metadata_store, repo.id))
        writer.start()
        writer.join()
        assert reader.count_images(repo.id) == 0
        assert reader.get_tag(repo.id, "late") is None
    with metadata_store.read() as tx:
        assert tx.get_tag(repo.id, "late") == digest("late")


def commit_image(store: MetadataStore, repo_id: int) -> None:
    with store.write() as tx:
        push(tx, repo_id, "late")


def test_close_after_use_and_again(metadata_store: MetadataStore) -> None:
    """``close`` ends a store whose transactions are all over; closing twice is harmless
    (the fixture closes it once more)."""
    with metadata_store.write() as tx:
        new_repo(tx, "team/app")
    with metadata_store.read() as tx:
        assert tx.get_repository(REGISTRY, "team/app") is not None
    metadata_store.close()


WRITERS = 8
ROUNDS = 5


def test_concurrent_writers_lose_no_update(metadata_store: MetadataStore) -> None:
    """Read-modify-write in write transactions from many threads: every increment counts."""
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.put_resource_tags(repo.id, [("counter", "0")])
    start = threading.Barrier(WRITERS)

    def increment(_worker: int) -> None:
        start.wait()
        for _ in range(ROUNDS):
            with metadata_store.write() as tx:
                value = int(dict(tx.get_resource_tags(repo.id))["counter"])
                time.sleep(0.001)  # let the other writers run between the read and the write
                tx.put_resource_tags(repo.id, [("counter", str(value + 1))])

    run_threads(increment)
    with metadata_store.read() as tx:
        assert tx.get_resource_tags(repo.id) == [("counter", str(WRITERS * ROUNDS))]


def test_concurrent_check_then_insert_is_atomic(metadata_store: MetadataStore) -> None:
    """Many threads create the same repositories and images if absent: each exists once,
    created by exactly one of them, and no insert meets a duplicate."""
    start = threading.Barrier(WRITERS)
    created: list[tuple[str, int]] = []
    lock = threading.Lock()

    def create_if_absent(worker: int) -> None:
        start.wait()
        for i in range(ROUNDS):
            with metadata_store.write() as tx:
                repo = tx.get_repository(REGISTRY, f"team/r{i}")
                time.sleep(0.001)  # between the check and the act
                if repo is None:
                    repo = new_repo(tx, f"team/r{i}")
                    with lock:
                        created.append((repo.name, worker))
                if tx.get_image(repo.id, digest("shared")) is None:
                    tx.insert_image(image(repo.id, "shared"))

    run_threads(create_if_absent)
    assert sorted(name for name, _ in created) == [f"team/r{i}" for i in range(ROUNDS)]
    with metadata_store.read() as tx:
        repos = tx.list_repositories(REGISTRY, None, 100)
        assert [r.name for r in repos] == [f"team/r{i}" for i in range(ROUNDS)]
        assert [tx.count_images(r.id) for r in repos] == [1] * ROUNDS


def test_concurrent_compare_and_set_has_one_winner(metadata_store: MetadataStore) -> None:
    """Writers racing to renew one upload's token from the same expected token: one wins."""
    with metadata_store.write() as tx:
        repo = new_repo(tx, "team/app")
        tx.create_upload(session(repo.id, "u1", token="t0"))
    start = threading.Barrier(WRITERS)
    won: list[int] = []

    def renew(worker: int) -> None:
        start.wait()
        with metadata_store.write() as tx:
            time.sleep(0.001)  # let the other writers start theirs
            if tx.update_upload("u1", "t0", UploadState("k", worker, f"t-{worker}")):
                won.append(worker)

    run_threads(renew)
    assert len(won) == 1
    with metadata_store.read() as tx:
        found = tx.get_upload("u1")
    assert found is not None and found.state == UploadState("k", won[0], f"t-{won[0]}")


def run_threads(target: Callable[[int], None]) -> None:
    """Run ``target(worker number)`` on WRITERS threads at once; fail on any error."""
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        try:
            target(worker)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


# --- storage classes and pull times ---------------------------------------------------------


def test_storage_class_and_its_times(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "archive")
        old, new = push(tx, repo.id, "old", "new")
        assert tx.get_image(repo.id, old).storage_class == "STANDARD"  # type: ignore[union-attr]
        tx.set_storage_class(repo.id, old, "ARCHIVE", at(10))
        tx.set_storage_class(repo.id, digest("absent"), "ARCHIVE", at(10))  # ignored
    with metadata_store.read() as tx:
        archived = tx.get_image(repo.id, old)
        assert archived is not None
        assert (archived.storage_class, archived.last_archived_at) == ("ARCHIVE", at(10))
        assert archived.last_activated_at is None
        assert [v.image.digest for v in tx.list_images(repo.id, "ANY", None, 10, "ARCHIVE")] == [
            old
        ]
        assert [v.image.digest for v in tx.list_images(repo.id, "ANY", None, 10, "STANDARD")] == [
            new
        ]
        assert len(tx.list_images(repo.id, "ANY", None, 10)) == 2
        assert tx.lookup_image(REGISTRY, "archive", "old", None)[1] == archived
        snap = tx.snapshot(repo.id, ["old"], [], every_tag=True)
        assert snap.get_image(repo.id, old) == archived
    with metadata_store.write() as tx:
        tx.set_storage_class(repo.id, old, "STANDARD", at(20))
    with metadata_store.read() as tx:
        restored = tx.get_image(repo.id, old)
        assert restored is not None and restored.storage_class == "STANDARD"
        assert (restored.last_archived_at, restored.last_activated_at) == (at(10), at(20))


def test_pull_times_only_move_forward(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "pulls")
        one, two = push(tx, repo.id, "one", "two")
        tx.record_pulls([(repo.id, one, at(5)), (repo.id, digest("absent"), at(5))])
        tx.record_pulls([(repo.id, one, at(3)), (repo.id, two, at(4))])  # 3 is older: kept 5
    with metadata_store.read() as tx:
        assert tx.get_image(repo.id, one).last_pulled_at == at(5)  # type: ignore[union-attr]
        assert tx.get_image(repo.id, two).last_pulled_at == at(4)  # type: ignore[union-attr]
    with metadata_store.write() as tx:
        tx.record_pulls([(repo.id, one, at(9))])
    with metadata_store.read() as tx:
        assert tx.get_image(repo.id, one).last_pulled_at == at(9)  # type: ignore[union-attr]
        # every read that describes images has them: listed, and in a snapshot
        listed = {
            v.image.digest: v.image.last_pulled_at for v in tx.list_images(repo.id, "ANY", None, 9)
        }
        assert listed == {one: at(9), two: at(4)}
        # a pull's lookup_image may leave the time out (the SQL stores do: no join on a pull)
        snap = tx.snapshot(repo.id, ["one"], [two])
        assert snap.get_image(repo.id, one).last_pulled_at == at(9)  # type: ignore[union-attr]
        assert snap.get_image(repo.id, two).last_pulled_at == at(4)  # type: ignore[union-attr]


def test_a_deleted_image_takes_its_pull_time_with_it(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "pulled-then-deleted")
        (one,) = push(tx, repo.id, "one")
        tx.record_pulls([(repo.id, one, at(5))])
    with metadata_store.write() as tx:
        tx.delete_image(repo.id, one)
        tx.record_pulls([(repo.id, one, at(6))])  # a pull noted before the delete: ignored
    with metadata_store.write() as tx:
        push(tx, repo.id, "one")  # the same digest again: a new image, never pulled
    with metadata_store.read() as tx:
        again = tx.get_image(repo.id, one)
        assert again is not None and again.last_pulled_at is None
        (view,) = tx.list_images(repo.id, "ANY", None, 10)
        assert view.image.last_pulled_at is None
    # and a deleted repository its images' (SQLite may give the next repository the same id)
    with metadata_store.write() as tx:
        tx.record_pulls([(repo.id, one, at(7))])
    with metadata_store.write() as tx:
        tx.delete_repository(repo.id)
    with metadata_store.write() as tx:
        successor = new_repo(tx, "pulled-then-deleted")
        push(tx, successor.id, "one")
    with metadata_store.read() as tx:
        fresh = tx.get_image(successor.id, one)
        assert fresh is not None and fresh.last_pulled_at is None


# --- documents ----------------------------------------------------------------------------


def test_registry_documents(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        assert tx.get_document(REGISTRY, "settings", "") is None
        tx.put_document(REGISTRY, "settings", "", '{"a": 1}')
        tx.put_document(REGISTRY, "settings", "", '{"a": 2}')  # replaces
        tx.put_document(REGISTRY, "templates", "b/x", "B")
        tx.put_document(REGISTRY, "templates", "ROOT", "R")
        tx.put_document(REGISTRY, "templates", "a", "A")
        tx.put_document(OTHER_REGISTRY, "templates", "a", "other")
    with metadata_store.read() as tx:
        assert tx.get_document(REGISTRY, "settings", "") == '{"a": 2}'
        assert tx.get_document(REGISTRY, "settings", "x") is None
        assert tx.list_documents(REGISTRY, "templates") == [
            ("ROOT", "R"),
            ("a", "A"),
            ("b/x", "B"),
        ]  # byte order
        assert tx.list_documents(OTHER_REGISTRY, "templates") == [("a", "other")]
        assert tx.list_documents(REGISTRY, "nothing") == []
    with metadata_store.write() as tx:
        assert tx.delete_document(REGISTRY, "templates", "a") is True
        assert tx.delete_document(REGISTRY, "templates", "a") is False
    with metadata_store.read() as tx:
        assert [k for k, _ in tx.list_documents(REGISTRY, "templates")] == ["ROOT", "b/x"]
        assert tx.get_document(OTHER_REGISTRY, "templates", "a") == "other"


def test_repository_documents(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        one, two = new_repo(tx, "one"), new_repo(tx, "two")
        other = new_repo(tx, "one", OTHER_REGISTRY)
        assert tx.get_repository_document(one.id, "lifecycle") is None
        tx.put_repository_document(two.id, "lifecycle", "2")
        tx.put_repository_document(one.id, "lifecycle", "first")
        tx.put_repository_document(one.id, "lifecycle", "1")  # replaces
        tx.put_repository_document(one.id, "policy", "p")
        tx.put_repository_document(other.id, "lifecycle", "o")
    with metadata_store.read() as tx:
        assert tx.get_repository_document(one.id, "lifecycle") == "1"
        found = tx.repository_documents("lifecycle")
        assert [(r.id, r.registry_id, r.name, body) for r, body in found] == [
            (one.id, REGISTRY, "one", "1"),
            (two.id, REGISTRY, "two", "2"),
            (other.id, OTHER_REGISTRY, "one", "o"),
        ]
        assert tx.repository_documents("absent") == []
    with metadata_store.write() as tx:
        assert tx.delete_repository_document(two.id, "lifecycle") is True
        assert tx.delete_repository_document(two.id, "lifecycle") is False
        tx.delete_repository(one.id)  # its documents go with it
    with metadata_store.read() as tx:
        assert tx.get_repository_document(one.id, "policy") is None
        assert [body for _, body in tx.repository_documents("lifecycle")] == ["o"]
    with metadata_store.write() as tx:
        again = new_repo(tx, "one")
    with metadata_store.read() as tx:
        assert tx.get_repository_document(again.id, "lifecycle") is None


def test_documents_roll_back_with_the_write(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "docs")
        tx.put_document(REGISTRY, "k", "", "kept")
        tx.put_repository_document(repo.id, "k", "kept")
    with pytest.raises(Boom), metadata_store.write() as tx:
        tx.put_document(REGISTRY, "k", "", "lost")
        tx.put_document(REGISTRY, "k", "new", "lost")
        tx.put_repository_document(repo.id, "k", "lost")
        tx.delete_document(REGISTRY, "k", "")
        raise Boom
    with metadata_store.read() as tx:
        assert tx.get_document(REGISTRY, "k", "") == "kept"
        assert tx.get_document(REGISTRY, "k", "new") is None
        assert tx.get_repository_document(repo.id, "k") == "kept"


# browsing (the web page)


def test_registry_keys_lists_registries_holding_repositories(
    metadata_store: MetadataStore,
) -> None:
    with metadata_store.read() as tx:
        assert tx.registry_keys() == []
    with metadata_store.write() as tx:
        new_repo(tx, "b", OTHER_REGISTRY)
        new_repo(tx, "a")
        new_repo(tx, "c")
        new_repo(tx, "x", f"{REGISTRY}.eu-west-1")
    with metadata_store.read() as tx:
        assert tx.registry_keys() == sorted([REGISTRY, OTHER_REGISTRY, f"{REGISTRY}.eu-west-1"])


def test_repository_stats_count_and_sum_images(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        full = new_repo(tx, "full")
        empty = new_repo(tx, "empty")
        for i, name in enumerate(["one", "two", "three"]):
            tx.insert_image(replace(image(full.id, name), pushed_at=at(i)))
    with metadata_store.read() as tx:
        stats = tx.repository_stats([full.id, empty.id])
        assert tx.repository_stats([]) == {}
    sizes = sum(len(json.dumps({"name": n}).encode()) for n in ["one", "two", "three"])
    assert set(stats) == {full.id}
    assert (stats[full.id].images, stats[full.id].size) == (3, sizes)
    assert stats[full.id].last_pushed_at == at(2)


def test_recent_images_are_newest_first_with_tags(metadata_store: MetadataStore) -> None:
    with metadata_store.write() as tx:
        repo = new_repo(tx, "r")
        other = new_repo(tx, "o")
        push(tx, repo.id, "a", "b", "c", "d")
        push(tx, other.id, "z")
        tx.set_tag(repo.id, "also-c", digest("c"), at(10))
        tx.delete_tag(repo.id, "d")
    with metadata_store.read() as tx:
        first = tx.recent_images(repo.id, None, 2)
        assert [v.image.digest for v in first] == [digest("d"), digest("c")]
        assert [v.tags for v in first] == [(), ("also-c", "c")]
        rest = tx.recent_images(repo.id, first[-1].image.seq, 10)
        assert [v.image.digest for v in rest] == [digest("b"), digest("a")]
        assert tx.recent_images(repo.id, rest[-1].image.seq, 10) == []


def test_every_method_of_the_port_is_covered() -> None:
    """A method added to the port fails here until a contract test calls it."""
    source = Path(__file__).read_text()
    for port in (Transaction, MetadataStore):
        for name in vars(port):
            if not name.startswith("_"):
                assert f".{name}(" in source, f"{port.__name__}.{name} is not covered"
