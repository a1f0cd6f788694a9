"""What a scenario gets: settings, the running servers, the results, and the interleaving."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import BenchError, Settings
from bench.report import Key, Results
from bench.servers import Server


@dataclass
class Context:
    settings: Settings
    cpus: tuple[int, ...]
    workdir: Path
    selected: tuple[str, ...]  # server names asked for
    servers: dict[str, Server] = field(default_factory=dict)  # the running ones
    results: Results = field(default_factory=Results)
    started: float = field(default_factory=time.monotonic)

    def log(self, message: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)

    def running(self, names: Sequence[str]) -> list[Server]:
        return [self.servers[n] for n in names if n in self.servers]


@dataclass(frozen=True)
class Case:
    """One configuration measured on every server; ``keys`` are the table rows it fills."""

    label: str
    keys: tuple[Key, ...]
    data: Any = None


Measure = Callable[[Case, Server, float, int], dict[Key, float]]


def quiet(server: Server) -> None:
    """Let a server finish what a failed run left queued before the next run starts."""
    with contextlib.suppress(BenchError, OSError):
        if server.alive():
            server.wait_idle()


def interleaved(
    ctx: Context, cases: Sequence[Case], servers: Sequence[Server], measure: Measure
) -> None:
    """Each repetition runs every case on every server before the next repetition starts, in
    a server order rotated per repetition and reversed every other one, so drift (thermal,
    other load) spreads evenly and no server always follows the same one (what a server still
    does after its run, such as writing pull times, would otherwise always land on the same
    neighbour).
    ``measure(case, server, seconds, rep)`` returns a value per row; a failure marks that
    server's rows as errors and the rest goes on. A warm-up run (rep -1, not counted)
    precedes each case's first run."""
    settings = ctx.settings
    if settings.warmup > 0:
        for case in cases:
            for server in servers:
                try:
                    measure(case, server, settings.warmup, -1)
                    server.wait_idle()
                except BenchError as error:
                    ctx.log(f"{server.name} {case.label} warm-up: {error}")
                    quiet(server)
                    for key in case.keys:
                        ctx.results.fail(key, server.name, f"warm-up: {error}")
    for rep in range(settings.reps):
        shift = rep % max(len(servers), 1)
        order = [*servers[shift:], *servers[:shift]]
        if rep % 2:
            order.reverse()
        for case in cases:
            for server in order:
                if any(ctx.results.failed(key, server.name) for key in case.keys):
                    continue
                try:
                    values = measure(case, server, settings.duration, rep)
                    server.wait_idle()
                except BenchError as error:
                    ctx.log(f"{server.name} {case.label}: {error}")
                    quiet(server)
                    for key in case.keys:
                        ctx.results.fail(key, server.name, str(error))
                    continue
                for key, value in values.items():
                    ctx.results.add(key, server.name, value)
                ctx.log(
                    f"rep {rep + 1} {case.label} {server.name}: "
                    + ", ".join(f"{k.metric} {v:,.2f}" for k, v in values.items())
                )
