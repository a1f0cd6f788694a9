"""wrk, driven by a generated Lua script: a fixed list of pre-rendered requests that each
connection cycles through, and a ``done`` hook that prints the summary as one JSON line."""

from __future__ import annotations

import json
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import MB, BenchError, pinned

# prints the run's summary as one JSON line (%-escaped: scripts are %-templates)
DONE = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH-JSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect": %%d, ' ..
    '"read": %%d, "write": %%d, "status": %%d, "timeout": %%d, "p50_us": %%d, ' ..
    '"p90_us": %%d, "p99_us": %%d, "max_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
"""

SCRIPT = (
    """\
local specs = {
%(specs)s
}
local headers = {
%(headers)s
}
local requests = {}
local position = 0
local threads = 0

setup = function(thread)
  threads = threads + 1
  thread:set("offset", threads * 7)
end

init = function(args)
  for i, spec in ipairs(specs) do
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    requests[i] = wrk.format(spec[1], spec[2], h, spec[3])
  end
  position = (offset or 0) %% #requests
end

request = function()
  position = position + 1
  if position > #requests then position = 1 end
  return requests[position]
end

"""
    + DONE
)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes | None = None


def lua_string(value: str | bytes) -> str:
    text = value.decode() if isinstance(value, bytes) else value
    level = "=" * 4
    if f"]{level}]" in text:
        raise ValueError("a request cannot be quoted as a Lua long string")
    return f"[{level}[{text}]{level}]"


def write_script(path: Path, requests: Sequence[Request], headers: Mapping[str, str]) -> Path:
    specs = ",\n".join(
        "  {{{}, {}, {}}}".format(
            lua_string(r.method),
            lua_string(r.path),
            "nil" if r.body is None else lua_string(r.body),
        )
        for r in requests
    )
    rendered_headers = ",\n".join(
        f"  [ {lua_string(k)} ] = {lua_string(v)}" for k, v in headers.items()
    )
    path.write_text(SCRIPT % {"specs": specs, "headers": rendered_headers})
    return path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    bytes: int
    errors: dict[str, int]
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds

    def raw(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": self.seconds,
            "bytes": self.bytes,
            "errors": self.errors,
            "p50_ms": self.p50_ms,
            "p90_ms": self.p90_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }


def run(
    host: str,
    script: Path,
    *,
    connections: int,
    duration: float,
    cpus: Sequence[int],
    threads: int | None = None,
    min_requests: int = 1,
    max_duration: float = 30.0,
) -> WrkResult:
    """A wrk run of ``duration`` seconds, lengthened (up to ``max_duration``) until at least
    ``min_requests`` requests completed, so that a server slower than the run still gets a
    number (0: accept none, for warm-ups). Raises BenchError on any failed or non-2xx/3xx
    request."""
    while True:
        result = _once(host, script, connections, duration, cpus, threads)
        if result.requests >= min_requests or duration >= max_duration:
            break
        factor = math.ceil(min_requests / max(result.requests, 1))
        duration = min(max_duration, duration * max(factor, 2))
    if result.requests < min_requests:
        raise BenchError(f"only {result.requests} requests completed in {result.seconds:.0f} s")
    return result


def _once(
    host: str,
    script: Path,
    connections: int,
    duration: float,
    cpus: Sequence[int],
    threads: int | None,
) -> WrkResult:
    threads = threads or min(connections, len(cpus))
    command = pinned(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(round(duration), 1)}s",
            "--timeout",
            "60s",
            "-s",
            str(script),
            f"http://{host}/",
        ],
        cpus,
    )
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 120, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH-JSON ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(
            f"wrk printed no summary (exit {done.returncode}): "
            f"{done.stderr.strip()[-300:]} {done.stdout.strip()[-300:]}"
        )
    data = json.loads(line.removeprefix("BENCH-JSON "))
    errors = {k: int(data[k]) for k in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        raise BenchError(f"wrk saw errors {errors} in {data['requests']} requests")
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        bytes=int(data["bytes"]),
        errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )
