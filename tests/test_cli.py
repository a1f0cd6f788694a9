"""``openecr <ecr command>`` against ``aws ecr``: same server state, same stdout, same exit code.

Every comparison runs the real ``aws`` and ``openecr`` executables of the venv as subprocesses
against the session server. The local mode (no endpoint: the store in ``--data-dir``) runs
``openecr`` with no server at all, then serves the same directory with ``openecr serve``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import VENV_BIN, Server, ServerFactory, make_image

pytestmark = pytest.mark.slow  # every test runs the openecr or aws CLI as a process

AWS = str(VENV_BIN / "aws")
OPENECR = str(VENV_BIN / "openecr")
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
OCI = "application/vnd.oci.image.manifest.v1+json"

# Lets a command run openecr's entry point with an audit hook that fails on any network use.
NO_NETWORK = """
import sys
def hook(event, args):
    if event in ("socket.connect", "socket.getaddrinfo", "socket.sendto", "socket.sendmsg"):
        sys.stderr.write(f"network use: {event} {args}\\n")
        sys.stderr.flush()
        import os
        os._exit(99)
sys.addaudithook(hook)
from openecr.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def cli_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's AWS/openecr settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENECR_"))}
    env.update(
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY="secret",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        COLUMNS="100",
    )
    env.update(extra)
    return env


