"""Replication: the registry's configuration, a durable work queue fed by every push, and the
worker that copies images to their destinations.

* The configuration is a registry document (``replication-configuration``).
* A push into a repository some rule covers enqueues one task per destination (a document of
  the queue, kept under :data:`QUEUE`, which is no registry's key) and marks the image
  IN_PROGRESS for that destination (a ``replication-status`` document of the source registry).
* Workers (one thread per server process) claim a task with a lease (renewed while a transfer
  makes progress), copy the image and its children (children first, blobs before manifests,
  the tag last), and mark it COMPLETE or FAILED. A process killed mid-transfer leaves the task
  leased; once the lease runs out another worker (or the restarted process) takes it again,
  and a peer upload continues where it stopped.
* Destinations in this openecr share its blob store: their blobs are linked, never copied.
  Destinations on a peer (``PeerConnector``) get what they do not have, over the network.
* The destination repository is created when missing, as its registry's REPLICATION creation
  template says. Deletes do not replicate; tag moves do (a tag is set only while the source's
  tag still names the image, so a late retry never moves it back).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from openecr.domain.creation_templates import AppliedFor
from openecr.domain.digest import Digest
from openecr.domain.manifest import parse_manifest
from openecr.domain.model import BlobInfo, ImageFailure, ImageId, ImageRecord, Repository
from openecr.domain.registries import account_of, region_of, registry_key
from openecr.domain.replication import (
    Destination,
    DestinationStatus,
    FailureCode,
    ReplicationConfiguration,
    Status,
)
from openecr.errors import (
    BackendUnavailable,
    ImageNotFound,
    ImageTagAlreadyExists,
    InvalidParameter,
    OpenEcrError,
    RepositoryAlreadyExists,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.ports.replication import PeerConnector, PeerRefused, PeerRegistry, PeerUnavailable
from openecr.service.blobstore import BlobStore
from openecr.service.common import require_repository
from openecr.service.creation_templates import CreationTemplateService
from openecr.service.images import ImageService, PutResult, check_image_id, resolve_id
from openecr.service.repositories import RepositoryService

log = logging.getLogger("openecr.replication")

CONFIG_KIND = "replication-configuration"
STATUS_KIND = "replication-status"
TASK_KIND = "replication-task"
QUEUE = "~replication"  # the queue's "registry": not a registry key (those start with digits)
MAX_ATTEMPTS = 10  # tries of a destination that is unavailable before it is FAILED
MAX_BACKOFF = 300.0  # seconds

# (destination registry key, principal ARN, actions) -> whether its registry policy allows them
Allows = Callable[[str, str, Sequence[str]], bool]


def _no_peers(account: str, region: str) -> PeerRegistry | None:
    del account, region
    return None


@dataclass(frozen=True, slots=True)
class Task:
    """One image (and its children) to copy to one destination, as the queue stores it."""

    key: str
    source: str  # registry key
    repository: str
    repository_id: int
    digest: str
    tag: str | None
    destination: Destination
    attempts: int = 0
    not_before: float = 0.0
    owner: str | None = None
    lease_until: float = 0.0
    uploads: dict[str, str] = field(default_factory=dict)  # blob digest -> peer upload location

    def to_json(self) -> str:
        return json.dumps(
            {
                "source": self.source,
                "repository": self.repository,
                "repositoryId": self.repository_id,
                "digest": self.digest,
                "tag": self.tag,
                "destination": self.destination.to_doc(),
                "attempts": self.attempts,
                "notBefore": self.not_before,
                "owner": self.owner,
                "leaseUntil": self.lease_until,
                "uploads": self.uploads,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, key: str, body: str) -> Task:
        doc = json.loads(body)
        dest = doc["destination"]
        return cls(
            key,
            doc["source"],
            doc["repository"],
            int(doc["repositoryId"]),
            doc["digest"],
            doc.get("tag"),
            Destination(dest["region"], dest["registryId"]),
            int(doc.get("attempts", 0)),
            float(doc.get("notBefore", 0.0)),
            doc.get("owner"),
            float(doc.get("leaseUntil", 0.0)),
            dict(doc.get("uploads") or {}),
        )


def _status_key(repository_id: int, digest: str) -> str:
    return f"{repository_id}:{digest}"


def _dest_key(destination: Destination) -> str:
    return f"{destination.registry_id}/{destination.region}"


def _set_status(
    tx: Transaction, source: str, repo_id: int, digest: str, st: DestinationStatus, queued: int
) -> None:
    """Record a destination's status of an image; ``queued`` (+1 on enqueue, -1 when a task
    ends) counts its tasks still in the queue, kept with the status: a copy that completes
    while a later one of the same image is queued leaves it IN_PROGRESS."""
    key = _status_key(repo_id, digest)
    body = tx.get_document(source, STATUS_KIND, key)
    doc: dict[str, Any] = json.loads(body) if body else {}
    where = _dest_key(st.destination)
    pending = max(0, int(doc.get(where, {}).get("queued", 0)) + queued)
    if st.status is Status.COMPLETE and pending and where in doc:
        doc[where]["queued"] = pending
    else:
        doc[where] = {**st.to_doc(), "queued": pending}
    tx.put_document(source, STATUS_KIND, key, json.dumps(doc, sort_keys=True))


class _Failed(Exception):
    def __init__(self, code: FailureCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _LeaseLost(Exception):
    """Another worker took the task over (this one was too slow to renew its lease)."""


@dataclass(frozen=True, slots=True)
class _Image:
    record: ImageRecord
    blobs: tuple[BlobInfo, ...]


@dataclass(frozen=True, slots=True)
class StatusReport:
    repository: Repository
    digest: str
    tag: str | None
    statuses: list[DestinationStatus]


class ReplicationService:
    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        repositories: RepositoryService,
        templates: CreationTemplateService,
        images: ImageService,
        *,
        default_region: str,
        allows: Allows,
        peers: PeerConnector = _no_peers,
        lease_seconds: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``images`` writes the copies: it must have no push listeners (a copy is not
        replicated again)."""
        self.meta = meta
        self.blobs = blobs
        self.repositories = repositories
        self.templates = templates
        self.images = images
        self.default_region = default_region
        self.allows = allows
        self.peers = peers
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._queued = False  # enqueue queued a task since the last wake
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- configuration ------------------------------------------------------------------------

    def source_of(self, registry_id: str) -> Destination:
        return Destination(region_of(registry_id, self.default_region), account_of(registry_id))

    def put_configuration(
        self, registry_id: str, configuration: ReplicationConfiguration
    ) -> ReplicationConfiguration:
        """Replace the registry's configuration (no rules: replication off). Raises
        InvalidParameter."""
        configuration.check(self.source_of(registry_id))
        with self.meta.write() as tx:
            if configuration.rules:
                tx.put_document(registry_id, CONFIG_KIND, "", configuration.to_json())
            else:
                tx.delete_document(registry_id, CONFIG_KIND, "")
        return configuration

    def configuration(
        self, registry_id: str, tx: Transaction | None = None
    ) -> ReplicationConfiguration:
        if tx is None:
            with self.meta.read() as read:
                body = read.get_document(registry_id, CONFIG_KIND, "")
        else:
            body = tx.get_document(registry_id, CONFIG_KIND, "")
        return ReplicationConfiguration.from_json(body) if body else ReplicationConfiguration()

    # --- status -------------------------------------------------------------------------------

    def image_status(self, registry_id: str, name: str, image_id: ImageId) -> StatusReport:
        """DescribeImageReplicationStatus: the image's status at each destination it was
        queued for. Raises RepositoryNotFound, InvalidParameter, ImageNotFound."""
        failure = check_image_id(image_id)
        if failure is not None:
            raise InvalidParameter(failure.reason)
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            found = resolve_id(tx, repo, image_id)
            body = (
                None
                if isinstance(found, ImageFailure)
                else tx.get_document(registry_id, STATUS_KIND, _status_key(repo.id, found.digest))
            )
        if isinstance(found, ImageFailure):
            raise ImageNotFound(
                f"The image with imageId {{imageDigest:'{image_id.digest}', "
                f"imageTag:'{image_id.tag}'}} does not exist within the repository with name "
                f"'{name}' in the registry with id '{account_of(registry_id)}'"
            )
        digest = found.digest
        doc: dict[str, Any] = json.loads(body) if body else {}
        statuses = [DestinationStatus.from_doc(doc[k]) for k in sorted(doc)]
        return StatusReport(repo, digest, image_id.tag, statuses)

    # --- the push hooks: enqueue in the push's transaction, then wake the worker -----------

    def enqueue(self, tx: Transaction, result: PutResult) -> None:
        """ImageService's push writer: inside the push's transaction, queue the image for each
        destination whose rule covers its repository (the tasks commit with the image, or
        neither does)."""
        if not result.changed:
            return
        repo, image = result.repository, result.image
        destinations = self.configuration(repo.registry_id, tx).destinations_for(repo.name)
        if destinations:
            self._queued = True  # on_push wakes the worker after the commit
        now = self.clock()
        for i, destination in enumerate(destinations):
            key = f"{time.time_ns():020d}-{i:03d}-{uuid.uuid4().hex[:8]}"
            task = Task(
                key,
                repo.registry_id,
                repo.name,
                repo.id,
                image.digest,
                result.tag,
                destination,
                not_before=now,
            )
            tx.put_document(QUEUE, TASK_KIND, key, task.to_json())
            _set_status(
                tx,
                repo.registry_id,
                repo.id,
                image.digest,
                DestinationStatus(destination, Status.IN_PROGRESS),
                +1,
            )

    def on_push(self, result: PutResult) -> None:
        """ImageService's push listener (after the commit): wake the worker when
        :meth:`enqueue` queued something (a push nothing replicates leaves it asleep; a wake
        lost to a race costs at most the worker's one-second poll)."""
        if result.changed and self._queued:
            self._queued = False
            self._wake.set()

    # --- the worker ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="replication", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker; a transfer in progress ends at its next chunk or blob and is
        continued by the next worker (its lease runs out)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                worked = self.run_once()
            except BackendUnavailable as error:  # a database restarting: one line, try again
                log.warning("replication worker: %s", error)
                worked = False
            except Exception:  # anything else: with its traceback, and try again later
                log.exception("replication worker failed")
                worked = False
            if not worked:
                self._wake.wait(1.0)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim and process one due task; return whether there was one."""
        task = self._claim()
        if task is None:
            return False
        self._process(task)
        return True

    def drain(self) -> None:
        """Process due tasks until none is left (``openecr`` without a server, tests)."""
        while self.run_once():
            pass

    def pending(self) -> int:
        with self.meta.read() as tx:
            return len(tx.list_documents(QUEUE, TASK_KIND))

    def _due(self, task: Task, now: float) -> bool:
        return task.not_before <= now and (task.owner is None or task.lease_until <= now)

    def _claim(self) -> Task | None:
        now = self.clock()
        with self.meta.read() as tx:
            found = tx.list_documents(QUEUE, TASK_KIND)
        if not any(self._due(Task.from_json(k, b), now) for k, b in found):
            return None
        with self.meta.write() as tx:
            for key, body in tx.list_documents(QUEUE, TASK_KIND):
                task = Task.from_json(key, body)
                if self._due(task, now):
                    task = replace(task, owner=self.owner, lease_until=now + self.lease_seconds)
                    tx.put_document(QUEUE, TASK_KIND, key, task.to_json())
                    return task
        return None

    def _renew(self, task: Task, uploads: dict[str, str] | None = None) -> Task:
        """Extend the lease (and record upload progress); raises _LeaseLost."""
        with self.meta.write() as tx:
            body = tx.get_document(QUEUE, TASK_KIND, task.key)
            current = Task.from_json(task.key, body) if body else None
            if current is None or current.owner != self.owner:
                raise _LeaseLost(task.key)
            task = replace(
                current,
                lease_until=self.clock() + self.lease_seconds,
                uploads=current.uploads if uploads is None else uploads,
            )
            tx.put_document(QUEUE, TASK_KIND, task.key, task.to_json())
        return task

    def _finish(self, task: Task, status: DestinationStatus) -> None:
        with self.meta.write() as tx:
            body = tx.get_document(QUEUE, TASK_KIND, task.key)
            if body is None or Task.from_json(task.key, body).owner != self.owner:
                return  # another worker took it over: it reports
            tx.delete_document(QUEUE, TASK_KIND, task.key)
            _set_status(tx, task.source, task.repository_id, task.digest, status, -1)

    def _retry(self, task: Task, reason: str) -> None:
        attempts = task.attempts + 1
        if attempts >= MAX_ATTEMPTS:
            log.warning(
                "replication of %s to %s failed for good: %s",
                task.digest,
                _dest_key(task.destination),
                reason,
            )
            self._finish(
                task,
                DestinationStatus(
                    task.destination, Status.FAILED, FailureCode.DESTINATION_UNAVAILABLE
                ),
            )
            return
        delay = min(MAX_BACKOFF, 2.0 ** (attempts - 1))
        log.info(
            "replication of %s to %s: %s; retrying in %.0f s",
            task.digest,
            _dest_key(task.destination),
            reason,
            delay,
        )
        with self.meta.write() as tx:
            body = tx.get_document(QUEUE, TASK_KIND, task.key)
            if body is None or Task.from_json(task.key, body).owner != self.owner:
                return
            current = Task.from_json(task.key, body)
            retry = replace(
                current,
                attempts=attempts,
                not_before=self.clock() + delay,
                owner=None,
                lease_until=0.0,
            )
            tx.put_document(QUEUE, TASK_KIND, task.key, retry.to_json())

    def _process(self, task: Task) -> None:
        destination = task.destination
        try:
            self._replicate(task)
        except _LeaseLost:
            log.warning("replication task %s was taken over by another worker", task.key)
        except _Failed as failed:
            log.warning(
                "replication of %s to %s failed: %s", task.digest, _dest_key(destination), failed
            )
            self._finish(task, DestinationStatus(destination, Status.FAILED, failed.code))
        except PeerRefused as refused:
            log.warning(
                "replication of %s to %s refused: %s", task.digest, _dest_key(destination), refused
            )
            self._finish(
                task, DestinationStatus(destination, Status.FAILED, FailureCode.DESTINATION_REFUSED)
            )
        except PeerUnavailable as error:
            self._retry(task, str(error))
        except Exception as error:  # a bug or the store: keep the task, try again later
            log.exception("replication of %s to %s failed", task.digest, _dest_key(destination))
            self._retry(task, repr(error))
        else:
            log.info(
                "replicated %s:%s (%s) to %s",
                task.repository,
                task.tag or "",
                task.digest,
                _dest_key(destination),
            )
            self._finish(task, DestinationStatus(destination, Status.COMPLETE))

    # --- copying ------------------------------------------------------------------------------

    def _collect(
        self, tx: Transaction, repo: Repository, digest: str, into: dict[str, _Image]
    ) -> None:
        """The image and (first) its children, each with the blobs it references."""
        if digest in into:
            return
        record = tx.get_image(repo.id, digest)
        if record is None:
            raise _Failed(FailureCode.IMAGE_NOT_FOUND, f"{digest} is no longer in {repo.name}")
        manifest = parse_manifest(record.manifest, record.media_type)
        for child in manifest.children:
            self._collect(tx, repo, child.digest, into)
        blobs = []
        for descriptor in manifest.blobs:
            blob = tx.get_linked_blob(repo.id, descriptor.digest)
            if blob is not None:  # absent only when stored with --lenient-manifests
                blobs.append(blob)
        into[digest] = _Image(record, tuple(blobs))

    def _replicate(self, task: Task) -> None:
        images: dict[str, _Image] = {}
        with self.meta.read() as tx:
            repo = tx.get_repository(task.source, task.repository)
            if repo is None or repo.id != task.repository_id:
                raise _Failed(FailureCode.IMAGE_NOT_FOUND, f"{task.repository} is gone")
            self._collect(tx, repo, task.digest, images)
            tag = task.tag if task.tag and tx.get_tag(repo.id, task.tag) == task.digest else None
        peer = self.peers(task.destination.registry_id, task.destination.region)
        if peer is None:
            self._copy_local(task, list(images.values()), tag)
        else:
            self._copy_remote(task, peer, list(images.values()), tag)

    def _copy_local(self, task: Task, images: list[_Image], tag: str | None) -> None:
        dest = task.destination
        key = registry_key(dest.registry_id, dest.region, self.default_region)
        name = task.repository
        with self.meta.read() as tx:
            exists = tx.get_repository(key, name) is not None
        source_account = account_of(task.source)
        if dest.registry_id != source_account:
            actions = ["ecr:ReplicateImage"] + ([] if exists else ["ecr:CreateRepository"])
            if not self.allows(key, f"arn:aws:iam::{source_account}:root", actions):
                raise _Failed(
                    FailureCode.PERMISSION_DENIED,
                    f"the registry policy of {dest.registry_id} in {dest.region} does not allow "
                    f"{', '.join(actions)} for {source_account}",
                )
        if not exists:
            spec = self.templates.apply(key, name, AppliedFor.REPLICATION)
            with contextlib.suppress(RepositoryAlreadyExists):
                self.repositories.create(key, spec)
        last = images[-1].record.digest
        for image in images:
            with self.meta.write() as tx:
                target = require_repository(tx, key, name)
                for blob in image.blobs:
                    # same blob store: nothing to copy; refreshed in the link's transaction for
                    # garbage collection (a blob collected meanwhile is not linked: the push
                    # below is refused, as for any missing blob)
                    if tx.get_linked_blob(target.id, blob.digest) is None and self.blobs.touch(
                        Digest(blob.digest)
                    ):
                        tx.link_blob(target.id, blob)
            record = image.record
            try:
                self.images.store_manifest(
                    key,
                    name,
                    record.manifest,
                    record.media_type,
                    tag if record.digest == last else None,
                    record.digest,
                    idempotent=True,
                    algorithm=Digest(record.digest).algorithm,
                )
            except ImageTagAlreadyExists as error:
                raise _Failed(FailureCode.TAG_IMMUTABLE, error.message) from error
            except OpenEcrError as error:
                raise _Failed(FailureCode.DESTINATION_REFUSED, error.message) from error

    def _copy_remote(
        self, task: Task, peer: PeerRegistry, images: list[_Image], tag: str | None
    ) -> None:
        name = task.repository
        peer.ensure_repository(name)
        uploads = dict(task.uploads)
        for image in images:
            for blob in image.blobs:
                if self.clock() > task.lease_until - self.lease_seconds / 2:
                    task = self._renew(task)
                if peer.has_blob(name, blob.digest):
                    continue

                def progress(
                    digest: str, location: str, offset: int, size: int = blob.size
                ) -> None:
                    nonlocal task
                    uploads[digest] = location
                    task = self._renew(task, uploads)
                    log.info(
                        "replication of %s to %s: blob %s %d/%d bytes",
                        task.digest,
                        _dest_key(task.destination),
                        digest,
                        offset,
                        size,
                    )

                peer.upload_blob(
                    name,
                    blob.digest,
                    blob.size,
                    self._reader(blob.digest),
                    uploads.get(blob.digest),
                    progress,
                )
                uploads.pop(blob.digest, None)
            record = image.record
            peer.put_manifest(name, record.digest, record.manifest, record.media_type)
        if tag is not None:
            top = images[-1].record
            peer.put_manifest(name, tag, top.manifest, top.media_type)

    def _reader(self, digest: str) -> Callable[[int], Iterator[bytes]]:
        def read(offset: int) -> Iterator[bytes]:
            return self.blobs.open(Digest(digest), offset)

        return read
