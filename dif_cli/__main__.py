"""``python -m dif_cli ARGS`` is ``dif ARGS`` without an installed console script."""

import sys

from dif_cli import main

sys.exit(main())
