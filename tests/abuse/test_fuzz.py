"""Schemathesis against the live server's own ``/openapi.json``: every operation, two deployments.

The schema is fetched from a real ``python -m app`` subprocess (no key, and with
``DIF_API_KEY`` so ``/admin/reload`` is live too); schemathesis generates requests
from it (valid ones, and invalid ones in negative mode), sends them over a real
socket and checks each answer: no 5xx, and status codes, content types, headers
and bodies as documented (``response_schema_conformance`` also proves that every
documented error has the ``{"error": {...}}`` shape).

Schemathesis' pytest plugin (``from_fixture``) does not run under pytest 9, so the
operations are driven through its Python API: one hypothesis test per operation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import SandboxedServer

API_KEY = "fuzz-key-0123456789"
# Examples per operation, generation mode and deployment: (8 operations with input x 2 modes x 12
# + 3 without input x 1) x 2 deployments = 390 requests, about 20 s on the 2-core dev VM
# (docs/abuse.md). Raise it locally to dig deeper.
MAX_EXAMPLES = 12
# Every operation the service has; test_schema_lists_every_operation keeps this honest.
OPERATIONS = [
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("POST", "/detect"),
    ("GET", "/generators"), ("GET", "/generators/{name}"), ("GET", "/generators/{name}/fingerprint.png"),
    ("GET", "/generators/{name}/spectrum.png"), ("POST", "/admin/reload"), ("POST", "/lineage"),
    ("GET", "/lineage/matrix"),
]
# No parameter, header or body to corrupt: negative generation has nothing to vary.
NO_INPUT = {("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics")}

CHECKED = [not_a_server_error, status_code_conformance, content_type_conformance,
           response_schema_conformance, response_headers_conformance]


@dataclass
class Deployment:
    server: SandboxedServer
    headers: dict[str, str]
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module", params=["open", "keyed"])
def deployment(request: pytest.FixtureRequest, abuse_server: SandboxedServer,
               sandboxed_server: Callable[..., SandboxedServer]) -> Iterator[Deployment]:
    keyed = request.param == "keyed"
    server = sandboxed_server(DIF_API_KEY=API_KEY) if keyed else abuse_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    yield Deployment(server, {"X-API-Key": API_KEY} if keyed else {}, schema)
    server.assert_healthy(after="the fuzzing")
    if keyed:
        server.kill()


def test_schema_lists_every_operation(deployment: Deployment) -> None:
    results = list(deployment.schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "schemathesis cannot read part of our schema"
    assert {(op.method.upper(), op.path) for op in operations} == set(OPERATIONS)


RUNS = [(method, path, mode) for method, path in OPERATIONS
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if mode is GenerationMode.POSITIVE or (method, path) not in NO_INPUT]


@pytest.mark.parametrize(("method", "path", "mode"), RUNS,
                         ids=[f"{m} {p} {'valid' if g is GenerationMode.POSITIVE else 'invalid'}" for m, p, g in RUNS])
def test_operation(deployment: Deployment, method: str, path: str, mode: GenerationMode) -> None:
    operation = deployment.schema[path][method]
    sent: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call(headers=deployment.headers or None, timeout=30)
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKED, headers=deployment.headers or None)

    started = time.monotonic()
    fuzz()
    print(f"\n{method} {path} [{mode.value}]: {len(sent)} requests in {time.monotonic() - started:.1f}s, "
          f"statuses {sorted(set(sent))}")
    assert sent, "schemathesis generated nothing"


ANCHORS: dict[str, tuple[str, str, dict[str, Any]]] = {  # name -> (method, path, what is pinned)
    "generator": ("GET", "/generators/{name}", {"path_parameters": {"name": "g3"}}),
    "fingerprint-png": ("GET", "/generators/{name}/fingerprint.png", {"path_parameters": {"name": "g3"}}),
    "spectrum-png": ("GET", "/generators/{name}/spectrum.png", {"path_parameters": {"name": "g3"}}),
    "lineage": ("POST", "/lineage", {"body": {"a": "g1", "b": "g2"}, "media_type": "application/json"}),
    "detect": ("POST", "/detect", {"media_type": "multipart/form-data"}),  # body: a real image, below
}


@pytest.mark.parametrize("anchor", list(ANCHORS))
def test_success_answers_match_the_schema(deployment: Deployment, ltim: Path, anchor: str) -> None:
    """Requests pinned to what exists (a loaded name, a real image), since random ones are only ever
    refused: their 200 bodies and content types are held to the schema too."""
    method, path, pinned = ANCHORS[anchor]
    if anchor == "detect":
        image = next(p for p in sorted(ltim.glob("*/1_fake/*.png"))).read_bytes()
        pinned = {**pinned, "body": {"file": image}}
    statuses: list[int] = []

    @given(case=deployment.schema[path][method].as_strategy(**pinned))
    @settings(max_examples=3, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def call(case: schemathesis.Case) -> None:
        response = case.call(headers=deployment.headers or None, timeout=30)
        statuses.append(response.status_code)
        case.validate_response(response, checks=CHECKED, headers=deployment.headers or None)

    call()
    assert set(statuses) == {200}, statuses
