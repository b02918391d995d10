"""``dif serve``: run the service under uvicorn, draining gracefully on SIGTERM.

The command's parser and handler live in ``app.cli`` (light, so help needs no torch); the
handler is re-exported here, where callers have always found it.
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn

from app.cli import cmd_serve
from app.main import create_app
from app.service import Service
from app.settings import Settings

__all__ = ["STARTUP_FAILED", "GracefulServer", "build_server", "cmd_serve", "serve"]

STARTUP_FAILED = 3


class GracefulServer(uvicorn.Server):
    """Flips readiness and flushes the queue the moment SIGTERM/SIGINT arrives.

    uvicorn then stops listening, waits for open requests (up to DIF_DRAIN_TIMEOUT_S)
    and runs the lifespan shutdown, which drains whatever is still queued.
    """

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.service.begin_shutdown()
        super().handle_exit(sig, frame)


def build_server(settings: Settings) -> GracefulServer:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, lifespan="on",
        timeout_graceful_shutdown=int(round(settings.drain_timeout_s)),  # None would mean "wait forever"
    )
    return GracefulServer(config, app.state.service)


def serve(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper() if settings.log_level != "trace" else "DEBUG",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    server = build_server(settings)
    server.run()
    return 0 if server.started else STARTUP_FAILED
