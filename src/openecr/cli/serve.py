"""``openecr serve``: run the registry over HTTP.

With ``--workers 1`` (the default) one process builds the app and serves it. With ``--workers
N`` the process exports its validated configuration as ``OPENECR_*`` variables
(:meth:`openecr.config.Config.environ`), has a child process create everything the workers
share (the data directory, the metadata schema, the secret) once, and becomes uvicorn's (or
granian's) supervisor: N worker processes accept on the one socket, each building its own
runtime with :func:`openecr.bootstrap.app_from_env`. The supervisor never loads the app.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from openecr.config import (
    ACCESS_LOG_FORMATS,
    LOG_LEVELS,
    Config,
    ConfigError,
    from_env,
    log_to_stderr,
)

if TYPE_CHECKING:
    from starlette.types import ASGIApp

GRACEFUL_SHUTDOWN_SECONDS = 5
SERVERS = ("uvicorn", "granian")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--data-dir", help="where metadata and blobs live (./.openecr)")
    parser.add_argument(
        "--database-url",
        help="the metadata store: sqlite:///path (default: in the data dir), "
        "postgresql+psycopg://USER:PASS@HOST/DB (pip install 'openecr[postgres]') "
        "or memory:// (for tests)",
    )
    parser.add_argument(
        "--blob-store",
        help="where blobs live: file:///path (default: the data dir), s3://BUCKET[/PREFIX] "
        "(an S3-compatible object store) or memory:// (for tests)",
    )
    parser.add_argument(
        "--s3-endpoint-url",
        help="the S3 endpoint of an s3:// blob store (default: AWS_ENDPOINT_URL_S3, "
        "AWS_ENDPOINT_URL, else AWS)",
    )
    parser.add_argument(
        "--s3-path-style",
        action="store_true",
        default=None,
        help="path-style S3 addressing (http://host/BUCKET/key), for servers that need it",
    )
    parser.add_argument(
        "--blob-redirect",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="answer /v2 blob GETs with a 307 to the blob store's presigned URL (default: on "
        "with S3) or serve the bytes here (--no-blob-redirect)",
    )
    parser.add_argument("--account-id", help="the default account (123456789012)")
    parser.add_argument("--region", help="the default region, of unsigned requests (us-east-1)")
    parser.add_argument(
        "--registry-host",
        help="host in repositoryUri/proxyEndpoint, with {account} and {region} placeholders "
        "(default: the host and port the client used)",
    )
    parser.add_argument(
        "--lenient-manifests",
        action="store_true",
        default=None,
        help="accept manifests whose layers, config or children are not stored",
    )
    parser.add_argument(
        "--create-on-push",
        action="store_true",
        default=None,
        help="create a missing repository when an image is pushed to it over /v2",
    )
    parser.add_argument(
        "--credentials",
        help=(
            "TOML file of access keys (and their principals); turns on SigV4 and token checks "
            "and enforces repository and registry policies"
        ),
    )
    parser.add_argument(
        "--workers",
        type=int,
        help="server processes sharing the port, e.g. one per core (1)",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        help="the HTTP server: uvicorn (the default) or granian (Rust; sends whole blobs "
        "without reading them into Python)",
    )
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="how much the server logs besides the access log (info)",
    )
    parser.add_argument(
        "--access-log",
        choices=ACCESS_LOG_FORMATS,
        help="one line per request on stderr, as text or JSON, or off (text)",
    )
    parser.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (chain); needs --tls-key",
    )
    parser.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    parser.add_argument(
        "--lifecycle-interval",
        type=float,
        help="seconds between lifecycle policy runs (3600; 0 turns them off)",
    )
    parser.add_argument(
        "--gc-interval",
        type=float,
        help="seconds between garbage collections of unreferenced blobs and expired upload "
        "sessions (3600; 0 turns them off)",
    )
    parser.add_argument(
        "--gc-grace",
        type=float,
        help="seconds an unreferenced blob is kept after it was last stored, so pushes in "
        "flight keep their blobs (3600)",
    )
    parser.add_argument(
        "--upload-expiry",
        type=float,
        help="seconds of inactivity after which an upload session expires (86400)",
    )
    parser.add_argument(
        "--no-pull-times",
        dest="pull_times",
        action="store_false",
        default=None,
        help="do not record images' lastRecordedPullTime (pulls write nothing)",
    )
    parser.add_argument(
        "--replication-peers",
        help="TOML file mapping (account, region) registries served by other openecr servers "
        "to their endpoint and credentials, for replication",
    )
    parser.add_argument(
        "--replication-lease",
        type=float,
        help="seconds a replication worker holds a task without progress before another "
        "worker (or this server restarted) takes it over (60)",
    )
    parser.add_argument(
        "--replication-chunk",
        type=int,
        help="bytes each upload request to a replication peer carries (8388608)",
    )
    parser.add_argument(
        "--vulnerability-db",
        metavar="DIR",
        help="directory of OSV JSON records (any depth) that image scans match OS packages "
        "against; without one, scans end FAILED",
    )
    parser.add_argument(
        "--secrets",
        help="TOML file of pull-through cache secrets: [[secrets]] with arn, username and "
        "accessToken (what a rule's credentialArn names)",
    )
    parser.add_argument(
        "--pull-through-ttl",
        type=float,
        help="seconds a pull-through cached tag is served before the upstream is asked "
        "again (86400)",
    )


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """The validated Config of ``openecr serve`` with ``args`` (parsed by a parser given
    :func:`add_arguments`) and ``env`` (default ``os.environ``); raises ConfigError."""
    return from_env(
        env,
        data_dir=args.data_dir,
        database_url=args.database_url,
        blob_store=args.blob_store,
        s3_endpoint_url=args.s3_endpoint_url,
        s3_path_style=args.s3_path_style,
        blob_redirect=args.blob_redirect,
        account_id=args.account_id,
        region=args.region,
        registry_host=args.registry_host,
        lenient_manifests=args.lenient_manifests,
        create_on_push=args.create_on_push,
        credentials_file=args.credentials,
        workers=args.workers,
        log_level=args.log_level,
        lifecycle_interval=args.lifecycle_interval,
        pull_times=args.pull_times,
        replication_peers_file=args.replication_peers,
        replication_lease=args.replication_lease,
        replication_chunk=args.replication_chunk,
        vulnerability_db=args.vulnerability_db,
        gc_interval=args.gc_interval,
        gc_grace=args.gc_grace,
        upload_expiry=args.upload_expiry,
        access_log=args.access_log,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        secrets_file=args.secrets,
        pull_through_ttl=args.pull_through_ttl,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"openecr: --port must be 0 to 65535, not {args.port}", file=sys.stderr)
        return 2
    server = getattr(args, "server", None) or os.environ.get("OPENECR_SERVER") or "uvicorn"
    if server not in SERVERS:
        print(
            f"openecr: OPENECR_SERVER must be uvicorn or granian, not {server!r}", file=sys.stderr
        )
        return 2
    if server == "granian" or config.workers > 1:
        # a supervisor: it serves no request, so it loads neither the app nor the store (a
        # child process prepares the store, each worker builds its own runtime)
        log_to_stderr(config.log_level)
        if server == "granian":
            return _run_granian(config, args.host, args.port)
        return _run_workers(config, args.host, args.port)
    # imported once the configuration is known to be good: a bad one is refused at once
    import uvicorn

    from openecr.bootstrap import build_app, build_runtime, freeze_heap, setup_logging

    setup_logging(config)
    try:
        runtime = build_runtime(config)
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # the data directory cannot be made, read or written
        where = error.filename or config.data_dir
        print(f"openecr: cannot use {where}: {error.strerror or error}", file=sys.stderr)
        return 2
    from openecr.api.draining import Drain, DrainingApp

    drain = Drain()
    app = DrainingApp(build_app(runtime), drain)
    logging.getLogger("openecr").info("%s", banner(config, args.host, args.port))
    freeze_heap()

    class DrainingServer(uvicorn.Server):
        """uvicorn's server that, on Ctrl-C or SIGTERM, first drains (see ``Drain``)."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            drain.start()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                # a drained stop is a clean exit: uvicorn would raise the signal again once
                # done (a KeyboardInterrupt traceback, or death by SIGTERM before the runtime
                # is closed)
                self._captured_signals.clear()

    server = DrainingServer(
        uvicorn.Config(app, host=args.host, port=args.port, **uvicorn_options(config))
    )
    try:
        server.run()
    finally:
        runtime.close()
    return 0 if server.started else 3  # uvicorn's code for a server that did not start


