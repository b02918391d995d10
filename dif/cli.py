"""The ``dif`` command line. Each area registers its own sub-commands.

A module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``; every
sub-parser sets ``func(args) -> int``. ``DifError`` and ``ValueError`` become a
one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dif import __version__
from dif.errors import DifError

COMMAND_MODULES = (
    "training.commands",
    "app.commands",
    "training.import_commands",
    "training.lineage_commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dif", description="Deep Image Fingerprint detector")
    parser.add_argument("--version", action="version", version=f"dif {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (DifError, ValueError, FileNotFoundError) as exc:
        print(f"dif {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
