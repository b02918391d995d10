"""``/docs`` and ``/redoc`` work on a host without internet: every asset comes from the service itself.

Checked on the sandboxed ``python -m app`` of the abuse tests (its own empty cwd and TMPDIR):
the pages name no external host, every script, stylesheet and icon they load answers 200 from
the server with the right content type, and Swagger UI's online validator is switched off.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from .conftest import SandboxedServer

# src="...", href="...", and Swagger UI's `url: '...'` (the schema it fetches)
REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|\burl:\s*'([^']+)'""")
EXPECTED_TYPES = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}


def references(html: str) -> list[str]:
    return [a or b for a, b in REFERENCE.findall(html)]


@pytest.mark.parametrize(("page", "assets"), [("/docs", {".js", ".css", ".png", ".json"}),
                                              ("/redoc", {".js", ".png", ".json"})])
def test_docs_pages_load_only_local_assets(abuse_server: SandboxedServer, page: str, assets: set[str]) -> None:
    response = httpx.get(f"{abuse_server.url}{page}", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert not re.search(r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", html, re.I), f"{page} names an external host"
    found = references(html)
    assert {ext for ext in EXPECTED_TYPES if any(urlsplit(u).path.endswith(ext) for u in found)} == assets, found
    for url in found:
        absolute = urljoin(f"{abuse_server.url}{page}", url)
        assert urlsplit(absolute).netloc == urlsplit(abuse_server.url).netloc, url
        asset = httpx.get(absolute, timeout=30)
        assert asset.status_code == 200, (url, asset.status_code)
        assert len(asset.content) > 100, url
        kind = next(t for ext, t in EXPECTED_TYPES.items() if urlsplit(url).path.endswith(ext))
        assert kind in asset.headers["content-type"], (url, asset.headers["content-type"])


def test_swagger_ui_does_not_call_the_online_validator(abuse_server: SandboxedServer) -> None:
    html = httpx.get(f"{abuse_server.url}/docs", timeout=30).text
    assert '"validatorUrl": null' in html
