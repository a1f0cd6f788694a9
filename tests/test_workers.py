"""``openecr serve --workers N``: N server processes accepting on one port.

Every test drives a real multi-process server through real clients. Which worker answered a
request is read from /proc: the worker process holding the server end of the request's TCP
connection (its client port is the remote port of that socket).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.config import Config as BotoConfig
from botocore.credentials import Credentials

from conftest import VENV_BIN, ProcessServer, ServerFactory, free_port, upload_blob

pytestmark = pytest.mark.slow  # --workers needs real processes

KEY, SECRET, ACCOUNT = (
    "AKIAOPENECRWORKERSAA",
    "secret/workers+AAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "333333333333",
)
TARGET = "AmazonEC2ContainerRegistry_V20150921."
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


# --- which process answered: /proc ---------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (command) state ppid ...": the command may hold spaces and parentheses
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[len("socket:[") : -1]))
    return inodes


def server_sockets(port: int) -> dict[int, tuple[str, int]]:
    """inode -> (TCP state, remote port) of the IPv4 sockets whose local port is ``port``
    (state 0A: listening, 01: an established connection)."""
    found = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
        if inode and int(local.rpartition(":")[2], 16) == port:
            found[inode] = (state, int(remote.rpartition(":")[2], 16))
    return found


def worker_pids(server: ProcessServer) -> list[int]:
    """The children of the server process that hold its listening socket."""
    assert server.process is not None
    listening = {i for i, (state, _) in server_sockets(server.port).items() if state == "0A"}
    return sorted(p for p in children(server.process.pid) if socket_inodes(p) & listening)


def answered_by(server: ProcessServer, response: httpx.Response) -> int:
    """The worker process at the server end of the (still open) connection of ``response``."""
    client_port = response.extensions["network_stream"].get_extra_info("client_addr")[1]
    [inode] = [
        i
        for i, (state, remote) in server_sockets(server.port).items()
        if state == "01" and remote == client_port
    ]
    [pid] = [p for p in worker_pids(server) if inode in socket_inodes(p)]
    return pid


def connection_to_each_worker(
    server: ProcessServer, verify: ssl.SSLContext | bool = True
) -> dict[int, httpx.Client]:
    """One open connection (an httpx client, ``verify`` for HTTPS) to each of the two workers,
    by worker PID: new connections are opened until every worker has accepted one (a worker
    still starting accepts none)."""
    deadline = time.monotonic() + 60
    pids = worker_pids(server)
    while len(pids) < 2 and time.monotonic() < deadline:  # the second may still be starting
        time.sleep(0.1)
        pids = worker_pids(server)
    assert len(pids) == 2
    chosen: dict[int, httpx.Client] = {}
    try:
        while len(chosen) < len(pids):
            assert time.monotonic() < deadline, f"of {pids}, only {sorted(chosen)} answered"
            client = httpx.Client(base_url=server.endpoint, timeout=30, verify=verify)
            try:
                response = client.get("/openecr/health")
                assert response.status_code == 200
                pid = answered_by(server, response)
            except BaseException:
                client.close()
                raise
            if pid in chosen:
                client.close()
                time.sleep(0.01)
            else:
                chosen[pid] = client
    except BaseException:
        for kept in chosen.values():
            kept.close()
        raise
    return chosen


@pytest.fixture
def on_worker(workers_server: ProcessServer) -> Iterator[dict[int, httpx.Client]]:
    chosen = connection_to_each_worker(workers_server)
    yield chosen
    for client in chosen.values():
        client.close()


# --- a shared two-worker server with authentication on ------------------------------------------


@pytest.fixture(scope="module")
def workers_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessServer]:
    base = tmp_path_factory.mktemp("workers")
    credentials = base / "credentials.toml"
    credentials.write_text(
        f'[[credentials]]\naccess_key_id = "{KEY}"\n'
        f'secret_access_key = "{SECRET}"\naccount_id = "{ACCOUNT}"\n'
    )
    server = ProcessServer(
        base / "data", free_port(), ["--workers", "2", "--credentials", str(credentials)]
    )
    server.start()
    yield server
    server.stop()


def boto(server: ProcessServer, **kwargs: Any) -> Any:
    return server.client(aws_access_key_id=KEY, aws_secret_access_key=SECRET, **kwargs)


def ecr_call(
    client: httpx.Client, operation: str, params: dict[str, Any], *, sign: bool = True
) -> httpx.Response:
    """An ECR JSON API call on this connection, signed by botocore's SigV4 signer."""
    body = json.dumps(params).encode()
    headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": TARGET + operation}
    if sign:
        request = AWSRequest(
            method="POST", url=str(client.base_url).rstrip("/") + "/", headers=headers, data=body
        )
        botocore.auth.SigV4Auth(Credentials(KEY, SECRET), "ecr", "us-east-1").add_auth(request)
        headers = dict(request.headers.items())
    return client.post("/", content=body, headers=headers)


def oci_manifest(config: str, layer: str, config_size: int, layer_size: int, n: int) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": config_size,
                "digest": config,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "size": layer_size,
                    "digest": layer,
                }
            ],
            "annotations": {"n": str(n)},
        }
    ).encode()


