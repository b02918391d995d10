"""``python -m app [--host H] [--port P]`` is ``dif serve``."""

import sys

from app import cli
from dif import commandline

sys.exit(commandline.run(commandline.build_parser([cli.register]), ["serve", *sys.argv[1:]]))
