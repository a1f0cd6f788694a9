"""``openecr`` tells a newcomer what it does: ``--help`` (exit 0), no arguments (usage on stderr,
exit 2), ``serve --version``."""

from __future__ import annotations

import subprocess

import pytest

from conftest import VENV_BIN

pytestmark = pytest.mark.slow  # runs the openecr command

OPENECR = str(VENV_BIN / "openecr")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([OPENECR, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help() -> None:
    for flag in ("--help", "-h"):
        done = run(flag)
        assert done.returncode == 0
        assert done.stdout.startswith("usage: openecr serve")
        assert "openecr lifecycle run" in done.stdout and "aws ecr" in done.stdout
    bare = run()
    assert bare.returncode == 2 and bare.stdout == ""
    assert bare.stderr.startswith("usage: openecr serve")


def test_serve_version() -> None:
    done = run("serve", "--version")
    assert done.returncode == 0
    assert done.stdout.startswith("openecr ")


def test_the_banner_says_where_on_what_and_as_whom(tmp_path: object) -> None:
    from pathlib import Path

    from openecr.cli.serve import banner
    from openecr.config import Config

    data = Path(str(tmp_path))
    config = Config(data_dir=data, database_url="postgresql+psycopg://u:secret@db/x")
    text = banner(config, "127.0.0.1", 5000)
    assert "http://127.0.0.1:5000" in text and str(data) in text
    assert "account 123456789012, region us-east-1, authentication off" in text
    assert "secret" not in text and "u:***@db" in text
