"""Package version orderings of the ecosystems the scanner knows: dpkg's and apk's.

``dpkg_compare`` follows Debian policy 5.6.12 (``[epoch:]upstream[-revision]``, ``~`` sorting
before everything, even the end of a part), as ``dpkg --compare-versions`` does. ``apk_compare``
follows apk-tools (``1.2.3a_rc1_p2-r4``: numbers, one letter, suffixes ``_alpha`` < ``_beta`` <
``_pre`` < ``_rc`` < none < ``_cvs`` < ``_svn`` < ``_git`` < ``_hg`` < ``_p``, then the
``-r`` revision). Each returns a negative number, zero or a positive number, as ``a`` sorts
before, with or after ``b``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# --- dpkg ------------------------------------------------------------------------------------


def _dpkg_order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha() and c.isascii():
        return ord(c)
    return ord(c) + 256


def _verrevcmp(a: str, b: str) -> int:
    """dpkg's ``verrevcmp``: alternate non-digit runs (by ``_dpkg_order``) and digit runs
    (numerically)."""
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _dpkg_order(a[i]) if i < len(a) else 0
            bc = _dpkg_order(b[j]) if j < len(b) else 0
            if ac != bc:
                return ac - bc
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return first_diff
    return 0


def _dpkg_split(version: str) -> tuple[int, str, str]:
    version = version.strip()
    epoch = 0
    if ":" in version:
        head, _, version = version.partition(":")
        epoch = int(head) if head.isdigit() else 0
    upstream, dash, revision = version.rpartition("-")
    if not dash:
        upstream, revision = version, ""
    return epoch, upstream, revision


def dpkg_compare(a: str, b: str) -> int:
    """Compare two Debian package versions."""
    ea, ua, ra = _dpkg_split(a)
    eb, ub, rb = _dpkg_split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _verrevcmp(ua, ub) or _verrevcmp(ra, rb)


# --- apk -------------------------------------------------------------------------------------

_APK = re.compile(
    r"(?P<nums>[0-9]+(?:\.[0-9]+)*)(?P<letter>[a-z]?)"
    r"(?P<suffixes>(?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*)"
    r"(?:~[0-9a-f]+)?(?:-r(?P<rev>[0-9]+))?"
)
_SUFFIX = re.compile(r"_(alpha|beta|pre|rc|cvs|svn|git|hg|p)([0-9]*)")
_SUFFIX_RANK = {"alpha": 0, "beta": 1, "pre": 2, "rc": 3, "cvs": 5, "svn": 6, "git": 7, "hg": 8}
_SUFFIX_RANK["p"] = 9
_NO_SUFFIX = (4, 0)  # between the pre-release suffixes and the post-release ones

ApkKey = tuple[tuple[int, ...], str, tuple[tuple[int, int], ...], int]


def _apk_key(version: str) -> ApkKey | None:
    match = _APK.fullmatch(version.strip())
    if match is None:
        return None
    nums = tuple(int(n) for n in match["nums"].split("."))
    suffixes = tuple(
        (_SUFFIX_RANK[name], int(number or 0))
        for name, number in _SUFFIX.findall(match["suffixes"])
    )
    return nums, match["letter"], (*suffixes, _NO_SUFFIX), int(match["rev"] or 0)


def apk_compare(a: str, b: str) -> int:
    """Compare two Alpine package versions (versions apk cannot parse compare as text)."""
    ka, kb = _apk_key(a), _apk_key(b)
    if ka is None or kb is None:
        return (a > b) - (a < b)
    return (ka > kb) - (ka < kb)


Comparator = Callable[[str, str], int]
