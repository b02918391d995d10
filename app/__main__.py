"""``python -m app [--host H] [--port P]`` is ``dif serve``."""

import sys

from dif.cli import main

sys.exit(main(["serve", *sys.argv[1:]]))
