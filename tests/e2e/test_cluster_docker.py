"""docker against three stateless replicas on one PostgreSQL and one SeaweedFS bucket, behind
haproxy (the servers ``make cluster`` starts, from the same code):

* docker pushes through replica 1 and pulls through replica 2; replica 2 answers the blob GETs
  with redirects to the bucket (its access log says 307) and docker follows them;
* a replica killed (SIGKILL) in the middle of a push of a big layer: docker's retry through the
  load balancer completes the push on another replica, and every acknowledged image is intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import ProcessServer, ServerFactory, free_port
from e2e.conftest import Docker, docker_load, pushed_digest
from e2e.images import MiB, big_image, small_image
from storage_servers import Haproxy

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)


@pytest.fixture
def replicas(
    make_server: ServerFactory, postgres_url: str, s3_blob_store: str
) -> list[ProcessServer]:
    """Three ``openecr serve`` processes on one database and one bucket, each with its own data
    dir, access logs in JSON."""
    args = ["--database-url", postgres_url, "--blob-store", s3_blob_store, "--s3-path-style"]
    return [make_server(*args, "--access-log", "json", process=True) for _ in range(3)]


@pytest.fixture
def balancer(replicas: list[ProcessServer]) -> Iterator[Haproxy]:
    proxy = Haproxy(free_port(), [f"127.0.0.1:{r.port}" for r in replicas]).start()
    yield proxy
    proxy.remove()


def access_log(server: ProcessServer) -> list[dict[str, object]]:
    assert server.log is not None
    lines = server.log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def verify(endpoint: str, repository: str, digest: str) -> None:
    """The image ``digest`` through ``endpoint``: its manifest hashes to it, and every blob it
    names (fetched as a client does, following redirects) hashes to its digest."""
    response = httpx.get(
        f"{endpoint}/v2/{repository}/manifests/{digest}",
        headers={"Accept": MANIFEST_TYPES},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert f"sha256:{hashlib.sha256(response.content).hexdigest()}" == digest
    manifest = response.json()
    for descriptor in [manifest["config"], *manifest["layers"]]:
        blob = httpx.get(
            f"{endpoint}/v2/{repository}/blobs/{descriptor['digest']}",
            follow_redirects=True,
            timeout=120,
        )
        assert blob.status_code == 200
        assert len(blob.content) == descriptor["size"]
        assert f"sha256:{hashlib.sha256(blob.content).hexdigest()}" == descriptor["digest"]


def test_docker_pushes_through_one_replica_and_pulls_through_another(
    docker: Docker, replicas: list[ProcessServer], seaweedfs: object, tmp_path: Path
) -> None:
    one, two, _ = replicas
    one.client().create_repository(repositoryName="cluster/app")
    image = small_image("cluster-docker")
    pushed_as = f"127.0.0.1:{one.port}/cluster/app:v1"
    docker_load(docker, image, pushed_as, tmp_path)
    digest = pushed_digest(docker("push", pushed_as).stdout)
    docker("rmi", pushed_as)

    pulled_as = f"127.0.0.1:{two.port}/cluster/app:v1"
    pulled = docker("pull", pulled_as).stdout
    assert f"Digest: {digest}" in pulled
    # the image docker has is the one pushed: same config (its id), same layers
    inspected = json.loads(docker("image", "inspect", pulled_as).stdout)[0]
    assert inspected["Id"] == image.config_digest
    assert inspected["RootFS"]["Layers"] == [layer.diff_id for layer in image.layers]
    assert inspected["RepoDigests"] == [f"127.0.0.1:{two.port}/cluster/app@{digest}"]
    docker("rmi", pulled_as)

    # replica 2 answered docker's blob GETs with redirects to the bucket; replica 1 served none
    redirected = [
        entry
        for entry in access_log(two)
        if entry["method"] == "GET" and "/blobs/sha256:" in str(entry["path"])
    ]
    assert {entry["status"] for entry in redirected} == {307}
    manifest = httpx.get(
        f"{two.endpoint}/v2/cluster/app/manifests/{digest}", headers={"Accept": MANIFEST_TYPES}
    ).json()
    blobs = {d["digest"] for d in [manifest["config"], *manifest["layers"]]}
    assert {str(entry["path"]).rsplit("/", 1)[1] for entry in redirected} == blobs
    assert not [e for e in access_log(one) if e["method"] == "GET" and "/blobs/" in str(e["path"])]
    location = httpx.get(f"{two.endpoint}/v2/cluster/app/blobs/{image.config_digest}")
    assert location.status_code == 307
    assert location.headers["Location"].startswith(seaweedfs.endpoint)  # type: ignore[attr-defined]


class ThrottledRelay:
    """A TCP relay on 127.0.0.1 to ``target`` that passes what clients send at most
    ``rate`` bytes a second (per connection; answers unthrottled): a push that lasts seconds,
    not milliseconds, so a replica can be killed in the middle of it."""

    def __init__(self, target: str, rate: int) -> None:
        host, port = target.rsplit(":", 1)
        self.target = (host, int(port))
        self.rate = rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.connections += [client, upstream]
            threading.Thread(target=self._serve, args=(client, upstream), daemon=True).start()

    def _serve(self, client: socket.socket, upstream: socket.socket) -> None:
        back = threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True)
        back.start()
        self._pump(client, upstream, self.rate)
        back.join()
        client.close()
        upstream.close()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, rate: int | None) -> None:
        started, sent = time.monotonic(), 0
        with contextlib.suppress(OSError):
            while chunk := source.recv(64 * 1024):
                sink.sendall(chunk)
                sent += len(chunk)
                if rate is not None and (ahead := sent / rate - (time.monotonic() - started)) > 0:
                    time.sleep(ahead)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def test_a_replica_killed_mid_push_and_dockers_retry_completes_it_on_another(
    docker: Docker,
    replicas: list[ProcessServer],
    balancer: Haproxy,
    tmp_path: Path,
) -> None:
    replicas[0].client().create_repository(repositoryName="cluster/kill")
    relay = ThrottledRelay(balancer.host, 12 * MiB)
    try:
        # acknowledged before: a small image through the load balancer
        before_as = f"{relay.host}/cluster/kill:before"
        docker_load(docker, small_image("cluster-kill-before"), before_as, tmp_path)
        before = pushed_digest(docker("push", before_as).stdout)

        # a 40 MiB layer streamed at 12 MiB/s: kill the replica receiving it after 12 MiB
        big = big_image("cluster-kill", layers=1, layer_size=40 * MiB)
        big_as = f"{relay.host}/cluster/kill:big"
        docker_load(docker, big, big_as, tmp_path)
        start = {name: int(row["bin"]) for name, row in balancer.server_stats().items()}
        killed: list[ProcessServer] = []

        def kill_the_receiver() -> None:
            deadline = time.monotonic() + 120
            while not killed and time.monotonic() < deadline:
                for name, row in balancer.server_stats().items():
                    if int(row["bin"]) - start[name] > 12 * MiB:
                        victim = replicas[int(name.removeprefix("r")) - 1]
                        assert victim.process is not None
                        victim.process.kill()  # SIGKILL
                        victim.process.wait()
                        killed.append(victim)
                        return
                time.sleep(0.02)

        killer = threading.Thread(target=kill_the_receiver)
        killer.start()
        pushed = docker("push", big_as).stdout
        killer.join()
        assert len(killed) == 1, "no replica was receiving the layer"
        digest = pushed_digest(pushed)
    finally:
        relay.close()

    survivors = [r for r in replicas if r is not killed[0]]
    # the layer went up again, whole, through a surviving replica (a new upload session)
    layers = httpx.get(
        f"{survivors[0].endpoint}/v2/cluster/kill/manifests/{digest}",
        headers={"Accept": MANIFEST_TYPES},
    ).json()["layers"]
    big_layer = max(layers, key=lambda d: d["size"])
    assert big_layer["size"] > 30 * MiB
    committed = [
        entry
        for survivor in survivors
        for entry in access_log(survivor)
        if entry["method"] == "PUT"
        and entry["status"] == 201
        and "/blobs/uploads/" in entry["path"]
    ]
    assert committed, "no surviving replica committed an upload"
    # haproxy marks a server DOWN after two failed checks (500 ms apart): the push may finish
    # before that (it went to a surviving replica at once, refused connections are redispatched)
    dead = f"r{replicas.index(killed[0]) + 1}"
    deadline = time.monotonic() + 15
    while not balancer.server_stats()[dead]["status"].startswith("DOWN"):
        assert time.monotonic() < deadline, balancer.server_stats()[dead]["status"]
        time.sleep(0.1)

    # every acknowledged image is intact, through each surviving replica and the balancer
    for endpoint in [r.endpoint for r in survivors] + [balancer.endpoint]:
        verify(endpoint, "cluster/kill", before)
        verify(endpoint, "cluster/kill", digest)
    docker("rmi", before_as, big_as)
    pulled = docker("pull", f"{balancer.host}/cluster/kill:big").stdout
    assert f"Digest: {digest}" in pulled
    docker("rmi", f"{balancer.host}/cluster/kill:big")
