"""``openecr image export|import`` against servers (``--endpoint-url``, or an endpoint from the
environment): a server's image into a tar, the tar into another server and into a local store,
digests equal all the way; authentication with the CLI's credentials, another account with
``--registry-id``; a progress bar on a terminal only."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conftest import VENV_BIN, ServerFactory
from openecr.cli.main import main
from test_image_archive import image, push, push_index, sha256, stored

ACCOUNT = "123456789012"
OTHER = "210987654321"


@pytest.fixture(autouse=True)
def _no_aws_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """No profile, endpoint or key of the machine leaks into the CLI."""
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR", "AWS_ACCESS_KEY_ID", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)


def tar_files(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def test_export_from_a_server_import_into_another_and_a_local_store(
    make_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, target, local = make_server(), make_server(), make_server()
    source.client().create_repository(repositoryName="team/app")
    for server in (target, local):
        server.client().create_repository(repositoryName="team/copy")
    images = {"amd64": image("remote-amd", oci=True), "arm64": image("remote-arm")}
    raw = push_index(source.client(), "team/app", images, "multi")
    lone = image("remote-one")
    single = push(source.client(), "team/app", lone, "one")

    out = tmp_path / "multi.tar"
    args = ["image", "export", "team/app:multi", "-o", str(out), "--platform", "linux/arm64"]
    assert main([*args, "--endpoint-url", source.endpoint]) == 0
    assert f"exported team/app@{sha256(raw)} (9 blobs)" in capsys.readouterr().out
    files = tar_files(out)
    for img in images.values():
        for digest, data in {**img.blobs(), img.digest: img.manifest}.items():
            assert files[f"blobs/sha256/{digest.removeprefix('sha256:')}"] == data
    [saved] = json.loads(files["manifest.json"])
    assert files[saved["Config"]] == images["arm64"].config

    imp = ["image", "import", str(out), "--repository-name", "team/copy"]
    assert main([*imp, "--endpoint-url", target.endpoint]) == 0
    assert capsys.readouterr().out == f"imported team/copy:multi@{sha256(raw)}\n"
    assert main([*imp, "--data-dir", str(local.data_dir)]) == 0
    for server in (target, local):
        assert stored(server.client(), "team/copy", "multi") == (sha256(raw), raw)
        for img in images.values():
            got = server.client().batch_get_image(
                repositoryName="team/copy", imageIds=[{"imageDigest": img.digest}]
            )["images"]
            assert got[0]["imageManifest"].encode() == img.manifest

    # and back out of the second server: the same blobs (only the names differ)
    again = tmp_path / "again.tar"
    args = ["image", "export", "team/copy:multi", "-o", str(again), "--platform", "linux/arm64"]
    assert main([*args, "--endpoint-url", target.endpoint]) == 0
    blobs = {k: v for k, v in files.items() if k.startswith("blobs/")}
    assert {k: v for k, v in tar_files(again).items() if k.startswith("blobs/")} == blobs

    # an image by digest, from the endpoint the environment names, into a tagged copy
    os.environ["AWS_ENDPOINT_URL_ECR"] = source.endpoint
    try:
        one = tmp_path / "one.tar"
        assert main(["image", "export", f"team/app@{single}", "-o", str(one)]) == 0
    finally:
        del os.environ["AWS_ENDPOINT_URL_ECR"]
    imp = ["image", "import", str(one), "--repository-name", "team/copy", "--image-tag", "x"]
    assert main([*imp, "--endpoint-url", target.endpoint]) == 0
    assert stored(target.client(), "team/copy", "x") == (single, lone.manifest)


def _credentials(tmp_path: Path) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(
        "".join(
            f'[[credentials]]\naccess_key_id = "AKID{account}"\n'
            f'secret_access_key = "secret-{account}"\naccount_id = "{account}"\n'
            for account in (ACCOUNT, OTHER)
        )
    )
    return path


def _as(monkeypatch: pytest.MonkeyPatch, account: str) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", f"AKID{account}")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", f"secret-{account}")


def test_a_server_with_credentials_takes_the_clis_keys(
    make_server: ServerFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = make_server("--credentials", str(_credentials(tmp_path)))
    client: Any = server.client(
        aws_access_key_id=f"AKID{ACCOUNT}", aws_secret_access_key=f"secret-{ACCOUNT}"
    )
    client.create_repository(repositoryName="team/app")
    img = image("auth")
    digest = push(client, "team/app", img, "v1")
    out = tmp_path / "app.tar"
    export = ["image", "export", "team/app:v1", "-o", str(out), "--endpoint-url", server.endpoint]

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDUNKNOWN")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nope")
    assert main(export) == 1
    assert "openecr image export: " in capsys.readouterr().err
    assert not out.exists()

    _as(monkeypatch, ACCOUNT)
    assert main(export) == 0
    capsys.readouterr()

    # the other account's repository, through --registry-id and a registry policy allowing it
    other: Any = server.client(
        aws_access_key_id=f"AKID{OTHER}", aws_secret_access_key=f"secret-{OTHER}"
    )
    other.create_repository(repositoryName="shared/app")
    imp = ["image", "import", str(out), "--repository-name", "shared/app", "--image-tag", "in"]
    imp += ["--endpoint-url", server.endpoint, "--registry-id", OTHER]
    assert main(imp) == 1  # not allowed yet
    capsys.readouterr()
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "ecr:*",
                "Resource": "*",
            }
        ],
    }
    other.set_repository_policy(repositoryName="shared/app", policyText=json.dumps(policy))
    assert main(imp) == 0, capsys.readouterr().err
    assert capsys.readouterr().out == f"imported shared/app:in@{digest}\n"
    assert stored(other, "shared/app", "in") == (digest, img.manifest)


def test_server_refusals_are_messages(
    make_server: ServerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = make_server()
    server.client().create_repository(repositoryName="team/app")
    out = tmp_path / "x.tar"
    remote = ["--endpoint-url", server.endpoint]
    assert main(["image", "export", "team/app:none", "-o", str(out), *remote]) == 1
    assert "Requested image not found" in capsys.readouterr().err
    archive = image("refused").write_docker_archive(tmp_path / "saved.tar", "app:1")
    assert main(["image", "import", str(archive), "--repository-name", "no/such", *remote]) == 1
    assert "no/such" in capsys.readouterr().err
    both = ["image", "export", "team/app:v1", "-o", str(out), "--data-dir", str(tmp_path), *remote]
    assert main(both) == 2
    assert "--data-dir" in capsys.readouterr().err
    down = ["--endpoint-url", "http://127.0.0.1:9"]  # nothing listens on the discard port
    assert main(["image", "export", "team/app:v1", "-o", str(out), *down]) == 1
    assert "openecr image export: " in capsys.readouterr().err


# --- a progress bar on a terminal (starts the openecr CLI) ----------------------------------------


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def _on_a_terminal(args: list[str]) -> tuple[int, str, str]:
    """Run ``openecr`` with stderr on a pseudo-terminal: exit code, stdout, what the terminal
    showed."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [str(VENV_BIN / "openecr"), *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        env=_cli_env(),
    )
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal's last writer is gone
            break
        if not data:
            break
        shown += data
    os.close(master)
    stdout, _ = process.communicate(timeout=60)
    return process.returncode, stdout.decode(), shown.decode()


