"""The README, top to bottom: its shell and Python examples run in order, in one bash, in a fresh
directory, against a fresh ``openecr serve`` whose data directory is that directory's
``./.openecr`` (as ``make serve`` starts it), with the docker of the e2e suite.

Blocks fenced as ```` ```sh ```` and ```` ```python ```` run (Python through ``python -``
inside the same shell, so it sees what the shell exported); ```` ```sh no-run ```` blocks (the
commands that start the server or need machine set-up) do not. The README's ports (5000, and
5443 for its TLS example) are replaced by free ones; nothing else is changed.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, VENV_BIN, ProcessServer, free_port
from e2e.conftest import Docker

pytestmark = pytest.mark.slow  # starts openecr serve, docker, skopeo, the aws CLI

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def readme_blocks() -> list[tuple[int, str, str]]:
    """(line, language, body) of every block the walkthrough runs, in order."""
    text = README.read_text()
    found = []
    for match in FENCE.finditer(text):
        language, flags, body = match.group(1), match.group(2).split(), match.group(3)
        if language in ("sh", "python") and "no-run" not in flags:
            found.append((text.count("\n", 0, match.start()) + 1, language, body))
    return found


def walkthrough_script(port: int, tls_port: int) -> str:
    lines = ["set -euxo pipefail"]
    for line, language, body in readme_blocks():
        body = body.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
        body = body.replace("127.0.0.1:5443", f"127.0.0.1:{tls_port}")
        body = body.replace("--port 5443", f"--port {tls_port}")
        lines.append(f": README.md line {line}")
        if language == "python":
            lines.append(f"python - <<'PYTHON'\n{body}PYTHON")
        else:
            lines.append(body)
    return "\n".join(lines) + "\n"


def test_the_readme_blocks_are_found() -> None:
    blocks = readme_blocks()
    languages = [language for _, language, _ in blocks]
    assert languages.count("python") == 1 and languages.count("sh") >= 6
    assert all("make serve" not in body for _, _, body in blocks)  # the test is the server


def test_the_readme_runs_top_to_bottom(docker: Docker, tmp_path: Path) -> None:
    home = tmp_path / "home"
    work = tmp_path / "work"
    home.mkdir()
    work.mkdir()
    server = ProcessServer(work / ".openecr", free_port())
    server.start()
    tls_port = free_port()
    script = walkthrough_script(server.port, tls_port)
    (tmp_path / "walkthrough.sh").write_text(script)
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "OPENECR_", "DOCKER_"))
    }
    env.update(docker.env)
    env["HOME"] = str(home)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    try:
        done = subprocess.run(
            ["bash", str(tmp_path / "walkthrough.sh")],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        metrics = httpx.get(f"{server.endpoint}/metrics").text
    finally:
        server.stop()
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"the README's examples failed:\n{output[-6000:]}"
    assert '{"status":"ready"' in done.stdout
    uri = f"127.0.0.1:{server.port}/demo"
    assert f'"{uri}/cli"' in done.stdout  # aws --query prints JSON strings
    assert f"{uri}/boto3" in done.stdout  # boto3 prints the URI
    assert "localhost:5000/demo/local" in done.stdout  # the local store names no real host
    assert f'"{uri}/local"' in done.stdout  # and the server sees what it wrote
    assert "demo/tls" in done.stdout  # over HTTPS
    assert re.search(r"^sha256:[0-9a-f]{64}$", done.stdout, re.MULTILINE)  # skopeo inspect
    # one server saw every section, and the local CLI wrote to its store
    stored = local_repositories(work)
    for name in ("cli", "boto3", "local", "remote", "docker", "skopeo"):
        assert f"demo/{name}" in stored
    assert 'operation="PutManifest"' in metrics and 'operation="CreateRepository"' in metrics
    assert server.log is not None
    log = server.log.read_text()
    assert '"PUT /v2/demo/docker/manifests/v1" PutManifest 201' in log  # the access log
    assert "Invalid HTTP request received" not in log


def local_repositories(work: Path) -> str:
    """The repositories in the walkthrough's ``./.openecr``, read with the local CLI."""
    done = subprocess.run(
        [str(VENV_BIN / "openecr"), "describe-repositories", "--output", "text"],
        cwd=work,
        env={k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout
