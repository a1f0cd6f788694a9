"""``openecr serve --tls-cert --tls-key`` with a CA made here: skopeo pushes and pulls with TLS
verification on (it verifies even on loopback), and refuses the server without the CA."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ProcessServer, free_port
from e2e.conftest import SKOPEO, CommandFailed, run
from e2e.images import small_image
from test_observability import make_certificates

pytestmark = pytest.mark.slow  # starts openecr serve and skopeo


def test_skopeo_pushes_and_pulls_over_verified_tls(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    server = ProcessServer(
        tmp_path / "data", free_port(), ["--tls-cert", str(cert), "--tls-key", str(key)]
    )
    server.start()
    try:
        server.client(verify=str(ca)).create_repository(repositoryName="tls/app")
        certs = tmp_path / "certs"  # skopeo reads the CAs of a --cert-dir from its *.crt files
        certs.mkdir()
        (certs / "ca.crt").write_bytes(ca.read_bytes())
        image = small_image("tls")
        source = f"dir:{image.write_dir(tmp_path / 'source')}"
        target = f"docker://127.0.0.1:{server.port}/tls/app:v1"
        with pytest.raises(CommandFailed, match="certificate"):
            run([SKOPEO, "copy", source, target])  # the CA is not trusted
        push = [SKOPEO, "copy", "--preserve-digests", "--dest-cert-dir", str(certs)]
        run([*push, source, target])
        pulled = tmp_path / "pulled"
        run([SKOPEO, "copy", "--src-cert-dir", str(certs), target, f"dir:{pulled}"])
        assert (pulled / "manifest.json").read_bytes() == image.manifest
        inspected = run(
            [SKOPEO, "inspect", "--cert-dir", str(certs), "--format", "{{.Digest}}", target]
        )
        assert inspected.stdout.strip() == image.digest
    finally:
        server.stop()
    assert server.log is not None
    assert '"PUT /v2/tls/app/manifests/v1" PutManifest 201' in server.log.read_text()
