"""docker pulls and runs a Docker v2 schema 1 image that openecr signs on the fly (spec 3.2).

The schema 1 manifest is openecr's own conversion of a schema 2 image (BatchGetImage with
``acceptedMediaTypes=[v1+json]``), stored unsigned through PutImage. docker accepts only the
signed form (``v1+prettyjws``), so openecr serves it signed with the registry key, by tag and by
digest (the digest, over the payload, is the stored one), and docker's libtrust parser, its
schema 1 pull path and the image it builds from ``v1Compatibility`` must all work.
"""

from __future__ import annotations

import json

from conftest import upload_blob
from e2e.conftest import Docker, Registry, unique
from e2e.images import small_image

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def test_docker_pulls_and_runs_a_schema1_image_signed_on_the_fly(
    registry: Registry, docker: Docker
) -> None:
    repo = unique("schema1")
    remote = registry.create_repository(repo)
    ecr = registry.ecr()
    image = small_image(repo)
    for digest, blob in image.blobs().items():
        assert upload_blob(ecr, repo, blob) == digest
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="schema2")
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "schema2"}], acceptedMediaTypes=[SCHEMA1]
    )
    [converted] = got["images"]
    assert converted["imageManifestMediaType"] == SCHEMA1
    assert json.loads(converted["imageManifest"])["schemaVersion"] == 1
    stored = ecr.put_image(
        repositoryName=repo,
        imageManifest=converted["imageManifest"],
        imageManifestMediaType=SCHEMA1,
        imageTag="v1",
    )
    digest = stored["image"]["imageId"]["imageDigest"]

    for reference in (f"{remote}:v1", f"{remote}@{digest}"):
        mark = registry.proxy.mark()
        assert f"Digest: {digest}" in docker("pull", reference).stdout
        served = [
            e
            for e in registry.proxy.since(mark)
            if e.method == "GET" and e.path.startswith(f"/v2/{repo}/manifests/") and e.status == 200
        ]
        assert served, "docker fetched no manifest"
        assert {e.response_headers["content-type"] for e in served} == {SCHEMA1_SIGNED}
        run = docker("run", "--rm", "--network", "none", reference)
        assert run.stdout == f"{repo}\n"
        docker("rmi", reference)
