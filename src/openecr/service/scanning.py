"""Image scanning: configurations, scans run in the background, findings.

State, all metadata documents:

* the registry's scanning configuration (``registry-scanning-configuration``): ``scanType``
  (BASIC) and up to two rules (``SCAN_ON_PUSH`` or ``MANUAL``) with WILDCARD repository
  filters;
* each repository's scans (repository document ``image-scans``, gone with the repository):
  per image digest its last scan's status, times and severity counts, and the push time of
  the image it scanned (an image deleted and pushed again is a new image, never scanned);
* each scan's findings (registry document ``image-scan-findings`` under
  ``<repository id>/<digest>``, read only through the scan id the repository's entry names).

A scan reads the image's OS packages from its layers (:mod:`openecr.service.image_files`,
:mod:`openecr.domain.packages`) and matches them against the operator's OSV database
(:mod:`openecr.service.vulnerability_db`, :mod:`openecr.domain.osv`). It runs on the
service's executor: IN_PROGRESS, then COMPLETE, UNSUPPORTED_IMAGE or FAILED. A scan still
IN_PROGRESS ``STALE`` after it started died with its process and reads as FAILED. As with
ECR's basic scanning, an image is scanned at most once per 24 hours (scan on push included);
a FAILED scan does not count.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from openecr.domain import mediatypes as mt
from openecr.domain.manifest import parse_manifest
from openecr.domain.model import (
    ImageFailure,
    ImageId,
    ImageRecord,
    ImageView,
    Repository,
    ScanSummary,
)
from openecr.domain.osv import SEVERITIES, Finding, match
from openecr.domain.packages import inventory
from openecr.domain.registries import account_of
from openecr.errors import (
    ImageArchived,
    ImageNotFound,
    InvalidParameter,
    LimitExceeded,
    ScanNotFound,
    UnsupportedImageType,
    ValidationError,
)
from openecr.ports.metadata import MetadataStore, Transaction
from openecr.service.blobstore import BlobStore
from openecr.service.common import Clock, require_repository, utcnow
from openecr.service.image_files import image_files
from openecr.service.images import ARCHIVE, MALFORMED, PutResult, resolve_ids
from openecr.service.paging import decode_token, encode_token
from openecr.service.vulnerability_db import VulnerabilityDatabase

log = logging.getLogger("openecr.scanning")

CONFIG_KIND = "registry-scanning-configuration"
SCANS_KIND = "image-scans"
FINDINGS_KIND = "image-scan-findings"

IN_PROGRESS = "IN_PROGRESS"
COMPLETE = "COMPLETE"
FAILED = "FAILED"
UNSUPPORTED_IMAGE = "UNSUPPORTED_IMAGE"

SCAN_INTERVAL = timedelta(hours=24)
STALE = timedelta(minutes=30)

DESCRIPTION_COMPLETE = "The scan was completed successfully."
DESCRIPTION_UNSUPPORTED = (
    "UnsupportedImageError: The operating system and/or package manager are not supported."
)
DESCRIPTION_NO_DATABASE = (
    "No vulnerability database is configured: openecr scans against an OSV database that the "
    "operator provides (openecr serve --vulnerability-db DIR, or OPENECR_VULNERABILITY_DB)."
)
DESCRIPTION_INTERRUPTED = "The scan was interrupted (the server stopped) before it completed."
DESCRIPTION_NOT_IMAGE = "UnsupportedImageError: The artifact has no file system layers to scan."


@dataclass(frozen=True, slots=True)
class Rule:
    frequency: str  # SCAN_ON_PUSH | MANUAL
    filters: tuple[str, ...]  # WILDCARD filters

    def matching(self, name: str) -> tuple[str, ...]:
        """The filters that select repository ``name``."""
        return tuple(f for f in self.filters if filter_matches(f, name))


@dataclass(frozen=True, slots=True)
class RegistryConfiguration:
    scan_type: str = "BASIC"
    rules: tuple[Rule, ...] = ()


@dataclass(frozen=True, slots=True)
class RepositoryConfiguration:
    repository: Repository
    scan_on_push: bool
    frequency: str
    filters: tuple[str, ...]


def filter_matches(pattern: str, name: str) -> bool:
    """ECR's scanning filters: ``*`` stands for any run of characters; a filter without a
    wildcard selects every repository whose name contains it."""
    import fnmatch

    if "*" not in pattern:
        return pattern in name
    return fnmatch.fnmatchcase(name, pattern.replace("[", "[[]").replace("?", "[?]"))


def repository_configuration(
    config: RegistryConfiguration, repo: Repository
) -> RepositoryConfiguration:
    """How ``repo`` is scanned: on push when a SCAN_ON_PUSH rule selects it or its own
    ``scanOnPush`` is set; else manually (with the filters of a MANUAL rule that selects it)."""
    by_frequency = {
        rule.frequency: rule.matching(repo.name)
        for rule in config.rules
        if rule.matching(repo.name)
    }
    if "SCAN_ON_PUSH" in by_frequency:
        return RepositoryConfiguration(repo, True, "SCAN_ON_PUSH", by_frequency["SCAN_ON_PUSH"])
    if repo.scan_on_push:
        return RepositoryConfiguration(repo, True, "SCAN_ON_PUSH", ())
    return RepositoryConfiguration(repo, False, "MANUAL", by_frequency.get("MANUAL", ()))


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


@dataclass(frozen=True, slots=True)
class Scan:
    """One image's last scan."""

    scan_id: str
    digest: str
    image_pushed_at: float  # the scanned image's push time: tells a re-pushed image apart
    status: str
    description: str | None
    started_at: datetime
    completed_at: datetime | None = None
    source_updated_at: datetime | None = None
    counts: tuple[tuple[str, int], ...] = ()

    def doc(self) -> dict[str, Any]:
        return {
            "scanId": self.scan_id,
            "imagePushedAt": self.image_pushed_at,
            "status": self.status,
            "description": self.description,
            "startedAt": self.started_at.timestamp(),
            "completedAt": _ts(self.completed_at),
            "sourceUpdatedAt": _ts(self.source_updated_at),
            "counts": dict(self.counts),
        }

    @staticmethod
    def load(digest: str, doc: dict[str, Any]) -> Scan:
        return Scan(
            doc["scanId"],
            digest,
            doc["imagePushedAt"],
            doc["status"],
            doc.get("description"),
            datetime.fromtimestamp(doc["startedAt"], UTC),
            _dt(doc.get("completedAt")),
            _dt(doc.get("sourceUpdatedAt")),
            tuple(sorted(doc.get("counts", {}).items(), key=lambda c: SEVERITIES.index(c[0]))),
        )

    def current(self, now: datetime) -> Scan:
        """This scan as seen at ``now``: one IN_PROGRESS for longer than ``STALE`` died."""
        if self.status == IN_PROGRESS and now - self.started_at > STALE:
            return replace(self, status=FAILED, description=DESCRIPTION_INTERRUPTED)
        return self

    def summary(self) -> ScanSummary:
        return ScanSummary(
            self.status,
            self.description,
            self.completed_at if self.status == COMPLETE else None,
            self.source_updated_at,
            self.counts,
        )