@pytest.mark.slow
def test_progress_bars_on_a_terminal_and_nothing_else_otherwise(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    server = make_server()
    for name in ("team/app", "team/copy"):
        server.client().create_repository(repositoryName=name)
    img = image("progress")
    digest = push(server.client(), "team/app", img, "v1")
    out = tmp_path / "app.tar"
    export = ["image", "export", "team/app:v1", "-o", str(out), "--endpoint-url", server.endpoint]
    code, stdout, shown = _on_a_terminal(export)
    assert code == 0, shown
    assert stdout == f"exported team/app@{digest} (4 blobs) to {out}\n"
    assert "\rexporting [" in shown
    total = sum(len(b) for b in img.blobs().values()) + len(img.manifest)
    assert f"[{'#' * 30}]" in shown and "4 blobs" in shown, shown
    assert str(total) in shown or " kB" in shown

    imp = ["image", "import", str(out), "--repository-name", "team/copy"]
    code, stdout, shown = _on_a_terminal([*imp, "--endpoint-url", server.endpoint])
    assert code == 0, shown
    assert stdout == f"imported team/copy:v1@{digest}\n"
    assert "\rimporting [" in shown and f"[{'#' * 30}]" in shown

    # not a terminal: the result line alone, nothing on stderr
    piped = subprocess.run(
        [str(VENV_BIN / "openecr"), *export],
        capture_output=True,
        text=True,
        env=_cli_env(),
        timeout=60,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == f"exported team/app@{digest} (4 blobs) to {out}\n"
    assert piped.stderr == ""
