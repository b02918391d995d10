"""JSON bodies a parser cannot (or must not) take, sent to every POST route of a real ``python -m app``.

Each is a 4xx with the ``{"error": {...}}`` shape, never a 500: nesting deeper than the decoder's
recursion limit, numbers with 100,000 digits or out of float range, NaN/Infinity literals,
duplicate keys (parsers disagree on which one wins), invalid UTF-8 and lone surrogates (not
Unicode text at all). A route that takes JSON (``POST /lineage``) says "malformed_json" (400);
a route that takes another body refuses it with its own 4xx.
"""

from __future__ import annotations

import httpx
import pytest

from tests.service.support import error_of

from .conftest import SandboxedServer

DEPTH = 100_000
HOSTILE: dict[str, bytes] = {
    "nested arrays": b"[" * DEPTH + b"]" * DEPTH,
    "nested objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "nested inside a valid body": b'{"a": "g1", "b": "g2", "x": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
    "100,000-digit integer": b'{"a": "g1", "b": "g2", "n": 1' + b"0" * 100_000 + b"}",
    "1e999999": b'{"a": "g1", "b": "g2", "n": 1e999999}',
    "-1e999999": b'{"a": "g1", "b": "g2", "n": -1e999999}',
    "NaN literal": b'{"a": "g1", "b": "g2", "n": NaN}',
    "Infinity literal": b'{"a": "g1", "b": "g2", "n": Infinity}',
    "duplicate keys": b'{"a": "g1", "b": "g2", "a": "g3"}',
    "duplicate nested keys": b'{"a": "g1", "b": "g2", "x": [{"k": 1, "k": 2}]}',
    "invalid UTF-8": b'{"a": "g\xff1", "b": "g2"}',
    "UTF-8-encoded surrogate": b'{"a": "g\xed\xa0\x801", "b": "g2"}',
    "escaped lone surrogate": b'{"a": "g1\\ud800", "b": "g2"}',
    "lone surrogate in an array": b'{"a": "g1", "b": "g2", "x": ["\\udfff"]}',
    "empty body": b"",
    "UTF-16": '{"a": "g1", "b": "g2"}'.encode("utf-16"),
}
JSON_ROUTES = {"/lineage"}  # routes whose documented request body is application/json


@pytest.fixture(scope="module")
def post_routes(abuse_server: SandboxedServer) -> list[str]:
    """Every POST route of the live schema, so a new one is covered without touching this file."""
    paths = httpx.get(f"{abuse_server.url}/openapi.json", timeout=30).json()["paths"]
    routes = sorted(path for path, ops in paths.items() if "post" in ops)
    json_bodies = {path for path in routes
                   if "application/json" in paths[path]["post"].get("requestBody", {}).get("content", {})}
    assert json_bodies == JSON_ROUTES, "a new route takes JSON: check it is parsed with app.jsonbody"
    return routes


@pytest.mark.parametrize("body", [
    b'{"a": "g1", "b": "g2"}',
    b'\xef\xbb\xbf{"a": "g1", "b": "g2"}',  # a BOM, which RFC 8259 lets a parser ignore
    b'{"a": "g1", "b": "g2", "x": [[[[1e308, -0.5, 12345678901234567890]]]], "\\u00e9": "\\ud83d\\ude00"}',
])
def test_well_formed_bodies_still_work(abuse_server: SandboxedServer, body: bytes) -> None:
    response = httpx.post(f"{abuse_server.url}/lineage", content=body,
                          headers={"content-type": "application/json"}, timeout=60)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("label", list(HOSTILE))
def test_hostile_json_is_a_clear_4xx_on_every_post_route(abuse_server: SandboxedServer, post_routes: list[str],
                                                         label: str) -> None:
    for route in post_routes:
        response = httpx.post(f"{abuse_server.url}{route}", content=HOSTILE[label],
                              headers={"content-type": "application/json"}, timeout=60)
        where = f"{label} -> POST {route}: {response.status_code} {response.text[:300]}"
        assert 400 <= response.status_code < 500, where
        error = error_of(response)
        assert error["message"] and error.get("request_id"), where
        if route in JSON_ROUTES:
            assert response.status_code == 400 and error["code"] == "malformed_json", where
    abuse_server.assert_healthy(after=label)