def test_two_worker_processes_both_answer(
    workers_server: ProcessServer, on_worker: dict[int, httpx.Client]
) -> None:
    assert workers_server.process is not None
    pids = worker_pids(workers_server)
    assert len(pids) == 2 and workers_server.process.pid not in pids
    for pid, client in on_worker.items():
        response = client.get("/openecr/health")
        assert response.json() == {"status": "ok"}
        assert answered_by(workers_server, response) == pid


def test_the_supervisor_loads_neither_the_store_nor_the_app(
    workers_server: ProcessServer,
) -> None:
    """The supervisor serves no request: a child process prepared the store, so SQLite's and
    SQLAlchemy's code is mapped in the workers only (the supervisor stays small)."""
    assert workers_server.process is not None

    def mapped(pid: int) -> str:
        return Path(f"/proc/{pid}/maps").read_text()

    assert "_sqlite3" not in mapped(workers_server.process.pid)
    for pid in worker_pids(workers_server):
        assert "_sqlite3" in mapped(pid)


def test_concurrent_calls_see_each_others_writes(workers_server: ProcessServer) -> None:
    """100 PutImage calls, each followed by a BatchGetImage on another client's connections,
    over 16 threads; then a fresh client lists every image."""
    pool = BotoConfig(max_pool_connections=16, retries={"total_max_attempts": 1})
    writer, reader = boto(workers_server, config=pool), boto(workers_server, config=pool)
    repo = f"workers/load-{uuid.uuid4().hex[:8]}"
    writer.create_repository(repositoryName=repo)
    config, layer = b'{"architecture":"amd64","os":"linux"}', b"a layer"
    config_digest = upload_blob(writer, repo, config)
    layer_digest = upload_blob(writer, repo, layer)
    manifests = [
        oci_manifest(config_digest, layer_digest, len(config), len(layer), n) for n in range(100)
    ]

    def put_then_get(n: int) -> tuple[str, str]:
        put = writer.put_image(
            repositoryName=repo, imageManifest=manifests[n].decode(), imageTag=f"t{n}"
        )
        got = reader.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": f"t{n}"}])
        assert got["failures"] == []
        [image] = got["images"]
        assert image["imageManifest"].encode() == manifests[n]
        return put["image"]["imageId"]["imageDigest"], image["imageId"]["imageDigest"]

    with ThreadPoolExecutor(16) as threads:
        results = list(threads.map(put_then_get, range(100)))
    expected = ["sha256:" + hashlib.sha256(m).hexdigest() for m in manifests]
    assert results == [(d, d) for d in expected]
    listed = boto(workers_server).get_paginator("describe_images").paginate(repositoryName=repo)
    tags = {t for page in listed for image in page["imageDetails"] for t in image["imageTags"]}
    assert tags == {f"t{n}" for n in range(100)}


@pytest.mark.parametrize("issuer", [0, 1], ids=["first-worker-issues", "second-worker-issues"])
def test_tokens_and_layer_urls_issued_by_one_worker_work_on_all(
    workers_server: ProcessServer, on_worker: dict[int, httpx.Client], issuer: int
) -> None:
    issuing = on_worker[sorted(on_worker)[issuer]]
    repo = f"workers/token-{uuid.uuid4().hex[:8]}"
    blob = b"a layer behind a signed URL"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    ecr = boto(workers_server)
    ecr.create_repository(repositoryName=repo)
    upload_blob(ecr, repo, blob)

    answer = ecr_call(issuing, "GetAuthorizationToken", {})
    assert answer.status_code == 200, answer.text
    assert answered_by(workers_server, answer) == sorted(on_worker)[issuer]
    token = answer.json()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    basic = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    forged = "Basic " + base64.b64encode(f"{user}:{password[:-4]}AAAA".encode()).decode()

    url = ecr_call(
        issuing, "GetDownloadUrlForLayer", {"repositoryName": repo, "layerDigest": digest}
    ).json()["downloadUrl"]
    for pid, client in on_worker.items():
        assert client.get("/v2/").status_code == 401
        assert client.get("/v2/", headers={"Authorization": forged}).status_code == 401
        pulled = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Authorization": basic})
        assert pulled.status_code == 200 and pulled.content == blob
        downloaded = client.get(url)
        assert downloaded.status_code == 200 and downloaded.content == blob
        assert {answered_by(workers_server, r) for r in (pulled, downloaded)} == {pid}