@dataclass(frozen=True, slots=True)
class FindingsPage:
    repository: Repository
    digest: str
    scan: Scan
    findings: list[Finding] = field(default_factory=list)
    next_token: str | None = None


def _counts_against_limit(last: Scan | None, now: datetime) -> bool:
    """Whether ``last`` keeps the image from being scanned again at ``now``: it runs, or it
    did not fail and started less than 24 hours ago."""
    if last is None or last.status == FAILED:
        return False
    return last.status == IN_PROGRESS or now - last.started_at < SCAN_INTERVAL


def _image_key(record: ImageRecord) -> float:
    return record.pushed_at.timestamp()


def _id_text(image_id: ImageId) -> str:
    return f"{{imageDigest:'{image_id.digest or 'null'}', imageTag:'{image_id.tag or 'null'}'}}"


def _finding_doc(f: Finding) -> dict[str, Any]:
    return {
        "name": f.name,
        "description": f.description,
        "uri": f.uri,
        "severity": f.severity,
        "package_name": f.package_name,
        "package_version": f.package_version,
        "cvss3_vector": f.cvss3_vector,
        "cvss3_score": f.cvss3_score,
    }


def _finding(doc: dict[str, Any]) -> Finding:
    return Finding(
        doc["name"],
        doc["description"],
        doc["uri"],
        doc["severity"],
        doc["package_name"],
        doc["package_version"],
        doc.get("cvss3_vector"),
        doc.get("cvss3_score"),
    )