def uvicorn_options(config: Config) -> dict[str, Any]:
    """uvicorn's settings for ``config``: HTTPS with its certificate, else plain HTTP that
    names TLS handshakes for what they are (:mod:`openecr.api.plain_port`)."""
    options: dict[str, Any] = {
        "log_level": config.log_level,
        "access_log": False,  # openecr writes its own (openecr.api.observe)
        "server_header": False,  # like ECR and distribution: no "server: uvicorn"
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
    }
    if config.tls_cert is not None:
        options["ssl_certfile"] = str(config.tls_cert)
        options["ssl_keyfile"] = str(config.tls_key)
    else:
        options["http"] = "openecr.api.plain_port:PlainPortProtocol"
    return options


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@/]*@", r"://\1:***@", url)


def banner(config: Config, host: str, port: int, server: str = "uvicorn") -> str:
    """What a starting server says about itself: where, on what data, as whom."""
    from openecr import __version__

    auth = "on" if config.credentials else "off (any credentials act in the default account)"
    scheme = "https" if config.tls_cert is not None else "http"
    return (
        f"openecr {__version__} on {scheme}://{host}:{port}: data dir "
        f"{config.data_dir.absolute()}, "
        f"metadata {_hide_password(config.metadata_url)}, blobs {config.blob_store_url}, account "
        f"{config.account_id}, region {config.region}, authentication {auth}, "
        f"{config.workers} {server} worker(s), access log {config.access_log}; health at "
        "/healthz and /readyz, metrics at /metrics"
    )


