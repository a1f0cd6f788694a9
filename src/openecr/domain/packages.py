"""An image's installed OS packages, from the package databases found in its file system.

Debian and Ubuntu: dpkg's ``var/lib/dpkg/status`` (paragraphs whose ``Status`` ends in
``installed``) and distroless images' ``var/lib/dpkg/status.d/*`` (one paragraph per file, no
``Status``). Alpine: apk's ``lib/apk/db/installed``. The distribution and its release come from
``os-release``. Advisories name the package they fix as the distribution tracks it: the source
package for Debian and Ubuntu (``Source:``, which may carry the source version in parentheses),
the origin for Alpine (``o:``); :attr:`Package.advisory_name` and
:attr:`Package.advisory_version` are those.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from openecr.domain.versions import Comparator, apk_compare, dpkg_compare

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_DIR = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")

_SOURCE = re.compile(r"\s*(?P<name>[^\s(]+)\s*(?:\((?P<version>[^)]+)\))?\s*")


@dataclass(frozen=True, slots=True)
class Package:
    name: str
    version: str
    source_name: str  # the source package (dpkg) or origin (apk); the name when none is given
    source_version: str

    @property
    def advisory_name(self) -> str:
        return self.source_name

    @property
    def advisory_version(self) -> str:
        return self.source_version


@dataclass(frozen=True, slots=True)
class Distribution:
    """An OSV ecosystem: ``Debian`` and release ``12``, ``Ubuntu`` and ``22.04``, ``Alpine``
    and ``v3.19``."""

    ecosystem: str
    release: str

    @property
    def compare(self) -> Comparator:
        return apk_compare if self.ecosystem == "Alpine" else dpkg_compare

    def __str__(self) -> str:
        return f"{self.ecosystem}:{self.release}"


@dataclass(frozen=True, slots=True)
class Inventory:
    distribution: Distribution
    packages: tuple[Package, ...]


def parse_os_release(text: str) -> dict[str, str]:
    """``KEY=value`` lines (values optionally quoted) as a dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, eq, value = line.strip().partition("=")
        if not eq or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        found[key.strip()] = value
    return found


def _paragraphs(text: str) -> Iterable[dict[str, str]]:
    """deb822 paragraphs: ``Field: value`` with continuation lines, blank-line separated."""
    fields: dict[str, str] = {}
    last: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last is not None:
                fields[last] += "\n" + line.strip()
        else:
            key, colon, value = line.partition(":")
            if colon:
                last = key.strip()
                fields[last] = value.strip()
    if fields:
        yield fields


def parse_dpkg_status(text: str, *, require_status: bool = True) -> list[Package]:
    """Installed packages of a dpkg status file (``require_status``: only paragraphs whose
    ``Status`` says ``installed``; distroless ``status.d`` files have none)."""
    found: list[Package] = []
    for fields in _paragraphs(text):
        name, version = fields.get("Package"), fields.get("Version")
        if not name or not version:
            continue
        if require_status and fields.get("Status", "").split()[-1:] != ["installed"]:
            continue
        source_name, source_version = name, version
        match = _SOURCE.fullmatch(fields.get("Source", ""))
        if match is not None and fields.get("Source"):
            source_name = match["name"]
            source_version = match["version"] or version
        found.append(Package(name, version, source_name, source_version.strip()))
    return found


def parse_apk_installed(text: str) -> list[Package]:
    """Installed packages of apk's database (``P:`` name, ``V:`` version, ``o:`` origin)."""
    found: list[Package] = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":" and line[0] not in fields:
                fields[line[0]] = line[2:].strip()
        name, version = fields.get("P"), fields.get("V")
        if name and version:
            found.append(Package(name, version, fields.get("o") or name, version))
    return found


def distribution(os_release: Mapping[str, str], manager: str) -> Distribution | None:
    """The OSV ecosystem of an image whose packages ``manager`` (dpkg, apk) installed, from
    its os-release; None when it is not one the scanner supports."""
    os_id = os_release.get("ID", "").lower()
    version = os_release.get("VERSION_ID", "")
    if manager == "apk" and os_id == "alpine":
        parts = version.split(".")
        if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]):
            return Distribution("Alpine", f"v{parts[0]}.{parts[1]}")
        return None
    if manager != "dpkg" or not version:
        return None
    if os_id == "ubuntu":
        return Distribution("Ubuntu", version)
    if os_id == "debian":
        return Distribution("Debian", version.split(".")[0])
    return None


def inventory(files: Mapping[str, bytes]) -> Inventory | None:
    """The installed packages of a file system given as the few files the scanner reads
    (paths without a leading slash); None for an unsupported image (no package database of
    a supported distribution)."""

    def text(path: str) -> str:
        return files[path].decode("utf-8", "replace")

    release_path = next((p for p in OS_RELEASE if p in files), None)
    os_release = parse_os_release(text(release_path)) if release_path else {}
    if APK_INSTALLED in files:
        dist = distribution(os_release, "apk")
        packages = parse_apk_installed(text(APK_INSTALLED))
    else:
        status_d = sorted(p for p in files if p.startswith(DPKG_STATUS_DIR))
        if DPKG_STATUS not in files and not status_d:
            return None
        dist = distribution(os_release, "dpkg")
        packages = parse_dpkg_status(text(DPKG_STATUS)) if DPKG_STATUS in files else []
        for path in status_d:
            packages.extend(parse_dpkg_status(text(path), require_status=False))
    if dist is None:
        return None
    return Inventory(dist, tuple(packages))
