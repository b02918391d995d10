"""``create_app(settings)``: the FastAPI application and its lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from app.errors import install_handlers
from app.middleware import BodyLimitMiddleware, RequestContextMiddleware
from app.routes import admin, detect, generators, health, lineage, metrics, page
from app.service import Service
from app.settings import Settings
from dif import __version__


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Startup: load + validate artifacts, start the batcher, warm up (readiness follows).
    Shutdown (after the server has stopped accepting): unready, drain the queue, stop."""
    service: Service = app.state.service
    await service.start()
    try:
        yield
    finally:
        await service.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    service = Service(settings)
    # FastAPIOffline: /docs and /redoc load Swagger UI and ReDoc from the package's own copy
    # (served under /static-offline-docs), not from a CDN, so they work on an offline host.
    # validatorUrl None: Swagger UI would otherwise send the schema's URL to validator.swagger.io.
    app = FastAPIOffline(title="DIF service", version=__version__, lifespan=lifespan,
                         description="Detects images of known generators with Deep Image Fingerprints.",
                         swagger_ui_parameters={"validatorUrl": None})
    app.state.service = service
    install_handlers(app)
    # add_middleware wraps: the last one added is the outermost.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_upload_bytes, metrics=service.metrics)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
            allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"], expose_headers=["X-Request-ID"],
        )
    for router in (health.router, metrics.router, detect.router, generators.router, admin.router, lineage.router,
                   page.router):
        app.include_router(router)
    app.mount(page.ASSETS_PATH, page.assets(), name="page-assets")
    return app
