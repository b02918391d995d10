"""What every ``dif`` sub-command shares: the help layout, the parser and the error contract.

The core knows no command: the composition root (``dif_cli``) or an entry script (``python -m app``)
hands ``build_parser`` the ``register(subparsers)`` functions of the command modules it wants. Every
sub-parser sets ``func(args) -> int``; ``DifError`` and ``ValueError`` become a one-line message and
exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dif import __version__
from dif.errors import DifError

Register = Callable[[argparse._SubParsersAction], None]


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


def build_parser(registers: Iterable[Register]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dif", description="Deep Image Fingerprint detector",
                                     formatter_class=HelpFormatter)
    parser.register("action", "parsers", _Commands)
    parser.add_argument("--version", action="version", version=f"dif {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in registers:
        register(subparsers)
    return parser


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> argparse.Namespace:
    """Parse ``argv``; an unknown option is reported with its sub-command's usage, not the top level's."""
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        command_parser = commands.choices[args.command]
        command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def run(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    args = parse(parser, argv)
    try:
        return int(args.func(args) or 0)
    except (DifError, ValueError, FileNotFoundError) as exc:
        print(f"dif {args.command}: error: {exc}", file=sys.stderr)
        return 2
