"""``dif serve``'s parser and handler. Light on purpose: ``dif serve --help`` must not import torch
or FastAPI; the handler imports the service (``app.commands``) when the command runs."""

from __future__ import annotations

import argparse

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


def cmd_serve(args: argparse.Namespace) -> int:
    from app.commands import serve
    from app.settings import Settings

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    return serve(Settings(**overrides))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the REST API (settings from DIF_* environment variables)",
                       epilog=ENVIRONMENT)
    p.add_argument("--host", default=None, help="bind address (default: DIF_HOST, else 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default: DIF_PORT, else 8000)")
    p.set_defaults(func=cmd_serve)