def run(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=cli_env() if env is None else env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def aws(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run([AWS, "ecr", *args, "--endpoint-url", server.endpoint])


def openecr(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return run([OPENECR, *args, "--endpoint-url", server.endpoint])


def mask(token: str) -> str:
    """The shape of a token: every base64url character becomes ``x``."""
    return re.sub(r"[A-Za-z0-9_-]", "x", token)


@dataclass(frozen=True)
class State:
    repo: str
    digest1: str  # tagged v1, Docker v2
    digest2: str  # tagged v2, OCI
    input_file: Path

    def fill(self, arg: str) -> str:
        for key, value in (
            ("{repo}", self.repo),
            ("{d1}", self.digest1),
            ("{d2}", self.digest2),
            ("{file}", self.input_file.as_posix()),
        ):
            arg = arg.replace(key, value)
        return arg


@pytest.fixture(scope="module")
def state(server: Server, tmp_path_factory: pytest.TempPathFactory) -> State:
    """One repository with two images, shared by the read-only comparisons."""
    client = server.client()
    repo = f"test/cli-{uuid.uuid4().hex[:10]}"
    client.create_repository(repositoryName=repo)
    digests = []
    for tag, media_type in (("v1", DOCKER), ("v2", OCI)):
        manifest = make_image(client, repo, seed=tag, media_type=media_type)
        client.put_image(repositoryName=repo, imageManifest=manifest.decode(), imageTag=tag)
        digests.append("sha256:" + hashlib.sha256(manifest).hexdigest())
    input_file = tmp_path_factory.mktemp("cli") / "input.json"
    input_file.write_text(json.dumps({"repositoryName": repo, "imageIds": [{"imageTag": "v1"}]}))
    return State(repo, digests[0], digests[1], input_file)


BGI = ["batch-get-image", "--repository-name", "{repo}"]

# (id, arguments after ``aws ecr``, expected exit code)
CASES: list[tuple[str, list[str], int]] = [
    ("by-tag", [*BGI, "--image-ids", "imageTag=v1"], 0),
    ("by-digest-text", [*BGI, "--image-ids", "imageDigest={d1}", "--output", "text"], 0),
    (
        "several-ids-with-not-found-table",
        [
            *BGI,
            "--image-ids",
            "imageTag=v1",
            "imageDigest={d2}",
            "imageTag=nope",
            "--output",
            "table",
        ],
        0,
    ),
    (
        "json-syntax-missing-and-invalid",
        [
            *BGI,
            "--image-ids",
            '[{}, {"imageDigest": "sha256:not-hex"}, {"imageTag": "nope"}, {"imageTag": "v2"}]',
        ],
        0,
    ),
    (
        "shorthand-tag-and-digest",
        [*BGI, "--image-ids", "imageTag=v1,imageDigest={d1}", "imageTag=v1,imageDigest={d2}"],
        0,
    ),
    (
        "cli-input-json-inline",
        [
            "batch-get-image",
            "--cli-input-json",
            '{"repositoryName": "{repo}", "imageIds": [{"imageTag": "v2"}]}',
        ],
        0,
    ),
    (
        "cli-input-json-file-with-override",
        ["batch-get-image", "--cli-input-json", "file://{file}", "--image-ids", "imageTag=v2"],
        0,
    ),
    (
        "accepted-media-types",
        [*BGI, "--image-ids", "imageTag=v1", "imageTag=v2", "--accepted-media-types", DOCKER],
        0,
    ),
    (
        "query-manifests-text",
        [
            *BGI,
            "--image-ids",
            "imageTag=v1",
            "imageTag=v2",
            "--query",
            "images[].imageManifest",
            "--output",
            "text",
            "--region",  # a global option after the command (the state is in us-east-1)
            "us-east-1",
        ],
        0,
    ),
    ("skeleton", ["batch-get-image", "--generate-cli-skeleton"], 0),
    (
        "skeleton-output-text",
        [
            *BGI,
            "--image-ids",
            "imageTag=v1",
            "--generate-cli-skeleton",
            "output",
            "--output",
            "text",
        ],
        0,
    ),
    ("skeleton-yaml-input", ["batch-get-image", "--generate-cli-skeleton", "yaml-input"], 2),
    ("missing-required", BGI, 2),
    (
        "repository-not-found",
        ["batch-get-image", "--repository-name", "{repo}-nope", "--image-ids", "imageTag=v1"],
        255,
    ),
    ("describe-repositories", ["describe-repositories", "--repository-names", "{repo}"], 0),
    ("list-images-text", ["list-images", "--repository-name", "{repo}", "--output", "text"], 0),
    (
        "describe-images-table",
        ["describe-images", "--repository-name", "{repo}", "--output", "table"],
        0,
    ),
    ("no-operation", [], 2),
    ("not-an-ecr-operation", ["s3", "ls"], 2),
    ("help", ["help"], 0),
    ("operation-help", ["batch-get-image", "help"], 0),
]


@pytest.mark.parametrize(("args", "rc"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_stdout_and_exit_code_match_aws_ecr(
    server: Server, state: State, args: list[str], rc: int
) -> None:
    filled = [state.fill(a) for a in args]
    theirs = aws(server, *filled)
    ours = openecr(server, *filled)
    assert theirs.returncode == rc, theirs.stderr
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), ours.stderr
    if rc == 2:  # a usage error: the texts on stderr name openecr, not aws
        assert "openecr: error:" in ours.stderr
        assert "usage: openecr" in ours.stderr
        assert "aws help" not in ours.stderr
    if rc == 255:  # a service error reads the same
        assert ours.stderr == theirs.stderr
    if args and args[-1].startswith("[{}"):
        # The compared output holds the failures this case is about.
        doc = json.loads(ours.stdout)
        assert [i["imageId"]["imageTag"] for i in doc["images"]] == ["v2"]
        assert sorted(f["failureCode"] for f in doc["failures"]) == [
            "ImageNotFound",
            "InvalidImageDigest",
            "MissingDigestAndTag",
        ]


def test_create_and_delete_repository_match(server: Server) -> None:
    """The same name created and deleted by each CLI in turn: equal but for ``createdAt``."""
    fresh_name = f"test/cli-new-{uuid.uuid4().hex[:10]}"
    created = r'"createdAt": [0-9.]+'
    outputs = []
    for cli in (aws, openecr):
        create = cli(server, "create-repository", "--repository-name", fresh_name)
        delete = cli(server, "delete-repository", "--repository-name", fresh_name)
        assert (create.returncode, delete.returncode) == (0, 0), create.stderr + delete.stderr
        assert json.loads(create.stdout)["repository"]["repositoryName"] == fresh_name
        outputs.append([re.sub(created, '"createdAt": T', p.stdout) for p in (create, delete)])
    assert outputs[0] == outputs[1]


def test_get_login_password_has_the_shape_of_aws_ecr(server: Server) -> None:
    theirs = aws(server, "get-login-password")
    ours = openecr(server, "get-login-password")
    assert (theirs.returncode, ours.returncode) == (0, 0), theirs.stderr + ours.stderr
    # Tokens differ per call; the shape (length, separators) does not.
    assert re.fullmatch(r"\S+\n", ours.stdout)
    assert mask(ours.stdout) == mask(theirs.stdout)
    token = server.client().get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    assert mask(password) == mask(ours.stdout.strip())


def test_get_login_prints_a_docker_login_command(server: Server) -> None:
    ours = openecr(server, "get-login", "--no-include-email")
    assert ours.returncode == 0, ours.stderr
    words = ours.stdout.split()
    assert words[:4] == ["docker", "login", "-u", "AWS"]
    assert words[4] == "-p"
    assert words[6:] == [server.endpoint]


def test_version_and_serve_help() -> None:
    version = run([OPENECR, "--version"])
    assert version.returncode == 0, version.stderr
    assert re.match(r"openecr/\S+ aws-cli/1\.\S+ .*botocore/1\.", version.stdout)
    serve = run([OPENECR, "serve", "--help"])
    assert serve.returncode == 0, serve.stderr
    assert serve.stdout.startswith("usage: openecr serve")
    for option in ("--host", "--port", "--data-dir"):
        assert option in serve.stdout


# --- the local store: no server, no network --------------------------------------------------


def test_local_mode_uses_the_data_dir_without_a_server(
    tmp_path: Path, make_server: ServerFactory
) -> None:
    data = tmp_path / "store"
    base = [OPENECR, "--data-dir", str(data)]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": DOCKER,
                "config": {
                    "mediaType": "application/vnd.docker.container.image.v1+json",
                    "size": 2,
                    "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
                },
                "layers": [],
            }
        )
    )
    create = run([*base, "create-repository", "--repository-name", "local/app"])
    assert create.returncode == 0, create.stderr
    assert json.loads(create.stdout)["repository"]["repositoryUri"] == "localhost:5000/local/app"
    put = run(
        [
            *base,
            "put-image",
            "--repository-name",
            "local/app",
            "--image-tag",
            "v1",
            "--image-manifest",
            f"file://{manifest}",
        ],
        env=cli_env(OPENECR_LENIENT_MANIFESTS="1"),
    )
    assert put.returncode == 0, put.stderr
    get_args = ["batch-get-image", "--repository-name", "local/app", "--image-ids", "imageTag=v1"]
    # No credentials, no region, nothing but the data dir; and not one network call.
    bare = {k: v for k, v in cli_env().items() if not k.startswith("AWS_")}
    local = run(
        [str(VENV_BIN / "python"), "-c", NO_NETWORK, "--data-dir", str(data), *get_args], env=bare
    )
    assert local.returncode == 0, local.stderr
    [image] = json.loads(local.stdout)["images"]
    assert image["imageManifest"] == manifest.read_text()

    served = make_server(data_dir=data)
    assert [
        r["repositoryName"] for r in served.client().describe_repositories()["repositories"]
    ] == ["local/app"]
    # What the local mode printed is what ``aws ecr`` prints for the same store, served.
    remote = aws(served, *get_args)
    assert (remote.returncode, remote.stdout) == (0, local.stdout), remote.stderr


def test_local_mode_reads_openecr_data_dir_then_dot_openecr(server: Server, tmp_path: Path) -> None:
    data = tmp_path / "from-env"
    # A configured endpoint that the configuration says to ignore leaves the local store.
    env = cli_env(
        OPENECR_DATA_DIR=str(data),
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="true",
    )
    made = run([OPENECR, "create-repository", "--repository-name", "env/app"], env=env)
    assert made.returncode == 0, made.stderr
    assert (data / "metadata.db").exists()
    listed = run(
        [OPENECR, "describe-repositories", "--query", "repositories[].repositoryName"],
        env=cli_env(),
        cwd=data.parent,
    )
    assert (listed.returncode, json.loads(listed.stdout)) == (0, []), listed.stderr
    assert (tmp_path / ".openecr").is_dir()


# --- which endpoint, which credentials -------------------------------------------------------


@pytest.mark.parametrize("how", ["AWS_ENDPOINT_URL_ECR", "profile", "services"])
def test_configured_endpoints_are_honoured(
    server: Server, state: State, tmp_path: Path, how: str
) -> None:
    config = tmp_path / "config"
    config.write_text(
        f"[profile plain]\nendpoint_url = {server.endpoint}\n"
        "[profile svc]\nservices = mine\n"
        f"[services mine]\necr =\n  endpoint_url = {server.endpoint}\n"
    )
    extra = {"AWS_CONFIG_FILE": str(config), "OPENECR_DATA_DIR": str(tmp_path / "local")}
    args = ["describe-repositories", "--query", "repositories[].repositoryName", "--output", "text"]
    if how.startswith("AWS_"):
        extra[how] = server.endpoint
    elif how == "profile":
        args += ["--profile", "plain"]
    else:
        extra["AWS_PROFILE"] = "svc"
    result = run([OPENECR, *args], env=cli_env(**extra))
    assert result.returncode == 0, result.stderr
    assert state.repo in result.stdout.split()
    assert not (tmp_path / "local").exists()


def test_credentials_dummy_only_when_none_resolve(
    server: Server, make_server: ServerFactory, tmp_path: Path
) -> None:
    no_credentials = {
        k: v
        for k, v in cli_env().items()
        if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    args = ["describe-repositories", "--query", "repositories[0].registryId", "--output", "text"]
    # A server without credentials takes any key; where aws finds none ("Unable to locate
    # credentials", exit 255), openecr signs with the dummy one.
    ours = run([OPENECR, *args, "--endpoint-url", server.endpoint], env=no_credentials)
    assert ours.returncode == 0, ours.stderr

    keys = tmp_path / "keys.toml"
    keys.write_text(
        '[[credentials]]\naccess_key_id = "AKIDCLI"\nsecret_access_key = "s3cret"\n'
        'account_id = "111122223333"\n'
    )
    secured = make_server("--credentials", str(keys))
    secured.client(aws_access_key_id="AKIDCLI", aws_secret_access_key="s3cret").create_repository(
        repositoryName="mine"
    )
    shared = tmp_path / "credentials"
    shared.write_text("[cli]\naws_access_key_id = AKIDCLI\naws_secret_access_key = s3cret\n")
    env = {**no_credentials, "AWS_SHARED_CREDENTIALS_FILE": str(shared)}
    command = [OPENECR, *args, "--endpoint-url", secured.endpoint]
    # The profile's key, chosen by --profile, is the one used ...
    good = run([*command, "--profile", "cli"], env=env)
    assert (good.returncode, good.stdout) == (0, "111122223333\n"), good.stderr
    # ... and without one the dummy key is sent, which this server refuses.
    refused = run(command, env=env)
    assert refused.returncode == 255
    assert "UnrecognizedClientException" in refused.stderr
