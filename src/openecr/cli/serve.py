"""``openecr serve``: run the registry over HTTP."""

from __future__ import annotations

import argparse
import logging
import sys

from openecr.config import ConfigError, from_env


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on")
    parser.add_argument("--data-dir", help="where metadata and blobs live (./.openecr)")
    parser.add_argument("--database-url", help="SQLAlchemy URL of the metadata store")
    parser.add_argument("--account-id", help="the default account (123456789012)")
    parser.add_argument("--region", help="the region in ARNs (us-east-1)")
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
        "--credentials", help="TOML file of access keys; turns on SigV4 and token checks"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = from_env(
            data_dir=args.data_dir,
            database_url=args.database_url,
            account_id=args.account_id,
            region=args.region,
            registry_host=args.registry_host,
            lenient_manifests=args.lenient_manifests,
            create_on_push=args.create_on_push,
            credentials_file=args.credentials,
        )
    except ConfigError as error:
        print(f"openecr: {error}", file=sys.stderr)
        return 2
    # imported once the configuration is known to be good: a bad one is refused at once
    import uvicorn

    from openecr.bootstrap import build_app, build_runtime

    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    runtime = build_runtime(config)
    app = build_app(runtime)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    finally:
        runtime.close()
    return 0