class ScanningService:
    def __init__(
        self,
        meta: MetadataStore,
        blobs: BlobStore,
        database: VulnerabilityDatabase | None = None,
        clock: Clock = utcnow,
        executor: Executor | None = None,
    ) -> None:
        """``executor`` runs scans in the background (None: inline, before ``start_scan``
        returns); ``database`` is the operator's OSV tree (None: scans end FAILED, saying so)."""
        self.meta = meta
        self.blobs = blobs
        self.database = database
        self.clock = clock
        self.executor = executor
        # (repository id, digest) of pushes ``noted`` as scanned on push, for ``pushed``
        self._on_push: set[tuple[int, str]] = set()

    def close(self) -> None:
        """Wait for running scans to finish."""
        if self.executor is not None:
            self.executor.shutdown(wait=True)

    # --- configuration ------------------------------------------------------------------------

    def put_repository_configuration(
        self, registry_id: str, name: str, scan_on_push: bool
    ) -> Repository:
        """PutImageScanningConfiguration: set the repository's ``scanOnPush``."""
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            tx.set_scan_on_push(repo.id, scan_on_push)
        return replace(repo, scan_on_push=scan_on_push)

    @staticmethod
    def _config(tx: Transaction, registry_id: str) -> RegistryConfiguration:
        body = tx.get_document(registry_id, CONFIG_KIND, "")
        if body is None:
            return RegistryConfiguration()
        doc = json.loads(body)
        return RegistryConfiguration(
            doc["scanType"],
            tuple(Rule(r["scanFrequency"], tuple(r["filters"])) for r in doc["rules"]),
        )

    def get_registry_configuration(self, registry_id: str) -> RegistryConfiguration:
        with self.meta.read() as tx:
            return self._config(tx, registry_id)

    def put_registry_configuration(
        self, registry_id: str, scan_type: str, rules: Sequence[Rule]
    ) -> RegistryConfiguration:
        """PutRegistryScanningConfiguration. openecr scans with basic scanning only: ENHANCED
        (Amazon Inspector) and CONTINUOUS_SCAN are refused (ValidationError)."""
        if scan_type != "BASIC":
            raise ValidationError(
                f"openecr supports the BASIC scan type only, not {scan_type} (enhanced scanning "
                "is Amazon Inspector's)"
            )
        for rule in rules:
            if rule.frequency not in ("SCAN_ON_PUSH", "MANUAL"):
                raise ValidationError(
                    f"Invalid parameter at 'scanFrequency' failed to satisfy constraint: "
                    f"'{rule.frequency} is not supported for scan type BASIC: use SCAN_ON_PUSH "
                    "or MANUAL'"
                )
        config = RegistryConfiguration(scan_type, tuple(rules))
        body = json.dumps(
            {
                "scanType": config.scan_type,
                "rules": [{"scanFrequency": r.frequency, "filters": r.filters} for r in rules],
            }
        )
        with self.meta.write() as tx:
            tx.put_document(registry_id, CONFIG_KIND, "", body)
        return config

    def repository_configurations(
        self, registry_id: str, names: Sequence[str]
    ) -> tuple[list[RepositoryConfiguration], list[str]]:
        """BatchGetRepositoryScanningConfiguration: the configurations of the named
        repositories that exist (in request order, each once), and the names that do not."""
        found: list[RepositoryConfiguration] = []
        missing: list[str] = []
        with self.meta.read() as tx:
            config = self._config(tx, registry_id)
            for name in dict.fromkeys(names):
                repo = tx.get_repository(registry_id, name)
                if repo is None:
                    missing.append(name)
                else:
                    found.append(repository_configuration(config, repo))
        return found, missing

    # --- scans --------------------------------------------------------------------------------

    @staticmethod
    def _scans(tx: Transaction, repo: Repository) -> dict[str, Any]:
        body = tx.get_repository_document(repo.id, SCANS_KIND)
        return {} if body is None else dict(json.loads(body))

    def _scan_of(self, scans: dict[str, Any], record: ImageRecord) -> Scan | None:
        doc = scans.get(record.digest)
        if doc is None or doc.get("imagePushedAt") != _image_key(record):
            return None  # never scanned, or a scan of an earlier image under this digest
        return Scan.load(record.digest, doc).current(self.clock())

    def _image(
        self, tx: Transaction, repo: Repository, image_id: ImageId, name: str
    ) -> ImageRecord:
        snapshot, [(_, found)] = resolve_ids(tx, repo, [image_id])
        if isinstance(found, ImageFailure) and found.code in MALFORMED:
            raise InvalidParameter(found.reason)
        record = (
            None if isinstance(found, ImageFailure) else snapshot.get_image(repo.id, found.digest)
        )
        if record is None:
            raise ImageNotFound(
                f"The image with imageId {_id_text(image_id)} does not exist within the "
                f"repository with name '{name}' in the registry with id "
                f"'{account_of(repo.registry_id)}'"
            )
        return record

    def start_scan(
        self, registry_id: str, name: str, image_id: ImageId
    ) -> tuple[Repository, ImageRecord, Scan]:
        """StartImageScan: record an IN_PROGRESS scan of the image and run it. Raises
        RepositoryNotFound, InvalidParameter, ImageNotFound, ImageArchived,
        UnsupportedImageType (a manifest list or index), LimitExceeded (scanned, or being
        scanned, within the last 24 hours)."""
        now = self.clock()
        with self.meta.write() as tx:
            repo = require_repository(tx, registry_id, name)
            record = self._image(tx, repo, image_id, name)
            if record.storage_class == ARCHIVE:
                raise ImageArchived(
                    f"The image with imageId {_id_text(image_id)} is archived and cannot be "
                    "scanned: restore it with UpdateImageStorageClass (targetStorageClass "
                    "STANDARD) first"
                )
            if record.media_type in mt.INDEXES:
                raise UnsupportedImageType("The image is of a type that cannot be scanned.")
            scans = self._scans(tx, repo)
            if _counts_against_limit(self._scan_of(scans, record), now):
                raise LimitExceeded(
                    "The scan quota per image has been exceeded. Wait and try again."
                )
            scan = self._begin(tx, repo, record, scans, now)
        self._submit(repo, record, scan)
        return repo, record, scan

    def _begin(
        self,
        tx: Transaction,
        repo: Repository,
        record: ImageRecord,
        scans: dict[str, Any],
        now: datetime,
    ) -> Scan:
        scan = Scan(uuid.uuid4().hex, record.digest, _image_key(record), IN_PROGRESS, None, now)
        scans[record.digest] = scan.doc()
        tx.put_repository_document(repo.id, SCANS_KIND, json.dumps(scans))
        return scan

    def _submit(self, repo: Repository, record: ImageRecord, scan: Scan) -> None:
        if self.executor is None:
            self._run(repo, record, scan)
        else:
            self.executor.submit(self._run, repo, record, scan)

    def note_push(self, tx: Transaction, result: PutResult) -> None:
        """The push writer: inside the push's own transaction (no read transaction of its
        own), note a pushed image whose repository is scanned on push (its own ``scanOnPush``
        or a SCAN_ON_PUSH rule). Manifest lists and indexes are not scanned (their images
        are)."""
        record = result.image
        if record.media_type in mt.INDEXES or record.storage_class == ARCHIVE:
            return
        config = self._config(tx, result.repository.registry_id)
        if repository_configuration(config, result.repository).scan_on_push:
            self._on_push.add((result.repository.id, record.digest))

    def pushed(self, result: PutResult) -> None:
        """The push listener, after the commit: scan an image :meth:`note_push` noted, unless
        it was scanned within the last 24 hours. (A note of a push whose transaction then
        failed is taken by the next push of that image, which is noted again anyway.)"""
        record = result.image
        key = (result.repository.id, record.digest)
        if key not in self._on_push:
            return
        self._on_push.discard(key)
        now = self.clock()
        with self.meta.write() as tx:
            repo = tx.get_repository(result.repository.registry_id, result.repository.name)
            if repo is None or repo.id != result.repository.id:
                return
            current = tx.get_image(repo.id, record.digest)
            if current is None or _image_key(current) != _image_key(record):
                return
            scans = self._scans(tx, repo)
            if _counts_against_limit(self._scan_of(scans, current), now):
                return
            scan = self._begin(tx, repo, current, scans, now)
        self._submit(repo, current, scan)

    def _outcome(self, record: ImageRecord) -> tuple[str, str, list[Finding], datetime | None]:
        """(status, description, findings, source updated at) of scanning ``record``."""
        if self.database is None:
            return FAILED, DESCRIPTION_NO_DATABASE, [], None
        manifest = parse_manifest(record.manifest, record.media_type)
        files = image_files(self.blobs, manifest)
        if files is None:
            return UNSUPPORTED_IMAGE, DESCRIPTION_NOT_IMAGE, [], None
        found = inventory(files)
        if found is None:
            return UNSUPPORTED_IMAGE, DESCRIPTION_UNSUPPORTED, [], None
        snapshot = self.database.snapshot()
        candidates = snapshot.candidates(found.distribution, found.packages)
        findings = match(candidates, found.distribution, found.packages)
        return COMPLETE, DESCRIPTION_COMPLETE, findings, snapshot.updated_at

    def _run(self, repo: Repository, record: ImageRecord, started: Scan) -> None:
        """Scan ``record`` and store the outcome, unless the scan was replaced meanwhile."""
        try:
            status, description, findings, source = self._outcome(record)
        except Exception as error:
            log.exception("scan of %s@%s failed", repo.name, record.digest)
            status, description, findings, source = FAILED, f"The scan failed: {error}", [], None
        counts: dict[str, int] = {}
        for finding in findings:
            counts[finding.severity] = counts.get(finding.severity, 0) + 1
        done = replace(
            started,
            status=status,
            description=description,
            completed_at=self.clock(),
            source_updated_at=source,
            counts=tuple(sorted(counts.items(), key=lambda c: SEVERITIES.index(c[0]))),
        )
        with self.meta.write() as tx:
            current = tx.get_repository(repo.registry_id, repo.name)
            if current is None or current.id != repo.id:
                return
            scans = self._scans(tx, repo)
            if (scans.get(record.digest) or {}).get("scanId") != started.scan_id:
                return
            scans[record.digest] = done.doc()
            tx.put_repository_document(repo.id, SCANS_KIND, json.dumps(scans))
            tx.put_document(
                repo.registry_id,
                FINDINGS_KIND,
                f"{repo.id}/{record.digest}",
                json.dumps(
                    {"scanId": started.scan_id, "findings": [_finding_doc(f) for f in findings]}
                ),
            )
        log.info("scan of %s@%s: %s, %d findings", repo.name, record.digest, status, len(findings))

    def findings(
        self,
        registry_id: str,
        name: str,
        image_id: ImageId,
        token: str | None = None,
        max_results: int | None = None,
    ) -> FindingsPage:
        """DescribeImageScanFindings: the image's last scan and, once COMPLETE, one page of
        its findings (at most ``max_results``, default 100, from ``token``). Raises
        RepositoryNotFound, InvalidParameter, ImageNotFound, ScanNotFound."""
        with self.meta.read() as tx:
            repo = require_repository(tx, registry_id, name)
            record = self._image(tx, repo, image_id, name)
            scan = self._scan_of(self._scans(tx, repo), record)
            if scan is None:
                raise ScanNotFound(_id_text(image_id), name, account_of(registry_id))
            body = None
            if scan.status == COMPLETE:
                body = tx.get_document(registry_id, FINDINGS_KIND, f"{repo.id}/{record.digest}")
        scope = f"scan-findings/{scan.scan_id}"
        start = decode_token(token, int, scope) if token else 0
        page = FindingsPage(repo, record.digest, scan)
        if body is None:
            return page
        doc = json.loads(body)
        if doc.get("scanId") != scan.scan_id:
            return page
        every = doc["findings"]
        limit = max_results or 100
        findings = [_finding(f) for f in every[start : start + limit]]
        more = start + limit < len(every)
        return replace(
            page, findings=findings, next_token=encode_token(start + limit, scope) if more else None
        )

    def annotate(
        self, tx: Transaction, repo: Repository, views: list[ImageView]
    ) -> list[ImageView]:
        """The DescribeImages annotator: each view with its image's last scan, if any."""
        scans = self._scans(tx, repo)
        if not scans:
            return views
        annotated: list[ImageView] = []
        for view in views:
            scan = self._scan_of(scans, view.image)
            annotated.append(view if scan is None else replace(view, scan=scan.summary()))
        return annotated
