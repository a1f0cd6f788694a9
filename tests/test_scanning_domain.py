"""The scanner's pure parts: version orderings, package databases, OSV matching, CVSS scores,
layer application (whiteouts, compressions), and the test database's loading."""

from __future__ import annotations

import io
import logging

import pytest

from openecr.domain.cvss import cvss3_base_score
from openecr.domain.osv import affects, match, parse_record
from openecr.domain.packages import (
    Distribution,
    Package,
    distribution,
    inventory,
    parse_apk_installed,
    parse_dpkg_status,
    parse_os_release,
)
from openecr.domain.versions import apk_compare, dpkg_compare
from openecr.service.image_files import LayerUnreadable, apply_layer, read_files
from openecr.service.vulnerability_db import VulnerabilityDatabase
from scan_images import DATABASE, alpine_layers, debian_layers, gzip_layer, tar_layer, zstd_layer


def _sign(n: int) -> int:
    return (n > 0) - (n < 0)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0", 0),
        ("1.0~rc1", "1.0", -1),
        ("1.0~~", "1.0~", -1),
        ("1:1.0", "2.0", 1),
        ("2.36-9+deb12u9", "2.36-9+deb12u10", -1),
        ("3.0.11-1~deb12u1", "3.0.11-1~deb12u2", -1),
        ("3.0.11-1~deb12u1", "3.0.11-1", -1),
        ("1.0-1", "1.0", 1),
        ("1.0a", "1.0", 1),
        ("1.0+b1", "1.0.1", -1),
        ("1.2.3", "1.2.3-0", 0),
        ("0:1.0", "1.0", 0),
    ],
)
def test_dpkg_version_ordering(a: str, b: str, expected: int) -> None:
    assert _sign(dpkg_compare(a, b)) == expected
    assert _sign(dpkg_compare(b, a)) == -expected


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.36.1-r9", "1.36.1-r10", -1),
        ("1.2.3_rc1", "1.2.3", -1),
        ("1.2.3_alpha", "1.2.3_beta", -1),
        ("1.2.3_p1", "1.2.3", 1),
        ("1.2.10", "1.2.9", 1),
        ("1.2a", "1.2", 1),
        ("1.2.1", "1.2", 1),
        ("1.3.1_rc1-r0", "1.3.1-r0", -1),
        ("3.1.4-r5", "3.1.4-r5", 0),
    ],
)
def test_apk_version_ordering(a: str, b: str, expected: int) -> None:
    assert _sign(apk_compare(a, b)) == expected
    assert _sign(apk_compare(b, a)) == -expected


@pytest.mark.parametrize(
    ("vector", "score"),
    [
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
        ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N", 5.5),
        ("CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:C/C:L/I:L/A:N", 6.4),
        ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
        ("CVSS:3.1/AV:N/AC:L", None),
        ("CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P", None),
    ],
)
def test_cvss3_base_scores(vector: str, score: float | None) -> None:
    assert cvss3_base_score(vector) == score


def test_dpkg_status_keeps_installed_packages_and_their_sources() -> None:
    status = (
        "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1\n\n"
        "Package: zlib1g\nStatus: install ok installed\nSource: zlib (1:1.2.13.dfsg-1)\n"
        "Version: 1:1.2.13.dfsg-1+b1\nDescription: x\n continued\n\n"
        "Package: tar\nStatus: deinstall ok config-files\nVersion: 1.34\n"
    )
    assert parse_dpkg_status(status) == [
        Package("libssl3", "3.0.11-1", "openssl", "3.0.11-1"),
        Package("zlib1g", "1:1.2.13.dfsg-1+b1", "zlib", "1:1.2.13.dfsg-1"),
    ]


def test_apk_database_names_origins() -> None:
    installed = "P:libcrypto3\nV:3.1.4-r5\no:openssl\n\nP:busybox\nV:1.36.1-r9\n"
    assert parse_apk_installed(installed) == [
        Package("libcrypto3", "3.1.4-r5", "openssl", "3.1.4-r5"),
        Package("busybox", "1.36.1-r9", "busybox", "1.36.1-r9"),
    ]


def test_distributions_from_os_release() -> None:
    def dist(text: str, manager: str) -> Distribution | None:
        return distribution(parse_os_release(text), manager)

    assert dist('ID=debian\nVERSION_ID="12"\n', "dpkg") == Distribution("Debian", "12")
    assert dist('ID=ubuntu\nVERSION_ID="22.04"\n', "dpkg") == Distribution("Ubuntu", "22.04")
    assert dist("ID=alpine\nVERSION_ID=3.19.1\n", "apk") == Distribution("Alpine", "v3.19")
    assert dist("ID=debian\n", "dpkg") is None  # sid: no release to match advisories to
    assert dist('ID=fedora\nVERSION_ID="39"\n', "dpkg") is None
    assert dist("ID=alpine\nVERSION_ID=3.19.1\n", "dpkg") is None


