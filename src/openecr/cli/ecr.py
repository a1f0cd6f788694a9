"""``openecr <ecr command>``: the aws CLI's ``ecr`` commands, against a server or the local store.

The aws CLI (v1) builds every command and option from botocore's ECR model and formats output;
openecr runs that same driver, so stdout and exit codes are those of ``aws ecr``. With no
endpoint configured (``--endpoint-url``, ``AWS_ENDPOINT_URL_ECR``, ``AWS_ENDPOINT_URL`` or a
profile's ``endpoint_url``), requests never leave the process: a ``before-send`` handler answers
them with :func:`openecr.api.ecr.protocol.handle` on the store in ``--data-dir``.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

LOCAL_ENDPOINT = "http://localhost:5000"
_DEFAULT_REGION = "us-east-1"


class _RawBody(io.BytesIO):
    """The raw body botocore reads a response from."""

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def _pop_option(args: list[str], name: str) -> str | None:
    """Remove ``name VALUE`` or ``name=VALUE`` from ``args`` and return VALUE."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            value = args[i + 1]
            del args[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del args[i]
            return arg.split("=", 1)[1]
    return None


def _endpoint_configured(args: Sequence[str], env: MutableMapping[str, str]) -> bool:
    if any(a == "--endpoint-url" or a.startswith("--endpoint-url=") for a in args):
        return True
    if env.get("AWS_ENDPOINT_URL_ECR") or env.get("AWS_ENDPOINT_URL"):
        return True
    try:
        import botocore.session

        scoped = botocore.session.Session(profile=env.get("AWS_PROFILE")).get_scoped_config()
    except Exception:  # an unreadable profile is the aws CLI's to report, not ours
        return False
    ecr_section = scoped.get("ecr")
    return bool(
        scoped.get("endpoint_url")
        or (isinstance(ecr_section, dict) and ecr_section.get("endpoint_url"))
    )


def _local_handler(data_dir: str | None) -> Any:
    """A before-send handler that serves requests from the local store."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    from openecr.api.ecr import protocol
    from openecr.bootstrap import build_runtime
    from openecr.config import from_env
    from openecr.service.registry import Caller

    registries: list[Any] = []  # built on the first request: --help and skeletons need no store

    def before_send(request: Any, **_kwargs: Any) -> AWSResponse:
        from urllib.parse import urlsplit

        if not registries:
            registries.append(build_runtime(from_env(data_dir=data_dir)).registry)
        registry = registries[0]

        url = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        caller = Caller(registry.settings.default_account, url.netloc, url.scheme or "http")
        target = request.headers.get("X-Amz-Target")
        if isinstance(target, bytes):
            target = target.decode()
        rendered = protocol.handle(registry, caller, target, body or b"")
        headers = HTTPHeaders()
        headers["Content-Type"] = protocol.CONTENT_TYPE
        headers["x-amzn-RequestId"] = rendered.request_id
        headers["Content-Length"] = str(len(rendered.body))
        for key, value in rendered.headers.items():
            headers[key] = value
        return AWSResponse(request.url, rendered.status, headers, _RawBody(rendered.body))

    return before_send


def run(argv: Sequence[str]) -> int:
    """Run ``aws ecr <argv>`` with openecr's defaults; return its exit code."""
    from awscli.clidriver import create_clidriver

    args = list(argv)
    data_dir = _pop_option(args, "--data-dir")
    env = os.environ
    local = not _endpoint_configured(args, env)
    if not (env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION")):
        env["AWS_DEFAULT_REGION"] = env.get("OPENECR_REGION") or _DEFAULT_REGION
    driver = create_clidriver()
    # Any credentials do for a server without a credentials file, and for the local store.
    if driver.session.get_credentials() is None:
        env["AWS_ACCESS_KEY_ID"] = "openecr"
        env["AWS_SECRET_ACCESS_KEY"] = "openecr"
    if local:
        args = [*args, "--endpoint-url", LOCAL_ENDPOINT]
        handler = _local_handler(data_dir)
        driver.session.register("before-send.ecr", handler)
    return int(driver.main(["ecr", *args]))
