"""``dif serve``'s parser and handler. Light on purpose: ``dif serve --help`` must not import torch
or FastAPI; the handler imports the service (``app.commands``) when the command runs."""

from __future__ import annotations

import argparse
import logging

# The settings a first run usually needs; all of them are in README.md's settings table.
ENVIRONMENT = """\
settings come from DIF_* environment variables (README.md, "Settings"), among them:
  DIF_FINGERPRINTS_DIR  folder of artifact folders to serve, one per generator, or
                        one artifact folder (default: the installation's fingerprints/)
  DIF_API_KEY           when set, every endpoint but /healthz, /readyz and /metrics
                        needs it in X-API-Key, and /admin/reload is enabled
  DIF_DEVICE            auto (CUDA if available), cpu or cuda
  DIF_HOST, DIF_PORT    bind address and port (--host and --port override them)

exit code 3: the folder holds no valid, consistent set of fingerprints"""


# Exceptions that mean "the configuration is wrong", not "the service has a bug": their message is the
# whole story, so start-up failures of these kinds are logged without the traceback.
CONFIGURATION_ERRORS = ("dif.errors.", "app.errors.", "ValueError", "FileNotFoundError", "PermissionError",
                        "NotADirectoryError", "IsADirectoryError")


class ConfigurationErrorsInOneLine(logging.Filter):
    """Starlette reports a failed lifespan start-up as the whole traceback text, which uvicorn logs as
    one message; keep only its last line (``module.Error: message``) when that is a configuration error."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Traceback (most recent call last)") and not record.exc_info:
            last = message.rstrip().splitlines()[-1]
            if last.startswith(CONFIGURATION_ERRORS):
                record.msg, record.args = last, ()
        return True


def cmd_serve(args: argparse.Namespace) -> int:
    from app.commands import serve
    from app.settings import Settings

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    settings = Settings(**overrides)  # a bad DIF_* value: ValueError, one message from `dif` (exit 2)
    logging.getLogger("uvicorn.error").addFilter(ConfigurationErrorsInOneLine())
    return serve(settings)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the REST API (settings from DIF_* environment variables)",
                       epilog=ENVIRONMENT)
    p.add_argument("--host", default=None, help="bind address (default: DIF_HOST, else 0.0.0.0)")
    p.add_argument("--port", type=int, default=None, help="port (default: DIF_PORT, else 8000)")
    p.set_defaults(func=cmd_serve)
