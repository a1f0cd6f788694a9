"""OSV vulnerability records (https://ossf.github.io/osv-schema/) and matching packages to them.

A record affects a package of a distribution when one of its ``affected`` entries names the
distribution's ecosystem (``Debian:12``, ``Alpine:v3.19``, ``Ubuntu:22.04:LTS``; an entry
without a release names every release; Ubuntu Pro entries are left out) and the package's
advisory name, and the package's version is listed in ``versions`` or falls in an
``ECOSYSTEM`` range (events ``introduced``, ``fixed``, ``last_affected``, compared with the
ecosystem's own ordering). Severity, as ECR reports it (CRITICAL, HIGH, MEDIUM, LOW,
INFORMATIONAL, UNDEFINED): the distribution's own rating first (Ubuntu's priority, Debian's
urgency), then ``database_specific.severity``, then the CVSS v3 base score of the record's
vector (NVD's bands), else UNDEFINED.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from openecr.domain.cvss import cvss3_base_score
from openecr.domain.packages import Distribution, Package
from openecr.domain.versions import Comparator

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED")
_RATINGS = {
    "critical": "CRITICAL",
    "high": "HIGH",
    "important": "HIGH",
    "moderate": "MEDIUM",
    "medium": "MEDIUM",
    "low": "LOW",
    "negligible": "INFORMATIONAL",
    "unimportant": "INFORMATIONAL",
    "informational": "INFORMATIONAL",
}


class RecordInvalid(ValueError):
    """A file that is not an OSV record the scanner can use."""


@dataclass(frozen=True, slots=True)
class Range:
    events: tuple[tuple[str, str], ...]  # (introduced | fixed | last_affected, version)


@dataclass(frozen=True, slots=True)
class Affected:
    ecosystem: str  # Debian, Alpine, Ubuntu
    release: str | None  # 12, v3.19, 22.04; None: every release
    package: str
    ranges: tuple[Range, ...]
    versions: frozenset[str]
    rating: str | None  # the distribution's severity for this package, if it gave one


@dataclass(frozen=True, slots=True)
class Record:
    id: str
    name: str  # the CVE the record is about when it names one, else its id
    description: str
    uri: str
    severity: str  # one of SEVERITIES (the rating of an entry, when it has one, wins)
    cvss3_vector: str | None
    cvss3_score: float | None
    modified: datetime | None
    affected: tuple[Affected, ...]
    cves: tuple[str, ...] = ()  # the CVEs the record names (its id, upstream, aliases)
    withdrawn: bool = False


def _rating(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _RATINGS.get(value.strip().lower().rstrip("*"))


def _band(score: float) -> str:
    if score >= 9.0:
        return "CRITICAL"
    if score >= 7.0:
        return "HIGH"
    if score >= 4.0:
        return "MEDIUM"
    if score > 0.0:
        return "LOW"
    return "INFORMATIONAL"


def _ecosystem(value: str) -> tuple[str, str | None] | None:
    """(ecosystem, release) of an OSV ecosystem string the scanner knows, else None."""
    base, _, rest = value.partition(":")
    if base not in ("Debian", "Alpine", "Ubuntu"):
        return None
    if not rest:
        return base, None
    parts = rest.split(":")
    if base == "Ubuntu":
        if parts[0] == "Pro":
            return None  # Ubuntu Pro (ESM) fixes do not reach ordinary images
        return base, parts[0]
    return base, parts[0]


def _name(doc: Mapping[str, Any]) -> str:
    ident = str(doc["id"])
    if ident.startswith("CVE-"):
        return ident
    for key in ("upstream", "aliases"):
        cves = [a for a in doc.get(key) or () if isinstance(a, str) and a.startswith("CVE-")]
        if len(cves) == 1:
            return cves[0]
    return ident


def _uri(doc: Mapping[str, Any]) -> str:
    refs = [r for r in doc.get("references") or () if isinstance(r, dict) and r.get("url")]
    for kind in ("ADVISORY", "WEB"):
        for ref in refs:
            if ref.get("type") == kind:
                return str(ref["url"])
    if refs:
        return str(refs[0]["url"])
    return f"https://osv.dev/vulnerability/{doc['id']}"


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_record(doc: object) -> Record:
    """An OSV record from its JSON document; raises RecordInvalid."""
    if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
        raise RecordInvalid("not an OSV record: no 'id'")
    vector: str | None = None
    score: float | None = None
    rating: str | None = None
    for entry in doc.get("severity") or ():
        if not isinstance(entry, dict):
            continue
        kind, value = entry.get("type"), entry.get("score")
        if kind == "CVSS_V3" and isinstance(value, str) and vector is None:
            vector, score = value, cvss3_base_score(value)
        elif kind == "Ubuntu":
            rating = rating or _rating(value)
    database = doc.get("database_specific")
    if rating is None and isinstance(database, dict):
        rating = _rating(database.get("severity"))
    if rating is None and score is not None:
        rating = _band(score)
    affected: list[Affected] = []
    for entry in doc.get("affected") or ():
        if not isinstance(entry, dict) or not isinstance(entry.get("package"), dict):
            continue
        package = entry["package"]
        known = _ecosystem(str(package.get("ecosystem", "")))
        if known is None or not isinstance(package.get("name"), str):
            continue
        ranges = tuple(
            Range(
                tuple(
                    (kind, str(version))
                    for event in r.get("events") or ()
                    if isinstance(event, dict)
                    for kind, version in event.items()
                    if kind in ("introduced", "fixed", "last_affected")
                )
            )
            for r in entry.get("ranges") or ()
            if isinstance(r, dict) and r.get("type") == "ECOSYSTEM"
        )
        specific = entry.get("ecosystem_specific")
        urgency = _rating(specific.get("urgency")) if isinstance(specific, dict) else None
        versions = frozenset(str(v) for v in entry.get("versions") or ())
        affected.append(Affected(*known, package["name"], ranges, versions, urgency))
    details = doc.get("details") or doc.get("summary") or ""
    cves = tuple(
        dict.fromkeys(
            a
            for a in (doc["id"], *(doc.get("upstream") or ()), *(doc.get("aliases") or ()))
            if isinstance(a, str) and a.startswith("CVE-")
        )
    )
    return Record(
        doc["id"],
        _name(doc),
        str(details),
        _uri(doc),
        rating or "UNDEFINED",
        vector,
        score,
        _timestamp(doc.get("modified")),
        tuple(affected),
        cves,
        bool(doc.get("withdrawn")),
    )


def _in_range(version: str, events: Sequence[tuple[str, str]], compare: Comparator) -> bool:
    """OSV's evaluation of one range: sort the events, and walk those at or below
    ``version``."""

    def order(a: tuple[str, str], b: tuple[str, str]) -> int:
        if a[1] == "0" or b[1] == "0":
            return (b[1] == "0") - (a[1] == "0")
        return compare(a[1], b[1])

    affected = False
    for kind, at in sorted(events, key=functools.cmp_to_key(order)):
        if kind == "introduced":
            if at == "0" or compare(at, version) <= 0:
                affected = True
        elif kind == "fixed":
            if compare(at, version) <= 0:
                affected = False
        elif kind == "last_affected" and compare(at, version) < 0:
            affected = False
    return affected


def affects(entry: Affected, dist: Distribution, package: Package) -> bool:
    """Whether ``entry`` covers ``package`` of an image of ``dist``."""
    if entry.ecosystem != dist.ecosystem or entry.package != package.advisory_name:
        return False
    if entry.release is not None and entry.release != dist.release:
        return False
    version = package.advisory_version
    if version in entry.versions:
        return True
    return any(_in_range(version, r.events, dist.compare) for r in entry.ranges)


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    description: str
    uri: str
    severity: str
    package_name: str
    package_version: str
    cvss3_vector: str | None = None
    cvss3_score: float | None = None

    @property
    def rank(self) -> tuple[int, str, str, str]:
        """Findings sort by severity (CRITICAL first), then name, then package."""
        return (SEVERITIES.index(self.severity), self.name, self.package_name, self.package_version)


def match(
    records: Sequence[Record], dist: Distribution, packages: Sequence[Package]
) -> list[Finding]:
    """The findings of ``packages`` against ``records``: one per vulnerability name and
    advisory package (binary packages built from one source count once), sorted by rank.
    Withdrawn records are left out; an advisory named otherwise than by a CVE (a Debian DSA
    listing several CVEs) is left out for a package whose findings already name all its
    CVEs."""
    by_name: dict[str, list[Package]] = {}
    for package in packages:
        by_name.setdefault(package.advisory_name, []).append(package)
    found: dict[tuple[str, str, str], Finding] = {}
    # records named by a CVE first, so that advisories covering the same CVEs can defer to them
    ordered = sorted(
        (r for r in records if not r.withdrawn), key=lambda r: not r.name.startswith("CVE-")
    )
    for record in ordered:
        for entry in record.affected:
            for package in by_name.get(entry.package, ()):
                if not affects(entry, dist, package):
                    continue
                key = (record.name, package.advisory_name, package.advisory_version)
                if key in found:
                    continue
                covered = {
                    (c, package.advisory_name, package.advisory_version) for c in record.cves
                }
                if not record.name.startswith("CVE-") and covered and covered <= found.keys():
                    continue
                found[key] = Finding(
                    record.name,
                    record.description,
                    record.uri,
                    entry.rating or record.severity,
                    package.advisory_name,
                    package.advisory_version,
                    record.cvss3_vector,
                    record.cvss3_score,
                )
    return sorted(found.values(), key=lambda f: f.rank)
