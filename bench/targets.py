"""The project's performance targets (issue 16, and issue 10's pull-time line) checked against
one run's medians: a table of target, what this run measured, and met / missed (blank when the
run did not measure it, for example a subset of servers or scenarios)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.common import median
from bench.report import Key, Results

ONE, BOTH, OFF, TWIN = "openecr", "openecr-2", "no-pull-times", "openecr-twin"
OFF_TWIN = "no-pull-times-twin"


@dataclass(frozen=True)
class Outcome:
    measured: str
    met: bool


Check = Callable[["Medians"], Outcome | None]


class Medians:
    """Median of each (row, server) of a run; rows are found by scenario, case prefix and
    metric (the case's sizes change with the run's mode)."""

    def __init__(self, results: Results) -> None:
        self.results = results

    def keys(self, scenario: str, case: str, metric: str) -> list[Key]:
        return [
            key
            for key in self.results.rows
            if key.scenario == scenario and key.case.startswith(case) and key.metric == metric
        ]

    def value(self, key: Key, server: str) -> float | None:
        cell = self.results.rows.get(key, {}).get(server)
        if cell is None or cell.error is not None or not cell.runs:
            return None
        return median(cell.runs)

    def one(self, scenario: str, case: str, metric: str, server: str) -> float | None:
        found = self.keys(scenario, case, metric)
        return self.value(found[0], server) if found else None

    def ratio(self, key: Key, server: str, other: str) -> float | None:
        """How many times better ``server`` is than ``other`` on ``key``."""
        a, b = self.value(key, server), self.value(key, other)
        if a is None or b is None or a <= 0 or b <= 0:
            return None
        return a / b if key.better == "higher" else b / a


def _at_least(value: float | None, floor: float, text: str) -> Outcome | None:
    return None if value is None else Outcome(text.format(value), value >= floor)


def _ratios(
    m: Medians, keys: Iterable[Key], server: str, other: str, floor: float
) -> Outcome | None:
    """Every row's ratio of ``server`` over ``other`` at least ``floor``; shows the lowest."""
    return _lowest([(key, m.ratio(key, server, other)) for key in keys], floor)


def _lowest(ratios: list[tuple[Key, float | None]], floor: float, note: str = "") -> Outcome | None:
    """Met when every measured ratio is at least ``floor``; shows the lowest (and ``note``)."""
    found = [(key, r) for key, r in ratios if r is not None]
    if not found:
        return None
    key, worst = min(found, key=lambda pair: pair[1])
    return Outcome(
        f"lowest {worst:.2f}x ({key.scenario}: {key.case}, {key.metric}) of {len(found)} rows"
        + note,
        worst >= floor,
    )


def _skopeo_total(m: Medians, server: str) -> float | None:
    push = m.one("skopeo", "push", "s", server)
    pull = m.one("skopeo", "pull", "s", server)
    return None if push is None or pull is None else push + pull


def _skopeo(m: Medians) -> Outcome | None:
    mine, theirs = _skopeo_total(m, ONE), _skopeo_total(m, "distribution")
    if mine is None or theirs is None:
        return None
    return Outcome(f"{mine / theirs:.2f}x distribution's time", mine / theirs <= 0.8)


def _skopeo_each(m: Medians) -> Outcome | None:
    times = []
    for step in ("push", "pull"):
        mine = m.one("skopeo", step, "s", ONE)
        theirs = m.one("skopeo", step, "s", "distribution")
        if mine is None or theirs is None:
            return None
        times.append((step, mine / theirs))
    return Outcome(
        ", ".join(f"{step} {t:.2f}x" for step, t in times), all(t <= 0.9 for _, t in times)
    )


def _batch_100(m: Medians) -> Outcome | None:
    rows = m.keys("BatchGetImage", "100 ids", "calls/s")
    return _ratios(m, rows, ONE, "ministack", 1.5)


def _batch_100_p99(m: Medians) -> Outcome | None:
    values = [
        (k.case, v)
        for k in m.keys("BatchGetImage", "100 ids", "p99 ms")
        if (v := m.value(k, ONE)) is not None
    ]
    if not values:
        return None
    return Outcome(
        ", ".join(f"{v:.1f} ms ({case})" for case, v in values), all(v < 25 for _, v in values)
    )


def _read_rows(m: Medians) -> list[Key]:
    return [
        *m.keys("BatchGetImage", "", "calls/s"),
        *m.keys("/v2 manifest", "", "req/s"),
        *m.keys("/v2 blob GET", "", "MB/s"),
        *m.keys("skopeo", "pull", "s"),
    ]


def _pushes_not_slower(m: Medians) -> Outcome | None:
    rows = [*m.keys("skopeo", "push", "s"), *m.keys("PutImage", "", "images/s")]
    return _ratios(m, rows, BOTH, ONE, 1.0)


def _rss(server: str, ceiling: float) -> Check:
    def check(m: Medians) -> Outcome | None:
        value = m.one("peak RSS", "4 clients", "MB", server)
        return None if value is None else Outcome(f"{value:,.0f} MB", value < ceiling)

    return check


# each server measured by a second process of the same build and options, when that ran
TWINS = {ONE: TWIN, OFF: OFF_TWIN}


