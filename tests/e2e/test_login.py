"""Login as on ECR: user ``AWS``, the password from ``get-login-password``; every client stores
it, a wrong password is refused, and docker cannot push without logging in."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from e2e.conftest import (
    SKOPEO,
    Docker,
    Podman,
    Registry,
    docker_load,
    run,
    unique,
)
from e2e.images import small_image


def _login(
    client: str, registry: Registry, docker: Docker, podman: Podman, workdir: Path, password: str
) -> tuple[int, str, Path]:
    """Log ``client`` in with a fresh credentials file; (exit code, output, that file)."""
    if client == "docker":
        authfile = workdir / "config.json"
        result = docker(
            "login",
            "-u",
            "AWS",
            "--password-stdin",
            registry.host,
            input=password,
            check=False,
            config=workdir,
        )
    else:
        authfile = workdir / "auth.json"
        args = [
            "login",
            "--authfile",
            str(authfile),
            "--tls-verify=false",
            "-u",
            "AWS",
            "--password-stdin",
            registry.host,
        ]
        if client == "podman":
            result = podman(*args, input=password, check=False)
        else:
            result = run([SKOPEO, *args], input=password, check=False)
    return result.returncode, result.stdout + result.stderr, authfile


@pytest.mark.parametrize("client", ["docker", "podman", "skopeo"])
@pytest.mark.parametrize("cli", ["openecr", "aws"])
def test_login_with_token(
    registry: Registry,
    docker: Docker,
    podman: Podman,
    tmp_path: Path,
    client: str,
    cli: str,
) -> None:
    password = registry.password(cli)
    code, output, authfile = _login(client, registry, docker, podman, tmp_path, password)
    assert code == 0, output
    assert "Login Succeeded" in output
    stored = json.loads(authfile.read_text())["auths"][registry.host]["auth"]
    assert base64.b64decode(stored).decode() == f"AWS:{password}"


@pytest.mark.parametrize(
    ("client", "message"),
    [
        ("docker", "failed with status: 401 Unauthorized"),
        ("podman", "invalid username/password"),
        ("skopeo", "invalid username/password"),
    ],
    ids=["docker", "podman", "skopeo"],
)
def test_login_with_wrong_password_is_refused(
    registry: Registry,
    docker: Docker,
    podman: Podman,
    tmp_path: Path,
    client: str,
    message: str,
) -> None:
    forged = registry.token[:-4] + "AAAA"
    mark = registry.proxy.mark()
    code, output, authfile = _login(client, registry, docker, podman, tmp_path, forged)
    assert code != 0, output
    assert message in output
    tried = [e for e in registry.proxy.since(mark) if "authorization" in e.headers]
    assert tried and all(e.status == 401 for e in tried), [str(e) for e in tried]
    if authfile.exists():
        assert registry.host not in json.loads(authfile.read_text()).get("auths", {})


def test_docker_push_without_login_is_refused(
    registry: Registry, docker: Docker, tmp_path: Path
) -> None:
    repo = unique("nologin")
    remote = registry.create_repository(repo)
    docker_load(docker, small_image(repo), f"{remote}:v1", tmp_path)
    (tmp_path / "empty").mkdir()
    result = docker("push", f"{remote}:v1", check=False, config=tmp_path / "empty")
    docker("rmi", f"{remote}:v1")
    assert result.returncode != 0
    assert "no basic auth credentials" in result.stderr, result.stderr
