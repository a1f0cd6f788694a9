"""``python -m bench.chart results.json results.png``: one panel per benchmark row group,
openecr's median beside each competitor's, and the ratio written above (needs matplotlib:
``make bench`` puts it in ``.bench/tools``)."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path
from typing import Any

COLOURS = {
    "openecr": "#1f77b4",
    "moto": "#ff7f0e",
    "ministack": "#2ca02c",
    "distribution": "#9467bd",
}


def draw(results: dict[str, Any], png: Path, order: list[str]) -> None:
    """The chart of ``results`` into ``png``, each row's servers in ``order`` (runs in the bench
    tools' environment, which has matplotlib but not the bench's own dependencies)."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt = importlib.import_module("matplotlib.pyplot")
    rows = [r for r in results["rows"] if any("median" in v for v in r["servers"].values())]
    columns = 4
    lines = max(math.ceil(len(rows) / columns), 1)
    figure, axes = plt.subplots(lines, columns, figsize=(4.2 * columns, 3.0 * lines))
    flat = list(axes.flat) if hasattr(axes, "flat") else [axes]
    for axis, row in zip(flat, rows, strict=False):
        servers = [s for s in order if s in row["servers"]]
        servers += [s for s in row["servers"] if s not in servers]
        values = [row["servers"][s].get("median", 0.0) for s in servers]
        bars = axis.bar(servers, values, color=[COLOURS.get(s, "grey") for s in servers])
        for bar, server in zip(bars, servers, strict=True):
            entry = row["servers"][server]
            value = entry.get("median", 0.0)
            label = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
            label = "error" if "error" in entry else label
            if server in row.get("ratios", {}):
                label += f"\n{row['ratios'][server]:.2f}x"
            axis.annotate(
                label,
                (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                ha="center",
                va="bottom",
                fontsize=7,
            )
        arrow = "higher is better" if row["better"] == "higher" else "lower is better"
        axis.set_title(f"{row['scenario']}\n{row['case']}", fontsize=8)
        axis.set_ylabel(f"{row['metric']} ({arrow})", fontsize=7)
        axis.tick_params(labelsize=7)
        axis.margins(y=0.3)
    for axis in flat[len(rows) :]:
        axis.axis("off")
    meta = results["meta"]
    figure.suptitle(
        f"openecr vs competitors: medians of {meta['reps']} runs; nx = how many times better "
        f"openecr is ({meta['machine']['cpus']} CPUs, {meta['started']})",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(png, dpi=110)


def main(argv: list[str]) -> int:
    raw, png = Path(argv[0]), Path(argv[1])
    draw(json.loads(raw.read_text()), png, argv[2].split(",") if len(argv) > 2 else [])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