def _noise(m: Medians, keys: Iterable[Key]) -> float | None:
    """The run's noise on ``keys``: the largest relative difference between a server and its
    twin (the same build and options, another process) on any of them; None without a twin."""
    gaps = [
        abs(1 - r)
        for key in keys
        for server, twin in TWINS.items()
        if (r := m.ratio(key, server, twin)) is not None
    ]
    return max(gaps) if gaps else None


def _pooled(m: Medians, key: Key, server: str) -> float | None:
    """``server``'s value on ``key``: the geometric mean of its two processes when its twin
    ran too."""
    value = m.value(key, server)
    twin = m.value(key, TWINS[server]) if server in TWINS else None
    if value is None or value <= 0 or twin is None or twin <= 0:
        return value
    return float((value * twin) ** 0.5)


def _pooled_ratio(m: Medians, key: Key, other: str) -> float | None:
    """How many times better this build is than ``other`` on ``key``, each side's value being
    that of its two processes when both ran (:func:`_pooled`)."""
    mine, theirs = _pooled(m, key, ONE), _pooled(m, key, other)
    if mine is None or theirs is None or mine <= 0 or theirs <= 0:
        return None
    return mine / theirs if key.better == "higher" else theirs / mine


def _no_slower(m: Medians, keys: list[Key], other: str) -> Outcome | None:
    """Every row of this build at least ``other``'s, less the run's noise (:func:`_noise`): a
    difference two processes of the same build also show in the same run is no difference.
    With twins, each side's value is that of both its processes (:func:`_pooled_ratio`);
    without one, strictly at least."""
    ratios = [(key, _pooled_ratio(m, key, other)) for key in keys]
    noise = _noise(m, keys)
    if noise is None:
        return _lowest(ratios, 1.0)
    return _lowest(ratios, 1.0 - noise, f"; twin processes differ by up to {noise:.1%}")


def _small_reads(m: Medians) -> list[Key]:
    """The throughput rows of BatchGetImage and /v2 manifest reads."""
    return [*m.keys("BatchGetImage", "", "calls/s"), *m.keys("/v2 manifest", "", "req/s")]


def _pull_times(m: Medians) -> Outcome | None:
    return _no_slower(m, _small_reads(m), OFF)


def _baseline_rows(m: Medians) -> Outcome | None:
    return _no_slower(m, _small_reads(m), "baseline")


TARGETS: list[tuple[str, Check]] = [
    (
        "PutImage, 8 clients: at least 2,000 images/s in one process",
        lambda m: _at_least(m.one("PutImage", "", "images/s", ONE), 2000, "{:,.0f} images/s"),
    ),
    (
        "PutImage, 8 clients: ahead of ministack",
        lambda m: _ratios(m, m.keys("PutImage", "", "images/s"), ONE, "ministack", 1.0),
    ),
    (
        "loading the 100,000-image repository in under 2 minutes",
        lambda m: (
            None
            if (v := m.one("BatchGetImage scale", "load 100,000", "s", ONE)) is None
            else Outcome(f"{v:,.0f} s", v < 120)
        ),
    ),
    ("skopeo push + pull: at most 0.8x distribution's time", _skopeo),
    ("skopeo push and pull: each at most 0.9x distribution's time", _skopeo_each),
    (
        "blob GET 25 MiB, 1 and 4 parallel: at least 1.3x distribution",
        lambda m: _ratios(m, m.keys("/v2 blob GET", "", "MB/s"), ONE, "distribution", 1.3),
    ),
    ("BatchGetImage 100 ids: at least 1.5x ministack (repos of 100 and 10,000)", _batch_100),
    ("BatchGetImage 100 ids: p99 under 25 ms at 8 connections", _batch_100_p99),
    (
        "BatchGetImage 1 id: at least 10,000 calls/s",
        lambda m: _at_least(
            m.one("BatchGetImage", "1 id, repo of 100", "calls/s", ONE), 10_000, "{:,.0f} calls/s"
        ),
    ),
    (
        f"both cores ({BOTH}): every read row at least 1.6x one process",
        lambda m: _ratios(m, _read_rows(m), BOTH, ONE, 1.6),
    ),
    (f"both cores ({BOTH}): pushes not slower than one process", _pushes_not_slower),
    ("peak RSS: one process under 150 MB", _rss(ONE, 150)),
    (f"peak RSS: {BOTH} under 250 MB in all", _rss(BOTH, 250)),
    (
        "pull-time recording: BatchGetImage and manifest GET/HEAD no slower than with it off"
        " (beyond the twins' difference)",
        _pull_times,
    ),
    (
        "BatchGetImage and manifest GET/HEAD no slower than the baseline build"
        " (beyond the twins' difference)",
        _baseline_rows,
    ),
]


def markdown(results: Results) -> str:
    """The targets table ('' when the run measured none of them)."""
    m = Medians(results)
    lines = []
    for name, check in TARGETS:
        outcome = check(m)
        if outcome is not None:
            lines.append(f"| {name} | {outcome.measured} | {'met' if outcome.met else 'missed'} |")
    if not lines:
        return ""
    return "\n".join(["| target | this run | |", "|---|---|---|", *lines])
