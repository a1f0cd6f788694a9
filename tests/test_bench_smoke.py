"""The benchmark harness's smallest run, so ``make bench`` cannot rot: openecr, distribution
(the cheapest competitor to start) and the scale-out cluster (PostgreSQL, SeaweedFS, replicas
and haproxy), every scenario, 1 s per load run. Benchmarks are not
tests: nothing here looks at a number's size, only that every number is there and the table
and results file are well-formed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # the benchmark harness starts servers and load tools

SERVERS = ("openecr", "distribution", "cluster")
# (scenario, servers measured in it, rows it fills)
SCENARIOS = [
    ("BatchGetImage", {"openecr"}, 6),
    ("PutImage", {"openecr"}, 3),
    ("BatchGetImage scale", {"openecr"}, 8),
    ("/v2 manifest", {"openecr", "distribution"}, 2),
    ("/v2 blob GET", {"openecr", "distribution"}, 2),
    ("skopeo", {"openecr", "distribution"}, 2),
    ("scale-out", {"openecr", "cluster"}, 5),
    ("peak RSS", {"openecr"}, 2),
]
TOOLS = ("wrk", "hey", "skopeo", "taskset", "docker-registry", "haproxy")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: `make test` installs them")
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "bench.run", "--quick", "--no-chart", "--out", str(out)]
    done = subprocess.run(
        [*command, "--servers", ",".join(SERVERS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
    )
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert "results.md" in done.stdout
    return out


@pytest.mark.parametrize(("scenario", "servers", "rows"), SCENARIOS)
def test_every_scenario_measured_every_server(
    quick_run: Path, scenario: str, servers: set[str], rows: int
) -> None:
    results = json.loads((quick_run / "results.json").read_text())
    found = [row for row in results["rows"] if row["scenario"] == scenario]
    assert len(found) == rows
    for row in found:
        assert set(row["servers"]) == servers, row
        for server, cell in row["servers"].items():
            assert "error" not in cell, (server, row)
            assert len(cell["runs"]) == 1 and cell["median"] > 0, (server, row)
        assert row["better"] in ("higher", "lower")
        others = servers - {"openecr"}
        assert set(row["ratios"]) == others
        assert all(ratio > 0 for ratio in row["ratios"].values())


def test_scale_ratio_row_is_the_quotient_of_the_two_p50_rows(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text())
    rows = {
        (row["case"], row["metric"]): row["servers"]["openecr"]["median"]
        for row in results["rows"]
        if row["scenario"] == "BatchGetImage scale"
    }
    small = rows[("1 id, repo of 100", "p50 ms")]
    big = rows[("1 id, repo of 1,000", "p50 ms")]
    assert rows[("p50 latency, repo of 1,000 / repo of 100", "ratio")] == pytest.approx(big / small)


def test_results_file_records_machine_versions_and_raw_runs(quick_run: Path) -> None:
    results = json.loads((quick_run / "results.json").read_text())
    meta = results["meta"]
    assert meta["mode"] == "quick" and meta["reps"] == 1
    assert meta["servers"] == list(SERVERS)
    assert meta["machine"]["cpus"] >= 1 and meta["machine"]["cpu_model"]
    assert {"openecr", "distribution", "wrk", "skopeo"} <= set(meta["versions"])
    raw_scenarios = {entry["scenario"] for entry in results["raw"]}
    assert raw_scenarios == {scenario for scenario, _, _ in SCENARIOS}


def test_markdown_table_is_well_formed(quick_run: Path) -> None:
    text = (quick_run / "results.md").read_text()
    results = text.partition("Targets (")[0]
    table = [line for line in results.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header == [
        "benchmark",
        "metric",
        "runs",
        "openecr",
        "distribution",
        "cluster",
        "vs distribution",
        "vs cluster",
    ]
    assert set(table[1].replace("|", "").replace("-", "").replace(":", "")) == set()
    rows = table[2:]
    assert len(rows) == sum(count for _, _, count in SCENARIOS)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == len(header), row
        assert cells[2] == "1" and cells[3] not in ("", "error"), row
    assert "Errors:" not in text
    assert "median of the runs" in text


def test_targets_table_judges_what_the_run_measured(quick_run: Path) -> None:
    """Below the results, each target the run measured with its value and met or missed."""
    text = (quick_run / "results.md").read_text()
    targets = text.partition("Targets (")[2]
    rows = [line for line in targets.splitlines() if line.startswith("| ")][1:]
    names = [row.split("|")[1].strip() for row in rows]
    assert "skopeo push + pull: at most 0.8x distribution's time" in names
    assert "PutImage, 8 clients: at least 2,000 images/s in one process" in names
    assert "peak RSS: one process under 150 MB" in names
    assert not any("ministack" in name or "openecr-2" in name for name in names)  # not run
    for row in rows:
        assert row.rstrip(" |").endswith(("met", "missed")), row
