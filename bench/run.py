"""``python -m bench.run``: start the servers, load the same images into each, measure every
scenario interleaved across servers, and write ``results.md``, ``results.json`` and
``results.png`` (see ``--help``; ``make bench`` installs what it needs and runs it)."""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import cluster, report, targets
from bench.common import CACHE, RESULTS, ROOT, Settings, pinned_cpus
from bench.context import Context
from bench.scenarios import batch, blobs, manifests, rss, scale, scaleout, skopeo, writes
from bench.servers import ALL, DEFAULT, missing_tools

SCENARIOS: dict[str, ModuleType] = {
    "batch": batch,
    "writes": writes,
    "scale": scale,
    "manifests": manifests,
    "blobs": blobs,
    "skopeo": skopeo,
    "scaleout": scaleout,
    "rss": rss,
}
TOOLS_PYTHON = CACHE / "tools" / "bin" / "python"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smallest sizes, 1 s runs, 1 repetition (smoke)"
    )
    parser.add_argument(
        "--servers",
        help="comma-separated, from "
        + ",".join(ALL)
        + " (default: all but baseline; openecr with --quick)",
    )
    parser.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated subset, in order"
    )
    parser.add_argument("--reps", type=int, help="repetitions (default 3; 1 with --quick)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--keep", action="store_true", help="keep the servers' data and logs")
    return parser.parse_args(argv)


def _output(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "?"


def machine() -> dict[str, Any]:
    model = "?"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as info:
        total_kib = next(int(line.split()[1]) for line in info if line.startswith("MemTotal"))
    pretty = platform.platform()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                pretty = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": total_kib / (1 << 20),
        "os": f"{pretty}, Linux {platform.release()}",
    }


def _venv_version(venv: str, package: str) -> str:
    python = CACHE / venv / "bin" / "python"
    if not python.exists():
        return "not installed"
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return _output([str(python), "-c", code])


def versions(servers: list[str]) -> dict[str, str]:
    found = {
        "openecr": _output(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
        "python": platform.python_version(),
    }
    if "moto" in servers:
        found["moto"] = _venv_version("moto", "moto")
    if "ministack" in servers:
        found["ministack"] = _venv_version("ministack", "ministack")
    if "distribution" in servers:
        found["distribution"] = _output(["docker-registry", "--version"]).split()[-1]
    if "cluster" in servers:
        found["haproxy"] = _output(["haproxy", "-v"]).split()[2]
        postgres = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres")) or ["postgres"]
        found["postgresql"] = _output([postgres[-1], "--version"]).split()[2]
        weed = cluster.weed() or str(Path(sys.executable).parent / "weed")
        found["seaweedfs"] = _output([weed, "version"]).split()[2]
    found["wrk"] = " ".join(_output(["wrk", "-v"]).split()[:2][1:])
    found["skopeo"] = _output(["skopeo", "--version"]).split()[-1]
    return found


def chart(raw: Path, png: Path) -> str | None:
    """Draw the chart with the bench tools' matplotlib; returns why not, if it could not."""
    python = TOOLS_PYTHON if TOOLS_PYTHON.exists() else Path(sys.executable)
    done = subprocess.run(
        [str(python), "-m", "bench.chart", str(raw), str(png), ",".join(report.SERVER_ORDER)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        return done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "chart failed"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings.quick() if args.quick else Settings.full()
    if args.reps:
        settings = replace(settings, reps=args.reps)
    if args.duration:
        settings = replace(settings, duration=args.duration)
    default_servers = "openecr" if args.quick else ",".join(DEFAULT)
    names = tuple(n for n in (args.servers or default_servers).split(",") if n)
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = [n for n in names if n not in ALL] + [s for s in chosen if s not in SCENARIOS]
    if unknown:
        print(f"unknown server or scenario: {', '.join(unknown)}", file=sys.stderr)
        return 2
    missing = missing_tools(names)
    if missing:
        print(f"missing {', '.join(missing)}: run `make bench` to install", file=sys.stderr)
        return 2

    cpus = pinned_cpus()
    workdir = Path(tempfile.mkdtemp(prefix="openecr-bench-"))
    ctx = Context(settings, cpus, workdir, names)
    started_at = datetime.datetime.now(datetime.UTC)
    ctx.log(f"{settings.mode} mode, servers {', '.join(names)}, CPUs {cpus}, work in {workdir}")
    for scenario in chosen:  # the table's rows, in order, before any result (or failure)
        members = [n for n in SCENARIOS[scenario].SERVERS if n in names]
        if members:
            for key in SCENARIOS[scenario].keys(ctx):
                ctx.results.rows.setdefault(key, {})
    try:
        wanted = {n for s in chosen if s != "rss" for n in SCENARIOS[s].SERVERS} & set(names)
        for name in names:
            if name in wanted:
                ctx.servers[name] = ALL[name](workdir, cpus).start()
                ctx.log(f"{name} on {ctx.servers[name].endpoint} (PID {ctx.servers[name].pid})")
        for scenario in chosen:
            module = SCENARIOS[scenario]
            members = [n for n in module.SERVERS if n in names]
            if scenario == "rss":
                for server in list(ctx.servers.values()):
                    server.stop()
                ctx.servers.clear()
                ctx.log("rss: fresh servers, one at a time")
                rss.run(ctx, members)
                continue
            running = ctx.running(members)
            for name in set(members) - {s.name for s in running}:
                for key in module.keys(ctx):
                    ctx.results.fail(key, name, "the server had died")
            ctx.log(f"{scenario}: {', '.join(s.name for s in running)}")
            if hasattr(module, "prepare"):
                running = module.prepare(ctx, running)
            module.run(ctx, running)
            for server in running:
                if not server.alive():
                    ctx.log(f"{server.name} died during {scenario}:\n{server.tail()}")
                    del ctx.servers[server.name]
    finally:
        for server in ctx.servers.values():
            server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    duration = time.monotonic() - ctx.started
    meta: dict[str, Any] = {
        "mode": settings.mode,
        "started": started_at.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round(duration, 1),
        "command": os.environ.get("BENCH_COMMAND")
        or shlex.join(["python", "-m", "bench.run", *(argv or sys.argv[1:])]),
        "machine": machine(),
        "pinned_cpus": ",".join(map(str, cpus)),
        "versions": versions(list(names)),
        "reps": settings.reps,
        "duration": settings.duration,
        "settings": {k: v for k, v in vars(settings).items() if k != "cpus"},
        "servers": list(names),
        "scenarios": chosen,
    }
    table, raw = report.write(ctx.results, meta, args.out, targets.markdown(ctx.results))
    print(table.read_text())
    if not args.no_chart:
        why = chart(raw, args.out / "results.png")
        print(f"chart: {why}" if why else f"chart: {args.out / 'results.png'}")
    print(f"results: {table} and {raw} ({duration / 60:.1f} minutes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
