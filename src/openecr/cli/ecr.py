"""``openecr <ecr command>``: the aws CLI's ``ecr`` commands, against a server or the local store.

The aws CLI (v1) builds every command and option from botocore's ECR model and formats output;
openecr runs that same driver with ``ecr`` as the service, so parsing, shorthand, skeletons,
``--query`` and ``--output`` are the aws CLI's own, and stdout and exit codes are those of
``aws ecr``. What openecr changes:

* **Local mode.** With no endpoint configured (``--endpoint-url``, ``AWS_ENDPOINT_URL_ECR``,
  ``AWS_ENDPOINT_URL``, or the profile's ``endpoint_url`` / ``services`` section, unless
  ``ignore_configured_endpoint_urls`` is set), requests never leave the process: the endpoint
  becomes :data:`LOCAL_ENDPOINT` and a ``before-send`` handler answers each request with
  :func:`openecr.api.ecr.protocol.handle` on the store in ``--data-dir`` (else
  ``OPENECR_DATA_DIR``, else ``./.openecr``). Credentials are not resolved at all there.
* **Credentials.** Against a server, the usual chain is used minus the EC2 instance-metadata
  probe (its temporary credentials can never be an openecr key), and when nothing resolves
  the dummy key ``openecr``/``openecr`` is used (good for servers without ``--credentials``).
* **Region.** When none is configured, ``OPENECR_REGION`` or ``us-east-1``.
* **Names.** Usage and error texts on stderr say ``openecr``; ``--version`` names openecr.

Decisions are settled once the aws CLI has parsed its global options and applied ``--profile``
and ``--region`` (the ``session-initialized`` event), so every spelling argparse accepts is
honoured.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from openecr import __version__

LOCAL_ENDPOINT = "http://localhost:5000"
DEFAULT_REGION = "us-east-1"
DUMMY_KEY = "openecr"

USAGE = (
    "openecr [--data-dir DIR] [options] <command> [parameters]\n"
    "       openecr serve [--host HOST] [--port PORT] [--data-dir DIR] ...\n"
    "Commands are those of `aws ecr`. To see help text, you can run:\n"
    "\n"
    "  openecr help\n"
    "  openecr <command> help\n"
    "  openecr serve --help\n"
)


class DataDirError(ValueError):
    """``--data-dir`` was given without a value."""


class _RawBody(io.BytesIO):
    """The raw body botocore reads a response from."""

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        chunk = self.read()
        while chunk:
            yield chunk
            chunk = self.read()


def _header_map(headers: Any) -> dict[str, str]:
    """A prepared request's headers, names lower-cased and values as text."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        found[str(name).lower()] = text
    return found


def pop_data_dir(args: list[str]) -> str | None:
    """Remove ``--data-dir DIR`` / ``--data-dir=DIR`` from ``args`` and return DIR (the last
    one wins). Raises DataDirError when the value is missing."""
    found: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--data-dir":
            if i + 1 >= len(args):
                raise DataDirError("argument --data-dir: expected one argument")
            found = args[i + 1]
            del args[i : i + 2]
        elif arg.startswith("--data-dir="):
            found = arg.split("=", 1)[1]
            del args[i]
        else:
            i += 1
    return found


class LocalStore:
    """The local store, opened on the first request (help and skeletons never open it)."""

    def __init__(self, data_dir: str | None) -> None:
        self._data_dir = data_dir
        self._runtime: Any = None

    def before_send(self, request: Any, **_kwargs: Any) -> Any:
        """The ``before-send`` handler: answer ``request`` in-process."""
        from urllib.parse import urlsplit

        from botocore.awsrequest import AWSResponse
        from botocore.compat import HTTPHeaders

        from openecr.api.ecr import protocol
        from openecr.api.sigv4 import request_region
        from openecr.errors import OpenEcrError
        from openecr.service.registry import Caller

        if self._runtime is None:
            from openecr.bootstrap import build_runtime
            from openecr.config import from_env

            self._runtime = build_runtime(from_env(data_dir=self._data_dir))
        registry = self._runtime.registry

        url = urlsplit(request.url)
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        if isinstance(body, str):
            body = body.encode()
        target = request.headers.get("X-Amz-Target")
        if isinstance(target, bytes):
            target = target.decode()
        rendered = None
        try:  # the region botocore signed for (``--region``, the profile's, OPENECR_REGION)
            region = request_region(_header_map(request.headers), registry.settings.region)
        except OpenEcrError as error:
            rendered = protocol.error_response(error, protocol.new_request_id())
        if rendered is None:
            caller = Caller(
                registry.settings.default_account, url.netloc, url.scheme or "http", region
            )
            rendered = protocol.handle(registry, caller, target, body or b"")
        headers = HTTPHeaders()
        headers["Content-Type"] = protocol.CONTENT_TYPE
        headers["x-amzn-RequestId"] = rendered.request_id
        headers["Content-Length"] = str(len(rendered.body))
        for key, value in rendered.headers.items():
            headers[key] = value
        return AWSResponse(request.url, rendered.status, headers, _RawBody(rendered.body))

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None


