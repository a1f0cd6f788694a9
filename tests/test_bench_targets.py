"""How the benchmark judges "no slower": this build's rate is the geometric mean of its two
processes (``openecr`` and ``openecr-twin``), and ``no-pull-times``'s of its two when its twin
ran; a row may trail by as much as two processes of one server differ somewhere in the same
run, and no more; without a twin, not at all."""

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
    # GET: sqrt(970 * 1000) / 1000 = 0.985; the two processes differ by up to 4.2 % (1 id)
    assert "lowest 0.98x (/v2 manifest" in outcome.measured
    assert "differ by up to 4.2%" in outcome.measured


def test_the_other_side_is_pooled_with_its_twin_too() -> None:
    m = results(
        {
            GET: {
                "openecr": 970,
                "openecr-twin": 990,
                "no-pull-times": 1020,
                "no-pull-times-twin": 980,
            },
        }
    )
    outcome = _pull_times(m)
    # sqrt(970 * 990) / sqrt(1020 * 980) = 0.98; no-pull-times' two differ by 4.1 %
    assert outcome is not None and outcome.met
    assert "lowest 0.98x" in outcome.measured and "differ by up to 4.1%" in outcome.measured


def test_beyond_the_twins_difference_is_slower() -> None:
    m = results(
        {
            # GET: sqrt(930 * 950) / 1000 = 0.94, below 1 - 2.1 %
            GET: {"openecr": 930, "no-pull-times": 1000, "openecr-twin": 950},
            ONE_ID: {"openecr": 1000, "no-pull-times": 990, "openecr-twin": 1010},
        }
    )
    outcome = _pull_times(m)
    assert outcome is not None and not outcome.met


def test_without_a_twin_strictly_no_slower() -> None:
    m = results({GET: {"openecr": 999, "baseline": 1000}})
    outcome = _baseline_rows(m)
    assert outcome is not None and not outcome.met and "twin" not in outcome.measured
    assert outcome.measured.startswith("lowest 1.00x")  # 0.999, shown rounded
    assert _pull_times(m) is None  # no-pull-times not measured: no verdict
