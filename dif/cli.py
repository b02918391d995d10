"""The ``dif`` command line. Each area registers its own sub-commands.

A module listed in ``COMMAND_MODULES`` exposes ``register(subparsers)``; every
sub-parser sets ``func(args) -> int``. ``DifError`` and ``ValueError`` become a
one-line message and exit code 2.

Help must not wait for torch: a command module imports only what its parser needs
and its handlers import the heavy code when they run. ``COMMAND_MODULES`` also names the
commands each module registers, so ``dif serve ...`` imports only the module of
``serve``; anything else (``dif --help``, an unknown command) imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import textwrap
from collections.abc import Sequence
from typing import Any

from dif import __version__
from dif.errors import DifError

# module -> the sub-commands it registers (tests/core/test_cli.py keeps this true)
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "training.commands": ("train", "eval", "crossval", "train-denoiser", "blank", "build-defaults"),
    "app.cli": ("serve",),
    "training.import_commands": ("import-reference",),
    "training.lineage_commands": ("lineage", "lineage-matrix", "cross-detect"),
    "scan.commands": ("detect", "scan"),
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, False, [])
    or the help already says it. Descriptions and epilogs keep their paragraphs, and a
    paragraph with indented lines (a table) is printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default is None or action.default is False or action.default == []:
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            if any(line.startswith(" ") for line in paragraph.splitlines()):
                paragraphs.append(textwrap.indent(paragraph, indent))
            else:
                paragraphs.append(super()._fill_text(paragraph, width, indent))
        return "\n\n".join(paragraphs)


class _Commands(argparse._SubParsersAction):
    """Every sub-command gets a description: its one-line help, then its own description if any."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        summary = kwargs.get("help")
        if summary:
            own = kwargs.get("description")
            first = summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else ".")
            kwargs["description"] = first + (f"\n\n{own}" if own else "")
        kwargs.setdefault("formatter_class", HelpFormatter)
        return super().add_parser(name, **kwargs)


def _modules_for(argv: Sequence[str]) -> list[str]:
    """The command modules ``argv`` needs: the one registering its command, or all of them."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    owners = [module for module, commands in COMMAND_MODULES.items() if command in commands]
    return owners or list(COMMAND_MODULES)


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dif", description="Deep Image Fingerprint detector",
                                     formatter_class=HelpFormatter)
    parser.register("action", "parsers", _Commands)
    parser.add_argument("--version", action="version", version=f"dif {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES if modules is None else modules:
        importlib.import_module(name).register(subparsers)
    return parser


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with its sub-command's usage, not the top level's."""
    parser = build_parser(_modules_for(argv))
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command_parser = commands.choices[args.command]
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (DifError, ValueError, FileNotFoundError) as exc:
        print(f"dif {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