def test_distroless_status_d_and_unsupported_file_systems() -> None:
    files = {
        "etc/os-release": b'ID=debian\nVERSION_ID="12"\n',
        "var/lib/dpkg/status.d/base": b"Package: base-files\nVersion: 12.4\n",
    }
    found = inventory(files)
    assert found is not None and found.packages == (
        Package("base-files", "12.4", "base-files", "12.4"),
    )
    assert inventory({"etc/os-release": b"ID=debian\nVERSION_ID=12\n"}) is None
    assert inventory({"var/lib/dpkg/status": b""}) is None  # no os-release


def test_osv_ranges_releases_and_severities() -> None:
    record = parse_record(
        {
            "id": "UBUNTU-CVE-2099-1",
            "upstream": ["CVE-2099-1"],
            "severity": [{"type": "Ubuntu", "score": "high"}],
            "affected": [
                {
                    "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl"},
                    "ranges": [
                        {
                            "type": "ECOSYSTEM",
                            "events": [
                                {"introduced": "3.0.0"},
                                {"last_affected": "3.0.2-0ubuntu1.10"},
                            ],
                        }
                    ],
                },
                {"package": {"ecosystem": "Ubuntu:Pro:22.04:LTS", "name": "openssl"}},
                {"package": {"ecosystem": "npm", "name": "openssl"}},
            ],
        }
    )
    assert (record.name, record.severity, len(record.affected)) == ("CVE-2099-1", "HIGH", 1)
    jammy = Distribution("Ubuntu", "22.04")
    [entry] = record.affected

    def at(version: str, dist: Distribution = jammy) -> bool:
        return affects(entry, dist, Package("libssl3", version, "openssl", version))

    assert at("3.0.2-0ubuntu1.10") and at("3.0.0")
    assert not at("3.0.2-0ubuntu1.11") and not at("2.9")
    assert not at("3.0.1", Distribution("Ubuntu", "24.04"))
    listed = parse_record(
        {
            "id": "GHSA-x",
            "aliases": ["CVE-2099-2"],
            "database_specific": {"severity": "MODERATE"},
            "affected": [
                {"package": {"ecosystem": "Alpine", "name": "zlib"}, "versions": ["1.0-r0"]}
            ],
        }
    )
    pkg = Package("zlib", "1.0-r0", "zlib", "1.0-r0")
    assert match([listed], Distribution("Alpine", "v3.18"), [pkg])[0].severity == "MEDIUM"
    assert match([listed], Distribution("Alpine", "v3.18"), [pkg])[0].name == "CVE-2099-2"


def test_layers_apply_with_whiteouts_and_compressions() -> None:
    files: dict[str, bytes] = {}
    for _media_type, data in debian_layers():
        apply_layer(files, io.BytesIO(data))
    assert set(files) == {"usr/lib/os-release", "var/lib/dpkg/status"}  # symlink not kept
    assert b"glibc" in files["var/lib/dpkg/status"]
    alpine = read_files(lambda d=data: io.BytesIO(d) for _m, data in alpine_layers())
    assert b"musl" not in alpine["lib/apk/db/installed"]
    # a later layer's directory or symlink at a wanted path hides the file beneath
    hidden = {"etc/os-release": b"ID=debian"}
    apply_layer(hidden, io.BytesIO(zstd_layer([("etc/os-release", None, "x")])))
    assert hidden == {}
    removed = {"lib/apk/db/installed": b"P:x"}
    apply_layer(removed, io.BytesIO(gzip_layer([("lib/.wh.apk", "", "")])))
    assert removed == {}
    with pytest.raises(LayerUnreadable):
        apply_layer({}, io.BytesIO(b"\x1f\x8b not really gzip"))
    assert tar_layer([]) != b""


def test_the_test_database_loads_and_skips_what_is_not_a_record(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "openecr.scanning")
    db = VulnerabilityDatabase(DATABASE)
    snapshot = db.snapshot()
    assert (snapshot.records, snapshot.skipped) == (12, 1)
    assert "not-a-record.json" in caplog.text
    assert db.snapshot() is snapshot  # unchanged tree: not read again
    assert ("Debian", "openssl") in snapshot.index and ("Alpine", "busybox") in snapshot.index


def test_advisories_covering_reported_cves_and_withdrawn_records_add_nothing() -> None:
    def record(ident: str, upstream: list[str], **extra: object) -> dict[str, object]:
        return {
            "id": ident,
            "upstream": upstream,
            "affected": [
                {
                    "package": {"ecosystem": "Debian:12", "name": "openssl"},
                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                }
            ],
            **extra,
        }

    records = [
        parse_record(record("DSA-9999-1", ["CVE-2099-1", "CVE-2099-2"])),
        parse_record(record("DEBIAN-CVE-2099-1", ["CVE-2099-1"])),
        parse_record(record("DEBIAN-CVE-2099-2", ["CVE-2099-2"])),
        parse_record(record("DSA-9998-1", ["CVE-2099-1", "CVE-2099-3"])),
        parse_record(record("DEBIAN-CVE-2099-4", ["CVE-2099-4"], withdrawn="2099-01-01T00:00:00Z")),
    ]
    pkg = Package("libssl3", "3.0.11-1", "openssl", "3.0.11-1")
    names = [f.name for f in match(records, Distribution("Debian", "12"), [pkg])]
    # the DSA naming CVE-2099-3, which no other record reports, stays
    assert names == ["CVE-2099-1", "CVE-2099-2", "DSA-9998-1"]
