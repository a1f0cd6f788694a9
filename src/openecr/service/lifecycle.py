"""Lifecycle policies: stored per repository, previewed, and run.

A repository's policy is its ``lifecycle-policy`` document (the text as given, when it was set,
when a run last evaluated it; creation templates write the same document); its last preview is
its ``lifecycle-preview`` document. Both go with the repository. ``run`` evaluates every policy
with the engine of :mod:`openecr.domain.lifecycle` at the service's clock, expires images
through ``ImageService.batch_delete_image`` (so an image a stored index lists is never deleted
from under it) and archives through ``ImageService.update_storage_class``; each action is
logged on the ``openecr.lifecycle`` logger. A preview and a run at the same clock act on the
same images.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from openecr.domain.lifecycle import Action, LifecycleImage, Policy, evaluate, parse_policy
from openecr.domain.model import ImageId, Repository
from openecr.domain.registries import account_of
from openecr.errors import (
    InvalidParameter,
    LifecyclePolicyInvalid,
    LifecyclePolicyNotFound,
    LifecyclePolicyPreviewInProgress,
    LifecyclePolicyPreviewNotFound,
    OpenEcrError,
    RepositoryNotFound,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.common import Clock, require_repository, utcnow
from openecr.service.images import ImageService
from openecr.service.paging import decode_token, encode_token

POLICY_KIND = "lifecycle-policy"
PREVIEW_KIND = "lifecycle-preview"
PREVIEW_COMPLETE = "COMPLETE"
PREVIEW_IN_PROGRESS = "IN_PROGRESS"
PREVIEW_FAILED = "FAILED"
# A preview still IN_PROGRESS this long after it started died with its process: it reads as
# FAILED and a new preview may start.
PREVIEW_STALE = timedelta(minutes=10)
_PAGE = 1000  # images read per query while loading a repository

log = logging.getLogger("openecr.lifecycle")


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    repository: Repository
    text: str
    registered_at: datetime
    last_evaluated_at: datetime | None = None

    def body(self) -> str:
        """The document: ``lifecyclePolicyText``, ``registeredAt`` and ``lastEvaluatedAt``
        (epoch seconds; the last absent until a run), the shape creation templates write."""
        doc: dict[str, object] = {
            "lifecyclePolicyText": self.text,
            "registeredAt": self.registered_at.timestamp(),
        }
        if self.last_evaluated_at is not None:
            doc["lastEvaluatedAt"] = self.last_evaluated_at.timestamp()
        return json.dumps(doc)

    @staticmethod
    def load(repository: Repository, body: str) -> StoredPolicy:
        doc = json.loads(body)
        last = doc.get("lastEvaluatedAt")
        return StoredPolicy(
            repository,
            doc["lifecyclePolicyText"],
            datetime.fromtimestamp(doc["registeredAt"], UTC),
            None if last is None else datetime.fromtimestamp(last, UTC),
        )


@dataclass(frozen=True, slots=True)
class PreviewResult:
    """One image the previewed policy acts on."""

    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    action: str  # EXPIRE | TRANSITION
    target_storage_class: str | None  # ARCHIVE for a transition
    priority: int
    storage_class: str = "STANDARD"

    @staticmethod
    def of(action: Action) -> PreviewResult:
        target = action.target_storage_class
        return PreviewResult(
            action.image.digest,
            action.image.tags,
            action.image.pushed_at,
            action.type.upper(),
            None if target is None else target.upper(),
            action.rule.priority,
            action.image.storage_class.upper(),
        )


@dataclass(frozen=True, slots=True)
class Preview:
    repository: Repository
    policy_text: str
    status: str
    results: tuple[PreviewResult, ...]
    started_at: datetime | None = None  # when StartLifecyclePolicyPreview was called

    @property
    def expiring(self) -> int:
        return sum(r.action == "EXPIRE" for r in self.results)

    @property
    def transitioning(self) -> dict[str, int]:
        """Images to transition, by target storage class."""
        counts: dict[str, int] = {}
        for r in self.results:
            if r.action == "TRANSITION" and r.target_storage_class:
                counts[r.target_storage_class] = counts.get(r.target_storage_class, 0) + 1
        return counts

    def body(self) -> str:
        return json.dumps(
            {
                "text": self.policy_text,
                "status": self.status,
                "startedAt": None if self.started_at is None else self.started_at.timestamp(),
                "results": [
                    {
                        "digest": r.digest,
                        "tags": list(r.tags),
                        "pushedAt": r.pushed_at.isoformat(),
                        "action": r.action,
                        "targetStorageClass": r.target_storage_class,
                        "priority": r.priority,
                        "storageClass": r.storage_class,
                    }
                    for r in self.results
                ],
            }
        )

    @staticmethod
    def load(repository: Repository, body: str) -> Preview:
        doc = json.loads(body)
        results = tuple(
            PreviewResult(
                r["digest"],
                tuple(r["tags"]),
                datetime.fromisoformat(r["pushedAt"]),
                r["action"],
                r["targetStorageClass"],
                r["priority"],
                r["storageClass"],
            )
            for r in doc["results"]
        )
        started = doc.get("startedAt")
        return Preview(
            repository,
            doc["text"],
            doc["status"],
            results,
            None if started is None else datetime.fromtimestamp(started, UTC),
        )

    def current(self, now: datetime) -> Preview:
        """This preview as seen at ``now``: one IN_PROGRESS since before ``PREVIEW_STALE``
        died with the process that ran it, and reads as FAILED."""
        stale = self.started_at is None or now - self.started_at > PREVIEW_STALE
        if self.status == PREVIEW_IN_PROGRESS and stale:
            return replace(self, status=PREVIEW_FAILED)
        return self


@dataclass(frozen=True, slots=True)
class RunAction:
    """What a run did (or, dry, would do) to one image."""

    repository: Repository
    digest: str
    tags: tuple[str, ...]
    priority: int
    action: str  # EXPIRE | TRANSITION
    outcome: str  # expired | transitioned | would expire | would transition | failed: <why>


@dataclass(slots=True)
class RunReport:
    """Every action of one run, and how many repositories it evaluated."""

    dry_run: bool
    repositories: int = 0
    actions: list[RunAction] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(a.outcome.startswith(outcome) for a in self.actions)


def _load_images(tx: Transaction, repo: Repository) -> list[LifecycleImage]:
    """Every image of ``repo`` as the engine sees it."""
    images: list[LifecycleImage] = []
    after: int | None = None
    while True:
        views = tx.list_images(repo.id, "ANY", after, _PAGE)
        for view in views:
            image = view.image
            images.append(
                LifecycleImage(
                    image.digest,
                    view.tags,
                    image.pushed_at,
                    image.seq,
                    last_pulled_at=image.last_pulled_at,
                    storage_class=image.storage_class.lower(),
                    last_transitioned_at=image.last_archived_at,
                    parents=tuple(tx.images_referencing(repo.id, image.digest)),
                )
            )
        if len(views) < _PAGE:
            return images
        after = views[-1].image.seq


class LifecycleService:
    def __init__(
        self,
        meta: MetadataStore,
        images: ImageService,
        clock: Clock = utcnow,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` runs previews in the background (None: inline, before
        ``start_preview`` returns)."""
        self.meta = meta
        self.images = images
        self.clock = clock
        self.executor = executor

    # --- policies -----------------------------------------------------------------------------

    def put_policy(self, registry_id: str, name: str, text: str) -> StoredPolicy:
        """Validate and store ``text`` as the repository's policy (replacing any)."""
        parse_policy(text)
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            stored = StoredPolicy(repo, text, self.clock())
            tx.put_repository_document(repo.id, POLICY_KIND, stored.body())
        return stored

    def get_policy(self, registry_id: str, name: str) -> StoredPolicy:
        with self.meta.read() as tx:
            return self._policy(tx, registry_id, name)

    def delete_policy(self, registry_id: str, name: str) -> StoredPolicy:
        with self.meta.write() as tx:
            stored = self._policy(tx, registry_id, name)
            tx.delete_repository_document(stored.repository.id, POLICY_KIND)
        return stored

    @staticmethod
    def _policy(tx: Transaction, registry_id: str, name: str) -> StoredPolicy:
        repo = require_repository(tx, registry_id, name)
        body = tx.get_repository_document(repo.id, POLICY_KIND)
        if body is None:
            raise LifecyclePolicyNotFound(name, account_of(registry_id))
        return StoredPolicy.load(repo, body)

    # --- previews -----------------------------------------------------------------------------

    def start_preview(self, registry_id: str, name: str, text: str | None) -> Preview:
        """Start evaluating ``text`` (default: the repository's policy) and store the
        repository's preview as IN_PROGRESS; the evaluation runs on the service's executor
        (inline without one) and stores the COMPLETE (or FAILED) preview. The policy is
        validated first (LifecyclePolicyInvalid, LifecyclePolicyNotFound). Raises
        LifecyclePolicyPreviewInProgress while the repository's last preview runs."""
        if text is not None:
            parse_policy(text)
        now = self.clock()
        with self.meta.write() as tx:
            if text is None:
                stored = self._policy(tx, registry_id, name)
                repo, text = stored.repository, stored.text
                parse_policy(text)
            else:
                repo = require_repository(tx, registry_id, name)
            body = tx.get_repository_document(repo.id, PREVIEW_KIND)
            if body is not None:
                last = Preview.load(repo, body).current(now)
                if last.status == PREVIEW_IN_PROGRESS:
                    raise LifecyclePolicyPreviewInProgress(name, account_of(registry_id))
            preview = Preview(repo, text, PREVIEW_IN_PROGRESS, (), now)
            tx.put_repository_document(repo.id, PREVIEW_KIND, preview.body())
        if self.executor is None:
            self._evaluate_preview(preview)
        else:
            self.executor.submit(self._evaluate_preview, preview)
        return preview

    def _evaluate_preview(self, started: Preview) -> None:
        """Evaluate a started preview and store its outcome, unless the repository or a newer
        preview replaced it meanwhile."""
        repo = started.repository
        try:
            with self.meta.read() as tx:
                actions = evaluate(
                    parse_policy(started.policy_text), _load_images(tx, repo), self.clock()
                )
            done = replace(
                started,
                status=PREVIEW_COMPLETE,
                results=tuple(PreviewResult.of(a) for a in actions),
            )
        except Exception:
            log.exception("lifecycle preview of %s failed", repo.name)
            done = replace(started, status=PREVIEW_FAILED)
        with self.meta.write() as tx:
            current = tx.get_repository(repo.registry_id, repo.name)
            body = None if current is None else tx.get_repository_document(current.id, PREVIEW_KIND)
            if current is None or current.id != repo.id or body is None:
                return
            if Preview.load(current, body).started_at != started.started_at:
                return
            tx.put_repository_document(repo.id, PREVIEW_KIND, done.body())

    def close(self) -> None:
        """Wait for running previews to finish."""
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    def get_preview(
        self,
        registry_id: str,
        name: str,
        image_ids: Sequence[ImageId] | None = None,
        tag_status: str = "ANY",
        token: str | None = None,
        max_results: int | None = None,
    ) -> tuple[Preview, list[PreviewResult], str | None]:
        """The repository's last preview, and one page of its results: those ``image_ids``
        name (by digest or tag) and ``tag_status`` (TAGGED, UNTAGGED, ANY) selects, in the
        order the run applies them (at most ``max_results``, default 100, from ``token``)."""
        if image_ids and (token is not None or max_results is not None):
            raise InvalidParameter(
                "Invalid parameter: 'maxResults' and 'nextToken' cannot be used with 'imageIds'"
            )
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            body = tx.get_repository_document(repo.id, PREVIEW_KIND)
        if body is None:
            raise LifecyclePolicyPreviewNotFound(name, account_of(registry_id))
        preview = Preview.load(repo, body).current(self.clock())
        results = [r for r in preview.results if _selected(r, image_ids, tag_status)]
        start = decode_token(token, int, "lifecycle-preview") if token else 0
        limit = max_results or 100
        page = results[start : start + limit]
        more = start + limit < len(results)
        return preview, page, encode_token(start + limit, "lifecycle-preview") if more else None

    # --- runs ---------------------------------------------------------------------------------

    def run(
        self, repository: str | None = None, registry_id: str | None = None, dry_run: bool = False
    ) -> RunReport:
        """Apply every stored policy (only ``repository``'s, of ``registry_id`` when given):
        expire (delete) and transition (archive) what it says, and record the evaluation
        time. ``dry_run`` only reports."""
        report = RunReport(dry_run)
        with self.meta.read() as tx:
            stored = [
                StoredPolicy.load(repo, body)
                for repo, body in tx.repository_documents(POLICY_KIND)
                if (repository is None or repo.name == repository)
                and (registry_id is None or account_of(repo.registry_id) == registry_id)
            ]
        for policy in stored:
            report.repositories += 1
            try:
                parsed = parse_policy(policy.text)
            except LifecyclePolicyInvalid as error:  # stored by an older, laxer version
                log.error("lifecycle policy of %s is not valid: %s", policy.repository.name, error)
                continue
            report.actions.extend(self._run_one(policy, parsed, dry_run))
        return report

    def _run_one(self, stored: StoredPolicy, policy: Policy, dry_run: bool) -> list[RunAction]:
        repo = stored.repository
        now = self.clock()
        with self.meta.read() as tx:
            actions = evaluate(policy, _load_images(tx, repo), now)
        outcomes: dict[str, str] = {}
        expiring = [a.image.digest for a in actions if a.type == "expire"]
        transitioning = [a.image.digest for a in actions if a.type == "transition"]
        if dry_run:
            outcomes = {d: "would expire" for d in expiring}
            outcomes.update({d: "would transition" for d in transitioning})
            expiring = transitioning = []
        if expiring:
            try:
                result = self.images.batch_delete_image(
                    repo.registry_id, repo.name, [ImageId(d) for d in expiring]
                )
            except RepositoryNotFound:
                return []  # deleted since: nothing left to act on
            outcomes.update({i.digest: "expired" for i in result.deleted if i.digest})
            for failure in result.failures:
                outcomes[failure.image_id.digest or ""] = f"failed: {failure.reason}"
        for digest in transitioning:
            try:
                self.images.update_storage_class(
                    repo.registry_id, repo.name, ImageId(digest), "ARCHIVE"
                )
                outcomes[digest] = "transitioned"
            except RepositoryNotFound:
                return []
            except OpenEcrError as error:
                outcomes[digest] = f"failed: {error.message}"
        done: list[RunAction] = []
        for action in actions:
            digest = action.image.digest
            outcome = outcomes.get(digest, "failed: image not found")
            done.append(
                RunAction(
                    repo,
                    digest,
                    action.image.tags,
                    action.rule.priority,
                    action.type.upper(),
                    outcome,
                )
            )
            log.info(
                "lifecycle %s %s/%s %s tags=%s rule=%d: %s",
                action.type,
                repo.registry_id,
                repo.name,
                digest,
                ",".join(action.image.tags) or "-",
                action.rule.priority,
                outcome,
            )
        if not dry_run:
            self._evaluated(stored, now)
        return done

    def _evaluated(self, stored: StoredPolicy, at: datetime) -> None:
        """Record ``at`` as the policy's last evaluation, unless it was replaced meanwhile."""
        repo = stored.repository
        with self.meta.write() as tx:
            body = tx.get_repository_document(repo.id, POLICY_KIND)
            if body is None:
                return
            current = StoredPolicy.load(repo, body)
            if (current.text, current.registered_at) != (stored.text, stored.registered_at):
                return
            updated = StoredPolicy(repo, current.text, current.registered_at, at)
            tx.put_repository_document(repo.id, POLICY_KIND, updated.body())


def _selected(result: PreviewResult, image_ids: Sequence[ImageId] | None, tag_status: str) -> bool:
    if tag_status == "TAGGED" and not result.tags:
        return False
    if tag_status == "UNTAGGED" and result.tags:
        return False
    if not image_ids:
        return True
    return any(
        (i.digest is None or i.digest == result.digest) and (i.tag is None or i.tag in result.tags)
        for i in image_ids
    )