def test_blob_upload_session_continues_on_other_workers(
    workers_server: ProcessServer, on_worker: dict[int, httpx.Client]
) -> None:
    """docker's chunked upload: POST on one worker, PATCH and status on the other, the next
    PATCH back on the first, PUT on the second, pulled from both."""
    first, second = (on_worker[pid] for pid in sorted(on_worker))
    repo = f"workers/upload-{uuid.uuid4().hex[:8]}"
    boto(workers_server).create_repository(repositoryName=repo)
    token = boto(workers_server).get_authorization_token()["authorizationData"][0]
    auth = {"Authorization": "Basic " + token["authorizationToken"]}
    data = os.urandom(3 * 4096 + 17)
    parts = [data[:4096], data[4096:9000], data[9000:]]
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    started = first.post(f"/v2/{repo}/blobs/uploads/", headers=auth)
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    offset = 0
    answered = [answered_by(workers_server, started)]
    for client, part in ((second, parts[0]), (first, parts[1])):
        end = offset + len(part) - 1
        patched = client.patch(
            location, content=part, headers={**auth, "Content-Range": f"{offset}-{end}"}
        )
        assert patched.status_code == 202, patched.text
        assert patched.headers["range"] == f"0-{end}"
        offset = end + 1
        location = patched.headers["location"]
        status = (second if client is first else first).get(location, headers=auth)
        assert status.status_code == 204 and status.headers["range"] == f"0-{end}"
        answered += [answered_by(workers_server, patched), answered_by(workers_server, status)]
    done = second.put(
        location,
        params={"digest": digest},
        content=parts[2],
        headers={**auth, "Content-Range": f"{offset}-{len(data) - 1}"},
    )
    assert done.status_code == 201, done.text
    answered.append(answered_by(workers_server, done))
    first_pid, second_pid = sorted(on_worker)
    assert answered == [first_pid, second_pid, first_pid, first_pid, second_pid, second_pid]
    for client in (first, second):
        assert client.get(f"/v2/{repo}/blobs/{digest}", headers=auth).content == data


# --- servers of their own ------------------------------------------------------------------------


def test_every_option_reaches_every_worker(make_server: ServerFactory) -> None:
    """Account, region, registry host, lenient manifests and create-on-push, on each worker."""
    server = make_server(
        "--workers",
        "2",
        "--account-id",
        "444455556666",
        "--region",
        "eu-central-1",
        "--registry-host",
        "{account}.registry.{region}.example",
        "--lenient-manifests",
        "--create-on-push",
        process=True,
    )
    clients = connection_to_each_worker(server)
    try:
        for pid, client in clients.items():
            name = f"opts/r-{uuid.uuid4().hex[:8]}"
            created = ecr_call(client, "CreateRepository", {"repositoryName": name}, sign=False)
            assert created.status_code == 200, created.text
            repository = created.json()["repository"]
            assert repository["repositoryArn"] == (
                f"arn:aws:ecr:eu-central-1:444455556666:repository/{name}"
            )
            assert repository["repositoryUri"] == (
                f"444455556666.registry.eu-central-1.example/{name}"
            )
            # none of these blobs is stored: only a lenient server takes the manifest
            absent = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
            manifest = oci_manifest(absent, absent, 1, 1, 0)
            put = ecr_call(
                client,
                "PutImage",
                {"repositoryName": name, "imageManifest": manifest.decode(), "imageTag": "v1"},
                sign=False,
            )
            assert put.status_code == 200, put.text
            pushed = client.put(
                f"/v2/{name}-pushed/manifests/v1",
                content=manifest,
                headers={"Content-Type": OCI_MANIFEST},
            )
            assert pushed.status_code == 201, pushed.text
            assert {answered_by(server, r) for r in (created, put, pushed)} == {pid}
    finally:
        for client in clients.values():
            client.close()


@pytest.mark.parametrize(
    ("sig", "exit_status"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 0), (signal.SIGKILL, -signal.SIGKILL)],
    ids=["SIGTERM", "SIGINT", "SIGKILL"],
)
def test_a_signal_to_the_server_stops_every_worker(
    make_server: ServerFactory, sig: signal.Signals, exit_status: int
) -> None:
    """SIGTERM and SIGINT (Ctrl-C) stop the workers through uvicorn's supervisor; a killed
    supervisor takes its workers along (they would otherwise go on serving, orphaned)."""
    server = make_server("--workers", "2", process=True)
    assert server.process is not None
    for client in connection_to_each_worker(server).values():
        client.close()
    spawned = children(server.process.pid)  # the workers and multiprocessing's helper
    server.client().create_repository(repositoryName="written")
    server.process.send_signal(sig)
    assert server.process.wait(timeout=30) == exit_status
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in spawned) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [pid for pid in spawned if alive(pid)] == []
    # every worker closed its SQLite connections: the last close removes the WAL files
    assert sorted(p.name for p in server.data_dir.glob("metadata.db*")) == ["metadata.db"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.endpoint}/openecr/health", timeout=5)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--workers", "0"], {}, "openecr: the number of workers (--workers, OPENECR_WORKERS)"),
        (["--workers", "-2"], {}, "openecr: the number of workers (--workers, OPENECR_WORKERS)"),
        ([], {"OPENECR_WORKERS": "0"}, "openecr: the number of workers"),
        ([], {"OPENECR_WORKERS": "two"}, "openecr: OPENECR_WORKERS must be a whole number"),
        (["--workers", "two"], {}, "argument --workers: invalid int value: 'two'"),
    ],
)
def test_bad_worker_counts_are_refused_before_anything_starts(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    data_dir = tmp_path / "data"
    result = subprocess.run(
        [str(VENV_BIN / "openecr"), "serve", "--data-dir", str(data_dir), "--port", "0", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert not data_dir.exists()
