"""Entry point of the ``openecr`` command.

``openecr serve ...`` runs the server. Every other command is an ``aws ecr`` command, run by
the aws CLI's own driver (so options, parsing and output match ``aws ecr`` byte for byte),
against an endpoint when one is configured and otherwise in-process on the local store
(``--data-dir``, ``OPENECR_DATA_DIR``, default ``./.openecr``). See :mod:`openecr.cli.ecr`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

USAGE = """\
usage: openecr serve [options]                 run the registry (openecr serve --help)
       openecr lifecycle run [options]         apply lifecycle policies once (--help)
       openecr gc [--dry-run] [options]        reclaim unreferenced blobs and expired
                                               upload sessions once (--help)
       openecr db upgrade [options]            run the schema migrations alone (--help)
       openecr image export REF -o FILE        write an image to a tar (docker load, skopeo)
       openecr image import FILE --repository-name N   store a docker save / OCI layout tar
       openecr [--data-dir DIR] <command> ...  any `aws ecr` command, same options and output,
                                               against --endpoint-url or on the local store
       openecr <command> help                  a command's manual, as `aws ecr <command> help`

The aws ecr commands: create-repository, put-image, batch-get-image, ... (openecr help lists
them all, as `aws ecr help` does). The local store is --data-dir, OPENECR_DATA_DIR or ./.openecr.
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--help"], ["-h"]):
        print(USAGE, end="")
        return 0
    if not args:
        print(USAGE, end="", file=sys.stderr)
        return 2
    if args and args[0] == "serve":
        from openecr import __version__
        from openecr.cli import serve

        parser = argparse.ArgumentParser(prog="openecr serve", description="Run the registry.")
        parser.add_argument("--version", action="version", version=f"openecr {__version__}")
        serve.add_arguments(parser)
        return serve.run(parser.parse_args(args[1:]))
    if args and args[0] == "lifecycle":
        from openecr.cli import lifecycle

        return lifecycle.run(args[1:])
    if args and args[0] == "image":
        from openecr.cli import image

        return image.run(args[1:])
    if args and args[0] == "gc":
        from openecr.cli import gc

        return gc.run(args[1:])
    if args and args[0] == "db":
        from openecr.cli import db

        return db.run(args[1:])
    from openecr.cli import ecr

    return ecr.run(args)


if __name__ == "__main__":
    sys.exit(main())
