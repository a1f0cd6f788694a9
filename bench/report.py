"""Measurements, their medians and ratios: the markdown table and the raw results file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import median
from bench.servers import ALL

SERVER_ORDER = tuple(ALL)  # the table's columns, in bench.servers' order
SUBJECT = "openecr"


@dataclass(frozen=True)
class Key:
    scenario: str
    case: str
    metric: str
    better: str  # "higher" or "lower"


@dataclass
class Cell:
    runs: list[float] = field(default_factory=list)
    error: str | None = None


@dataclass
class Results:
    rows: dict[Key, dict[str, Cell]] = field(default_factory=dict)
    raw: list[dict[str, Any]] = field(default_factory=list)

    def cell(self, key: Key, server: str) -> Cell:
        return self.rows.setdefault(key, {}).setdefault(server, Cell())

    def add(self, key: Key, server: str, value: float) -> None:
        self.cell(key, server).runs.append(value)

    def fail(self, key: Key, server: str, error: str) -> None:
        cell = self.cell(key, server)
        if cell.error is None:
            cell.error = error.strip().splitlines()[0][:200] if error.strip() else "error"

    def failed(self, key: Key, server: str) -> bool:
        return self.cell(key, server).error is not None

    def record(self, **fields: Any) -> None:
        self.raw.append(fields)

    def servers(self) -> list[str]:
        seen = {server for cells in self.rows.values() for server in cells}
        return [s for s in SERVER_ORDER if s in seen] + sorted(seen - set(SERVER_ORDER))

    def to_json(self) -> list[dict[str, Any]]:
        rows = []
        for key, cells in self.rows.items():
            servers: dict[str, Any] = {}
            for server, cell in cells.items():
                entry: dict[str, Any] = {"runs": cell.runs}
                if cell.runs:
                    entry["median"] = median(cell.runs)
                if cell.error is not None:
                    entry["error"] = cell.error
                servers[server] = entry
            ratios = {s: r for s in cells if (r := ratio(key, cells, s)) is not None}
            rows.append(
                {
                    "scenario": key.scenario,
                    "case": key.case,
                    "metric": key.metric,
                    "better": key.better,
                    "servers": servers,
                    "ratios": ratios,
                }
            )
        return rows


def ratio(key: Key, cells: dict[str, Cell], other: str) -> float | None:
    """How many times better openecr is than ``other`` (> 1: openecr better)."""
    if other == SUBJECT:
        return None
    mine, theirs = cells.get(SUBJECT), cells.get(other)
    if mine is None or theirs is None or not mine.runs or not theirs.runs:
        return None
    if mine.error is not None or theirs.error is not None:
        return None
    a, b = median(mine.runs), median(theirs.runs)
    if a <= 0 or b <= 0:
        return None
    return a / b if key.better == "higher" else b / a


def fmt(value: float, metric: str) -> str:
    if metric == "ratio":
        return f"{value:,.2f}"
    if metric.endswith("ms") or metric.endswith(" s"):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def markdown(results: Results) -> str:
    servers = results.servers()
    others = [s for s in servers if s != SUBJECT]
    head = ["benchmark", "metric", "runs", *servers, *(f"vs {s}" for s in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 3 + "---:|" * (len(head) - 3)]
    for key, cells in results.rows.items():
        runs = max((len(c.runs) for c in cells.values()), default=0)
        arrow = "↑" if key.better == "higher" else "↓"
        row = [f"{key.scenario}: {key.case}", f"{key.metric} {arrow}", str(runs)]
        for server in servers:
            cell = cells.get(server)
            if cell is None:
                row.append("")
            elif cell.error is not None:
                row.append("error")
            else:
                row.append(fmt(median(cell.runs), key.metric) if cell.runs else "")
        for other in others:
            value = ratio(key, cells, other)
            row.append("" if value is None else f"{value:.2f}x")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def errors(results: Results) -> list[str]:
    return [
        f"{server}, {key.scenario}: {key.case} ({key.metric}): {cell.error}"
        for key, cells in results.rows.items()
        for server, cell in cells.items()
        if cell.error is not None
    ]


def document(results: Results, meta: dict[str, Any], targets: str = "") -> str:
    machine = meta["machine"]
    parts = [
        f"# openecr benchmark ({meta['mode']} mode, {meta['started']})",
        "",
        f"Machine: {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']:.1f} GiB RAM, {machine['os']}; servers and load generators "
        f"pinned to CPUs {meta['pinned_cpus']}. Command: `{meta['command']}` "
        f"({meta['duration_s'] / 60:.1f} minutes).",
        "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        "",
        markdown(results),
        "",
        f"Each number is the median of the runs shown ({meta['reps']} interleaved repetitions, "
        f"{meta['duration']:g} s per load-generator run). ↑ higher is better, ↓ lower is "
        "better; `vs X` is how many times better openecr is than X (above 1: openecr ahead).",
    ]
    if targets:
        parts += [
            "",
            "Targets (issue 16, and issue 10's pull-time line), from this run's medians:",
            "",
            targets,
        ]
    failures = errors(results)
    if failures:
        parts += ["", "Errors:", "", *(f"- {line}" for line in failures)]
    return "\n".join(parts) + "\n"


def write(
    results: Results, meta: dict[str, Any], out: Path, targets: str = ""
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    table = out / "results.md"
    table.write_text(document(results, meta, targets))
    raw = out / "results.json"
    raw.write_text(
        json.dumps({"meta": meta, "rows": results.to_json(), "raw": results.raw}, indent=2) + "\n"
    )
    return table, raw
