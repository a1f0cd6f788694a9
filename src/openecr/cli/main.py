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


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from openecr.cli import serve

        parser = argparse.ArgumentParser(prog="openecr serve", description="Run the registry.")
        serve.add_arguments(parser)
        return serve.run(parser.parse_args(args[1:]))
    if args and args[0] == "lifecycle":
        from openecr.cli import lifecycle

        return lifecycle.run(args[1:])
    from openecr.cli import ecr

    return ecr.run(args)


if __name__ == "__main__":
    sys.exit(main())
