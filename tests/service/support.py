"""What only the service tests share: their generator names and the error body every failure has.

Servers, artifacts and images come from ``testkit`` (shared with the benches). Most servers run in a
thread of the test process (so a test can reach into the running service to inject a fault); the
lifecycle tests run ``python -m app`` as a subprocess and send it real signals.
"""

from __future__ import annotations

import httpx

GENERATORS = ("alpha", "beta", "gamma")


def error_of(response: httpx.Response) -> dict[str, str]:
    """The ``{"error": {...}}`` body every failure must have."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert {"code", "message"} <= set(body["error"]), body
    return body["error"]  # type: ignore[no-any-return]
