"""What an operator sees: ``/healthz``, ``/readyz``, ``/metrics``, the access log, TLS, and a
TLS handshake on the plain-HTTP port named for what it is. Real servers, real clients."""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import logging
import re
import shutil
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from conftest import ServerFactory, make_image, upload_blob
from openecr.cli import serve
from openecr.config import ConfigError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of an exposition (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        sample, _, value = line.rpartition(" ")
        series, _, rest = sample.partition("{")
        if series != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(found.get(k) == v for k, v in labels.items()) and len(found) == len(labels):
            return float(value)
    return 0.0


# --- health ----------------------------------------------------------------------------------


def test_healthz_and_readyz(make_server: ServerFactory) -> None:
    server = make_server()
    live = httpx.get(f"{server.endpoint}/healthz")
    assert (live.status_code, live.json()) == (200, {"status": "ok"})
    ready = httpx.get(f"{server.endpoint}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "blobs": "ok"}}
    assert httpx.head(f"{server.endpoint}/readyz").status_code == 200
    assert httpx.post(f"{server.endpoint}/healthz").status_code == 405
    # the older path stays
    assert httpx.get(f"{server.endpoint}/openecr/health").status_code == 200


def test_readyz_fails_when_the_blob_store_cannot_be_written(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    blobs = tmp_path / "blobs"
    server = make_server("--blob-store", blobs.as_uri())
    assert httpx.get(f"{server.endpoint}/readyz").status_code == 200
    shutil.rmtree(blobs)
    blobs.write_text("not a directory")  # as a lost mount or a full disk would
    ready = httpx.get(f"{server.endpoint}/readyz")
    assert ready.status_code == 503
    doc = ready.json()
    assert doc["status"] == "not ready" and doc["checks"]["database"] == "ok"
    assert doc["checks"]["blobs"] != "ok"
    assert httpx.get(f"{server.endpoint}/healthz").status_code == 200  # still alive


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_after_a_push_and_a_pull(make_server: ServerFactory) -> None:
    server = make_server()
    ecr = server.client()
    ecr.create_repository(repositoryName="m/app")
    manifest = make_image(ecr, "m/app", seed="metrics", layers=2)
    ecr.put_image(repositoryName="m/app", imageManifest=manifest.decode(), imageTag="v1")
    v2 = f"{server.endpoint}/v2/m/app"
    accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
    pulled = httpx.get(f"{v2}/manifests/v1", headers=accept)
    assert pulled.status_code == 200
    layer = json.loads(manifest)["layers"][0]
    blob = httpx.get(f"{v2}/blobs/{layer['digest']}")
    assert blob.status_code == 200
    assert httpx.get(f"{v2}/manifests/nope").status_code == 404
    ecr.batch_get_image(repositoryName="m/app", imageIds=[{"imageTag": "v1"}])

    response = httpx.get(f"{server.endpoint}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    ops = {
        ("ecr", "CreateRepository", "200"): 1,
        ("ecr", "InitiateLayerUpload", "200"): 3,  # the config and two layers
        ("ecr", "PutImage", "200"): 1,
        ("ecr", "BatchGetImage", "200"): 1,
        ("oci", "GetManifest", "200"): 1,
        ("oci", "GetManifest", "404"): 1,
        ("oci", "GetBlob", "200"): 1,
    }
    for (api, operation, status), count in ops.items():
        assert metric(
            text, "openecr_requests_total", api=api, operation=operation, status=status
        ) == float(count), (api, operation, status)
    assert metric(
        text, "openecr_request_duration_seconds_count", api="ecr", operation="PutImage"
    ) == float(1)
    assert metric(text, "openecr_response_body_bytes_total", api="oci") >= len(
        pulled.content
    ) + len(blob.content)
    assert metric(text, "openecr_request_body_bytes_total", api="ecr") > len(manifest)
    assert metric(text, "openecr_image_pushes_total") == 1
    assert metric(text, "openecr_repositories") == 1
    assert metric(text, "openecr_images") == 1
    assert metric(text, "openecr_blobs") == 3
    assert metric(text, "openecr_blob_bytes") > 0
    assert metric(text, "openecr_uploads_in_progress") == 0
    assert "openecr_lifecycle_runs_total" in text and "openecr_gc_runs_total" in text


def test_metric_labels_come_from_a_bounded_set(make_server: ServerFactory) -> None:
    """Made-up targets and paths are counted as Unknown: a client cannot grow the series."""
    server = make_server()
    for i in range(3):
        httpx.post(
            server.endpoint + "/",
            headers={"X-Amz-Target": f"AmazonEC2ContainerRegistry_V20150921.Made{i}"},
            content=b"{}",
        )
        httpx.get(f"{server.endpoint}/made-up-{i}")
        httpx.request("TRACE", f"{server.endpoint}/v2/x/manifests/{i}")
    text = httpx.get(f"{server.endpoint}/metrics").text
    assert "Made0" not in text and "made-up" not in text
    assert metric(
        text, "openecr_requests_total", api="ecr", operation="Unknown", status="400"
    ) == float(3)
    assert metric(
        text, "openecr_requests_total", api="other", operation="Unknown", status="404"
    ) == float(3)
    assert metric(
        text, "openecr_requests_total", api="oci", operation="Unknown", status="405"
    ) == float(3)


def test_the_lifecycle_schedule_counts_its_runs(make_server: ServerFactory) -> None:
    server = make_server("--lifecycle-interval", "0.05")
    ecr = server.client()
    ecr.create_repository(repositoryName="m/lc")
    for tag in ("old", "new"):
        manifest = make_image(ecr, "m/lc", seed=tag)
        ecr.put_image(repositoryName="m/lc", imageManifest=manifest.decode(), imageTag=tag)
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ]
    }
    ecr.put_lifecycle_policy(repositoryName="m/lc", lifecyclePolicyText=json.dumps(policy))
    for _ in range(400):
        text = httpx.get(f"{server.endpoint}/metrics").text
        if metric(text, "openecr_lifecycle_images_total", outcome="expired") >= 1:
            break
    assert metric(text, "openecr_lifecycle_images_total", outcome="expired") == 1
    assert metric(text, "openecr_lifecycle_runs_total") >= 1
    assert metric(text, "openecr_images") == 1


def test_the_gc_schedule_counts_its_runs(make_server: ServerFactory) -> None:
    server = make_server("--gc-interval", "0.05", "--gc-grace", "0")
    ecr = server.client()
    ecr.create_repository(repositoryName="m/gc")
    upload_blob(ecr, "m/gc", b"a layer no image references")
    for _ in range(400):
        text = httpx.get(f"{server.endpoint}/metrics").text
        if metric(text, "openecr_gc_blobs_deleted_total") >= 1:
            break
    assert metric(text, "openecr_gc_blobs_deleted_total") == 1
    assert metric(text, "openecr_gc_bytes_reclaimed_total") == len(b"a layer no image references")
    assert metric(text, "openecr_gc_runs_total") >= 1
    assert metric(text, "openecr_blobs") == 0


# --- the access log --------------------------------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "openecr.access"]


def test_access_log_text(make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server("--access-log", "text")
    caplog.set_level(logging.INFO, logger="openecr.access")
    ecr = server.client(aws_access_key_id="AKIDLOGGED")
    ecr.create_repository(repositoryName="log/app")
    httpx.get(f"{server.endpoint}/v2/log/app/tags/list?n=5")
    httpx.get(f'{server.endpoint}/v2/log/app/manifests/a"b%0Ac')
    lines = access_lines(caplog)
    assert len(lines) == 3, lines
    pattern = re.compile(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z 127\.0\.0\.1:\d+ 123456789012 AKIDLOGGED "
        r'"POST /" CreateRepository 200 \d+ \d+\.\dms'
    )
    assert pattern.fullmatch(lines[0]), lines[0]
    assert re.fullmatch(
        r'\S+ 127\.0\.0\.1:\d+ 123456789012 - "GET /v2/log/app/tags/list" ListTags 200 \d+ \S+ms',
        lines[1],
    ), lines[1]  # no query string (signed URLs carry their signature there)
    assert "\n" not in lines[2] and '\\"' in lines[2] and "\\n" in lines[2]
    assert " GetManifest 4" in lines[2]


def test_access_log_json(make_server: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    server = make_server("--access-log", "json")
    caplog.set_level(logging.INFO, logger="openecr.access")
    server.client().create_repository(repositoryName="log/json")
    httpx.get(f"{server.endpoint}/v2/log/json/manifests/latest")
    httpx.get(f"{server.endpoint}/healthz")
    first, second, third = (json.loads(line) for line in access_lines(caplog))
    assert first["operation"] == "CreateRepository" and first["api"] == "ecr"
    assert first["status"] == 200 and first["account"] == "123456789012"
    assert first["principal"] == "AKIDEXAMPLE" and first["method"] == "POST"
    assert first["bytes"] > 0 and first["bytes_in"] > 0 and first["duration_ms"] > 0
    assert first["client"].startswith("127.0.0.1:")
    assert (second["api"], second["operation"], second["status"]) == ("oci", "GetManifest", 404)
    assert (third["api"], third["operation"], third["path"]) == ("ops", "Healthz", "/healthz")
    assert set(first) == {
        "time",
        "client",
        "account",
        "principal",
        "method",
        "path",
        "api",
        "operation",
        "status",
        "bytes",
        "bytes_in",
        "duration_ms",
    }


def test_access_log_names_the_token_account_on_v2(
    make_server: ServerFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    credentials = tmp_path / "credentials.toml"
    credentials.write_text(
        '[[credentials]]\naccess_key_id = "AKIDLOG"\nsecret_access_key = "s"\n'
        'account_id = "222222222222"\n'
    )
    server = make_server("--credentials", str(credentials), "--access-log", "json")
    caplog.set_level(logging.INFO, logger="openecr.access")
    ecr = server.client(aws_access_key_id="AKIDLOG", aws_secret_access_key="s")
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    httpx.get(f"{server.endpoint}/v2/", headers={"Authorization": f"Basic {token}"})
    httpx.get(f"{server.endpoint}/v2/")
    token_call, with_token, anonymous = (json.loads(line) for line in access_lines(caplog))
    # with --credentials, the principal the signature proved
    assert token_call["account"] == "222222222222"
    assert token_call["principal"].startswith("arn:aws:iam::222222222222:")
    assert (with_token["account"], with_token["principal"]) == (
        "222222222222",
        "token:222222222222",
    )
    assert (anonymous["status"], anonymous["account"], anonymous["principal"]) == (401, "-", "-")


def test_in_process_servers_keep_the_access_log_off(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    caplog.set_level(logging.INFO, logger="openecr.access")
    httpx.get(f"{server.endpoint}/healthz")
    assert access_lines(caplog) == []


# --- TLS -------------------------------------------------------------------------------------


def make_certificates(directory: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate it signs for ``names`` (DNS names or IP addresses):
    (ca.crt, server.crt, server.key), PEM."""
    now = datetime.datetime.now(datetime.UTC)

    def build(
        subject: str, issuer: x509.Name | None, key: Any, signer: Any, ca: bool, sans: list[str]
    ) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if sans:
            alt: list[x509.GeneralName] = []
            for entry in sans:
                try:
                    alt.append(x509.IPAddress(ipaddress.ip_address(entry)))
                except ValueError:
                    alt.append(x509.DNSName(entry))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("openecr test CA", None, ca_key, ca_key, True, [])
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(names[0], ca_cert.subject, key, ca_key, False, names)
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = (directory / n for n in ("ca.crt", "server.crt", "server.key"))
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_path, cert_path, key_path


def test_tls_with_a_certificate_made_here(make_server: ServerFactory, tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path / "tls", ["localhost", "127.0.0.1"])
    server = make_server("--tls-cert", str(cert), "--tls-key", str(key))
    assert server.endpoint.startswith("https://")
    ecr = server.client(verify=str(ca))
    created = ecr.create_repository(repositoryName="tls/app")["repository"]
    assert created["repositoryUri"] == f"127.0.0.1:{server.port}/tls/app"
    token = ecr.get_authorization_token()["authorizationData"][0]
    assert token["proxyEndpoint"] == f"https://127.0.0.1:{server.port}"
    verified = ssl.create_default_context(cafile=str(ca))
    with httpx.Client(verify=verified) as client:
        assert client.get(f"{server.endpoint}/v2/tls/app/tags/list").json()["name"] == "tls/app"
        assert client.get(f"https://localhost:{server.port}/readyz").status_code == 200
    with pytest.raises(httpx.ConnectError):  # not trusted without the CA
        httpx.get(f"{server.endpoint}/healthz")
    with pytest.raises(httpx.HTTPError):  # and no plain HTTP on that port
        httpx.get(f"http://127.0.0.1:{server.port}/healthz")


def test_tls_options_are_checked(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    for args, message in (
        (["--tls-cert", str(cert)], "both a certificate and its key"),
        (["--tls-key", str(cert)], "both a certificate and its key"),
        (["--tls-cert", str(cert), "--tls-key", str(tmp_path / "no")], "cannot read TLS file"),
    ):
        with pytest.raises(ConfigError, match=message):
            serve.config_from_args(parser.parse_args(args), {})
    with pytest.raises(ConfigError, match="access log"):
        serve.config_from_args(parser.parse_args([]), {"OPENECR_ACCESS_LOG": "xml"})
    config = serve.config_from_args(
        parser.parse_args([]),
        {"OPENECR_TLS_CERT": str(cert), "OPENECR_TLS_KEY": str(cert), "OPENECR_ACCESS_LOG": "json"},
    )
    assert (config.tls_cert, config.tls_key, config.access_log) == (cert, cert, "json")
    assert "https://" in serve.banner(config, "0.0.0.0", 443)


def test_a_tls_handshake_on_the_plain_port_is_named_once_per_client(
    make_server: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = make_server()
    caplog.set_level(logging.DEBUG, logger="openecr.http")
    caplog.set_level(logging.DEBUG, logger="uvicorn.error")
    context = ssl.create_default_context()
    for _ in range(3):  # what docker does on each push and pull
        with (
            socket.create_connection(("127.0.0.1", server.port)) as raw,
            pytest.raises(ssl.SSLError),
        ):
            context.wrap_socket(raw, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", server.port)) as raw:
        raw.sendall(b"\x16\x03\x01\x00\x05hello")
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"plain HTTP, not TLS" in answer
    notices = [r for r in caplog.records if "tried TLS" in r.getMessage()]
    assert [r.levelname for r in notices] == ["WARNING", "DEBUG", "DEBUG", "DEBUG"]
    assert "a client at 127.0.0.1 tried TLS (HTTPS) on this plain-HTTP port" in (
        notices[0].getMessage()
    )
    assert not [r for r in caplog.records if "Invalid HTTP request" in r.getMessage()]
    assert httpx.get(f"{server.endpoint}/healthz").status_code == 200  # plain HTTP still works


# --- every option says what it does ----------------------------------------------------------


def test_every_serve_option_has_help_text() -> None:
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    for action in parser._actions:
        if action.dest == "help":
            continue
        text = (action.help or "").strip()
        # more than a default in parentheses: what the option does
        assert len(re.sub(r"\([^)]*\)", "", text).strip()) >= 10, (action.option_strings, text)


def test_access_lines_of_one_loop_turn_are_written_together() -> None:
    """On an event loop the lines of one turn go out in one write at the next turn; off a
    loop each at once; and whatever waits is written by ``flush`` (logging's exit)."""
    import asyncio
    import os

    from openecr.api.observe import AccessLogHandler

    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    handler = AccessLogHandler()
    stream = os.fdopen(write_end, "w", buffering=1)
    handler.setStream(stream)

    def written() -> bytes:
        try:
            return os.read(read_end, 65536)
        except BlockingIOError:
            return b""

    async def on_the_loop() -> tuple[bytes, bytes, bytes]:
        handler.write_line("one\n")
        handler.write_line("two\n")
        before = written()
        await asyncio.sleep(0)
        after = written()
        handler.write_line("three\n")
        handler.flush()
        return before, after, written()

    try:
        assert asyncio.run(on_the_loop()) == (b"", b"one\ntwo\n", b"three\n")
        handler.write_line("off the loop\n")
        assert written() == b"off the loop\n"
    finally:
        handler.close()
        stream.close()
        os.close(read_end)
