"""How the benchmark judges "no slower": a row may trail by as much as this build trails its
own twin (the same build and options in another process) somewhere in the same run, and no
more; without a twin, not at all."""

from __future__ import annotations

from bench.report import Key, Results
from bench.targets import Medians, _baseline_rows, _pull_times

GET = Key("/v2 manifest", "GET by tag, 16 connections", "req/s", "higher")
ONE_ID = Key("BatchGetImage", "1 id, repo of 100", "calls/s", "higher")


def results(rows: dict[Key, dict[str, float]]) -> Medians:
    found = Results()
    for key, values in rows.items():
        for server, value in values.items():
            found.add(key, server, value)
    return Medians(found)


def test_within_the_twins_difference_is_no_slower() -> None:
    m = results(
        {
            GET: {"openecr": 970, "no-pull-times": 1000, "openecr-twin": 1000},
            ONE_ID: {"openecr": 1000, "no-pull-times": 990, "openecr-twin": 960},
        }
    )
    outcome = _pull_times(m)
    assert outcome is not None and outcome.met
    assert "lowest 0.97x" in outcome.measured and "twin within 4.2%" in outcome.measured


def test_beyond_the_twins_difference_is_slower() -> None:
    m = results(
        {
            GET: {"openecr": 950, "no-pull-times": 1000, "openecr-twin": 990},
            ONE_ID: {"openecr": 1000, "no-pull-times": 990, "openecr-twin": 1020},
        }
    )
    outcome = _pull_times(m)
    assert outcome is not None and not outcome.met


def test_without_a_twin_strictly_no_slower() -> None:
    m = results({GET: {"openecr": 999, "baseline": 1000}})
    outcome = _baseline_rows(m)
    assert outcome is not None and not outcome.met and "twin" not in outcome.measured
    assert _pull_times(m) is None  # no-pull-times not measured: no verdict