def _prepare_workers(config: Config, host: str, port: int, server: str = "uvicorn") -> str | None:
    """What a supervisor does before its worker processes start: export the configuration
    for :func:`worker_app`, make the data directory, the schema and the secret once in a
    child process (:func:`prepare_store`; N workers starting together then only find them,
    and the supervisor never loads the store's code), and return the directory where each
    worker counts its metrics (each /metrics sums them all; the caller removes it). None when
    the store cannot be prepared (the child said why on stderr)."""
    logging.getLogger("openecr").info("%s", banner(config, host, port, server))
    for name, value in config.environ().items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    code = "from openecr.cli.serve import prepare_store; prepare_store()"
    if subprocess.run([sys.executable, "-c", code], check=False).returncode != 0:
        return None
    metrics_dir = tempfile.mkdtemp(prefix="openecr-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    return metrics_dir


def prepare_store() -> None:
    """Build and close the runtime of the ``OPENECR_*`` configuration (see
    :func:`_prepare_workers`); exit status 2, with the reason on stderr, when it cannot."""
    from openecr.bootstrap import build_runtime

    try:
        build_runtime(from_env()).close()
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as error:  # the data directory cannot be made, read or written
        where = error.filename or os.environ.get("OPENECR_DATA_DIR", "")
        print(f"openecr: cannot use {where}: {error.strerror or error}", file=sys.stderr)
        raise SystemExit(2) from None


def _run_granian(config: Config, host: str, port: int) -> int:
    """granian's supervisor and ``config.workers`` worker processes (each builds its own
    runtime, as with uvicorn's workers). granian implements ``http.response.pathsend``, so
    whole blobs go from file to socket in Rust. On SIGINT or SIGTERM the workers stop
    accepting, finish what is in flight (up to GRACEFUL_SHUTDOWN_SECONDS) and close their
    runtimes."""
    from granian.constants import Interfaces, SSLProtocols
    from granian.log import LogLevels
    from granian.server import Server

    metrics_dir = _prepare_workers(config, host, port, "granian")
    if metrics_dir is None:
        return 2
    level = "debug" if config.log_level == "trace" else config.log_level
    tls: dict[str, Any] = {}
    if config.tls_cert is not None and config.tls_key is not None:
        tls = {
            "ssl_cert": config.tls_cert,
            "ssl_key": config.tls_key,
            "ssl_protocol_min": SSLProtocols.tls12,
        }
    server = Server(
        f"{__name__}:worker_app",
        address=host,
        port=port,
        interface=Interfaces.ASGI,
        workers=config.workers,
        factory=True,
        log_level=LogLevels(level),
        log_access=False,  # openecr writes its own (openecr.api.observe)
        workers_kill_timeout=GRACEFUL_SHUTDOWN_SECONDS,
        **tls,
    )
    # fresh interpreters, as uvicorn's workers: a forked one would inherit this process's
    # prometheus_client, set up before PROMETHEUS_MULTIPROC_DIR was
    multiprocessing.set_start_method("spawn", force=True)
    try:
        server.serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _run_workers(config: Config, host: str, port: int) -> int:
    import uvicorn

    metrics_dir = _prepare_workers(config, host, port)
    if metrics_dir is None:
        return 2
    try:
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=config.workers,
            host=host,
            port=port,
            **uvicorn_options(config),
        )
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def worker_app() -> ASGIApp:
    """The app of one worker process (uvicorn calls this factory in each worker)."""
    _die_with_supervisor()
    from openecr.bootstrap import app_from_env

    return app_from_env()


def _die_with_supervisor() -> None:
    """SIGTERM this worker when the supervisor that spawned it dies, even by SIGKILL (Linux):
    uvicorn's workers would otherwise keep serving on the inherited socket, orphaned."""
    supervisor = multiprocessing.parent_process()
    if sys.platform != "linux" or supervisor is None:
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != supervisor.pid:  # it died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)
