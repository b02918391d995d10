"""The ``dif`` command line's composition root: the one module that knows every layer's commands.

It sits above ``dif``, ``app``, ``training`` and ``scan`` (the import-linter contracts in
pyproject.toml say so), so the core never names the layers built on it. A module listed in
``COMMAND_MODULES`` exposes ``register(subparsers)``.

Help must not wait for torch: a command module imports only what its parser needs and its
handlers import the heavy code when they run. ``COMMAND_MODULES`` also names the commands each
module registers, so ``dif serve ...`` imports only the module of ``serve``; anything else
(``dif --help``, an unknown command) imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dif import commandline

# module -> the sub-commands it registers (tests/core/test_cli.py keeps this true)
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "training.commands": ("train", "eval", "crossval", "train-denoiser", "blank", "build-defaults"),
    "app.cli": ("serve",),
    "training.import_commands": ("import-reference",),
    "training.lineage_commands": ("lineage", "lineage-matrix", "cross-detect"),
    "scan.commands": ("detect", "scan"),
}


def _modules_for(argv: Sequence[str]) -> list[str]:
    """The command modules ``argv`` needs: the one registering its command, or all of them."""
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    owners = [module for module, commands in COMMAND_MODULES.items() if command in commands]
    return owners or list(COMMAND_MODULES)


def build_parser(modules: Sequence[str] | None = None) -> argparse.ArgumentParser:
    names = COMMAND_MODULES if modules is None else modules
    return commandline.build_parser(importlib.import_module(name).register for name in names)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``dif`` console script (pyproject.toml's ``[project.scripts]``)."""
    argv = sys.argv[1:] if argv is None else argv
    return commandline.run(build_parser(_modules_for(argv)), argv)
