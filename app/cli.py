"""``dif serve``'s parser. Light on purpose: ``dif serve --help`` must not import torch or FastAPI;
the handler (``app.commands.cmd_serve``) imports the service when the command runs."""

from __future__ import annotations

import argparse

from dif.cli import lazy

# The settings a first run usually needs; all of them are in README.md's settings table.
ENVIRONMENT = """\
settings come from DIF_* environment variables (README.md, "Settings"), among them:
  DIF_FINGERPRINTS_DIR  folder of artifact folders to serve, one per generator
                        (default: the fingerprints/ folder of the installation)
  DIF_API_KEY           when set, every endpoint but /healthz, /readyz and /metrics
                        needs it in X-API-Key, and /admin/reload is enabled
  DIF_DEVICE            auto (CUDA if available), cpu or cuda
  DIF_HOST, DIF_PORT    bind address and port (--host and --port override them)

exit code 3: the folder holds no valid, consistent set of fingerprints"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the REST API (settings from DIF_* environment variables)",
                       epilog=ENVIRONMENT)
    p.add_argument("--host", default=None, help="bind address (default: DIF_HOST, else 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default: DIF_PORT, else 8000)")
    p.set_defaults(func=lazy("app.commands", "cmd_serve"))
