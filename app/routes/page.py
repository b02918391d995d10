"""``GET /``: a page for people to try the service from a browser (no API client needed).

The page holds no data, so it is served without the API key; the calls its script makes send
the key the user types. Its assets ship inside the package (``app/static``) and load from this
service only: the Content-Security-Policy forbids every other origin and inline scripts.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent.parent / "static"
ASSETS_PATH = "/ui"
# blob: for the fingerprint PNGs, fetched with the key header and shown from object URLs.
POLICY = ("default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
          "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": POLICY, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def page() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=HEADERS)


def assets() -> StaticFiles:
    """The page's script and style sheet, mounted at ASSETS_PATH."""
    return StaticFiles(directory=STATIC)
