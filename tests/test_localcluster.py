"""`make cluster` (scripts/localcluster.py): PostgreSQL, SeaweedFS, 3 replicas and haproxy on
loopback ports, the commands to use them printed; Ctrl-C, or `make cluster-down` (also after
the starter itself was killed), stops exactly the processes it started, by PID."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import httpx
import pytest

from conftest import ROOT, VENV_BIN, die_with_parent, free_port

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "scripts" / "localcluster.py"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start(state_dir: Path, port: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [
            *(str(VENV_BIN / "python"), str(SCRIPT), "up", "--dir", str(state_dir)),
            *("--port", str(port), "--stats-port", str(free_port())),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        preexec_fn=die_with_parent,
    )
    assert process.stdout is not None
    printed = []
    deadline = time.monotonic() + 180
    for line in process.stdout:  # until the usage is printed
        printed.append(line)
        if line.startswith("Stop:") or time.monotonic() > deadline:
            break
    text = "".join(printed)
    if "Stop:" not in text:  # it failed to start: end it before failing
        process.kill()
        process.wait()
        process.stdout.close()
        pytest.fail(text)
    return process, text


@pytest.mark.parametrize("stop", ["ctrl-c", "cluster-down after kill -9"])
def test_make_cluster_serves_three_replicas_and_stops_what_it_started(
    tmp_path: Path, stop: str
) -> None:
    port = free_port()
    state_dir = tmp_path / "state"
    process, usage = _start(state_dir, port)
    try:
        state = json.loads((state_dir / "cluster.json").read_text())
        names = [p["name"] for p in state["processes"]]
        assert names == [
            "localcluster",
            "postgres",
            "seaweedfs",
            "replica1",
            "replica2",
            "replica3",
            "haproxy",
        ]
        pids = [p["pid"] for p in state["processes"]]
        assert all(_alive(pid) for pid in pids)
        # the printed commands name the load balancer and each replica
        assert f"docker push 127.0.0.1:{port}/demo/app:v1" in usage
        replicas = re.findall(r"replica\d: (http://127.0.0.1:\d+)", usage)
        assert len(replicas) == 3
        ecr = boto3.client(
            "ecr",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="AKIDEXAMPLE",
            aws_secret_access_key="secret",
        )
        ecr.create_repository(repositoryName="demo/app")
        for endpoint in replicas:  # one database: every replica sees the repository
            listed = httpx.get(f"{endpoint}/v2/_catalog").json()["repositories"]
            assert listed == ["demo/app"]
        if stop == "ctrl-c":
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=120) == 0
        else:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            down = subprocess.run(
                [str(VENV_BIN / "python"), str(SCRIPT), "down", "--dir", str(state_dir)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
                check=True,
            )
            assert "stopping" in down.stdout or not any(_alive(pid) for pid in pids[1:])
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [n for n, pid in zip(names, pids, strict=True) if _alive(pid)] == []
        assert not (state_dir / "cluster.json").exists()
        assert all(not Path(path).exists() for path in state["temporary"])
    finally:
        assert process.stdout is not None
        process.stdout.close()
        if process.poll() is None:
            process.kill()
            process.wait()
        subprocess.run(
            [sys.executable, str(SCRIPT), "down", "--dir", str(state_dir)],
            capture_output=True,
            cwd=ROOT,
            check=False,
        )