def configured_endpoint(session: Any) -> str | None:
    """The ECR endpoint botocore would take from the environment or the shared config, as
    ``aws ecr`` resolves it (``--endpoint-url`` aside). Raises botocore errors for an
    unreadable profile."""
    from botocore.configprovider import ConfiguredEndpointProvider

    if session.get_config_variable("ignore_configured_endpoint_urls"):
        return None
    provider = ConfiguredEndpointProvider(
        full_config=session.full_config,
        scoped_config=session.get_scoped_config(),
        client_name="ecr",
    )
    endpoint: str | None = provider.provide()
    return endpoint


def _fallback_credentials() -> Any:
    from botocore.credentials import CredentialProvider, Credentials

    class FallbackProvider(CredentialProvider):
        """Last in the chain: the dummy key, when nothing else resolves."""

        METHOD = "openecr-default"
        CANONICAL_NAME = "customOpenEcrDefault"

        def load(self) -> Credentials:
            return Credentials(DUMMY_KEY, DUMMY_KEY, method=self.METHOD)

    return FallbackProvider()


class Setup:
    """The ``session-initialized`` handler: picks local or remote mode, credentials, region."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store

    def __call__(self, session: Any, parsed_args: Any, **_kwargs: Any) -> None:
        from botocore.exceptions import BotoCoreError

        try:
            if session.get_config_variable("region") is None:
                session.set_config_variable(
                    "region", os.environ.get("OPENECR_REGION") or DEFAULT_REGION
                )
            if parsed_args.endpoint_url is None and not configured_endpoint(session):
                parsed_args.endpoint_url = LOCAL_ENDPOINT
                session.set_credentials(DUMMY_KEY, DUMMY_KEY)  # nothing checks them here
                session.register("before-send.ecr", self.store.before_send)
                return
            resolver = session.get_component("credential_provider")
        except BotoCoreError:
            return  # a broken profile or config: the aws CLI reports it as usual
        # No instance-metadata probe (it leaves the host, and its keys are never openecr's);
        # the dummy key last, for when nothing else resolves.
        if any(p.METHOD == "iam-role" for p in resolver.providers):
            resolver.remove("iam-role")
        resolver.providers.append(_fallback_credentials())


def version_string(session: Any) -> str:
    return f"openecr/{__version__} {session.user_agent()}"


def _driver() -> Any:
    import awscli.argparser
    import awscli.clidriver
    from awscli.argparser import MainArgParser

    # Usage texts go to stderr only; say the command the user typed.
    awscli.argparser.USAGE = USAGE
    awscli.clidriver.USAGE = USAGE

    class Driver(awscli.clidriver.CLIDriver):  # type: ignore[misc]
        def _create_parser(self, command_table: dict[str, Any]) -> Any:
            command_table["help"] = self.create_help_command()
            return MainArgParser(
                command_table,
                version_string(self.session),
                self._get_cli_data().get("description", None),
                self._get_argument_table(),
                prog="openecr",
            )

    plain = awscli.clidriver.create_clidriver()
    return Driver(session=plain.session)


def run(argv: Sequence[str]) -> int:
    """Run ``aws ecr <argv>`` with openecr's defaults; return its exit code."""
    args = list(argv)
    try:
        data_dir = pop_data_dir(args)
    except DataDirError as error:
        sys.stderr.write(f"usage: {USAGE}openecr: error: {error}\n")
        return 2
    if os.environ.get("LC_CTYPE", "") == "UTF-8":  # as the ``aws`` script does
        os.environ["LC_CTYPE"] = "en_US.UTF-8"

    from awscli.clidriver import HISTORY_RECORDER

    driver = _driver()
    store = LocalStore(data_dir)
    driver.session.register("session-initialized", Setup(store))
    try:
        rc = driver.main(["ecr", *args])
    finally:
        store.close()
    HISTORY_RECORDER.record("CLI_RC", rc, "CLI")
    return 0 if rc is None else int(rc)
