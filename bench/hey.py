"""hey, for what wrk cannot do: HEAD (wrk waits for a body that never comes) and following
redirects (Go's client does, to another host too: blob GETs redirected to S3). It keeps its
connections alive over HTTP/1.1, like wrk; it asks for one URL only."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from bench.common import MB, BenchError, pinned


@dataclass(frozen=True)
class HeyResult:
    requests: int
    seconds: float
    statuses: dict[str, int]
    bytes: int = 0  # response bodies read (of the last response, when redirected)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds


def run(
    url: str,
    *,
    method: str,
    connections: int,
    duration: float,
    cpus: Sequence[int],
    headers: dict[str, str] | None = None,
) -> HeyResult:
    command = ["hey", "-z", f"{max(round(duration), 1)}s", "-c", str(connections), "-m", method]
    command += ["-disable-compression", "-cpus", str(len(cpus))]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    done = subprocess.run(
        pinned([*command, url], cpus),
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=False,
    )
    total = re.search(r"Total:\s+([0-9.]+) secs", done.stdout)
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", done.stdout))
    counts = {status: int(count) for status, count in statuses.items()}
    if done.returncode != 0 or total is None:
        raise BenchError(f"hey printed no summary (exit {done.returncode}): {done.stderr[-300:]}")
    if "Error distribution" in done.stdout or set(counts) - {"200"} or not counts:
        raise BenchError(f"hey saw errors or statuses {counts}: {done.stdout[-300:]}")
    data = re.search(r"Total data:\s+(\d+) bytes", done.stdout)
    size = int(data.group(1)) if data else 0
    return HeyResult(sum(counts.values()), float(total.group(1)), counts, size)
