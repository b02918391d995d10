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
from pathlib import Path
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS, load_all_checks

from tests.service.support import write_artifacts

from .conftest import SandboxedServer

API_KEY = "fuzz-key-0123456789"
# Examples per operation, generation mode and deployment: 11 x 2 x 2 x 12 = 528 requests,
# about 40 s on the 2-core dev VM (docs/abuse.md). Raise it locally to dig deeper.
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

load_all_checks()
CHECKED = [CHECKS.get_one(name) for name in (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_schema_conformance", "response_headers_conformance",
)]


@dataclass
class Deployment:
    server: SandboxedServer
    headers: dict[str, str]
    schema: schemathesis.BaseSchema


@pytest.fixture(scope="module")
def five_generators(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lineage needs at least five loaded generators; with fewer, its success path is never fuzzed."""
    return write_artifacts(tmp_path_factory.mktemp("fuzz-fingerprints"), ["g1", "g2", "g3", "g4", "g5"])


@pytest.fixture(scope="module", params=["open", "keyed"])
def deployment(request: pytest.FixtureRequest, sandboxed_server: Callable[..., SandboxedServer],
               five_generators: Path) -> Iterator[Deployment]:
    keyed = request.param == "keyed"
    # A small file-count limit, so fuzzed bodies reach a 413 path too; 2 MiB fits a sample image.
    server = sandboxed_server(five_generators, DIF_MAX_UPLOAD_BYTES=str(2 * 1024 * 1024),
                              DIF_MAX_FILES_PER_REQUEST="4",
                              **({"DIF_API_KEY": API_KEY} if keyed else {}))
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    yield Deployment(server, {"X-API-Key": API_KEY} if keyed else {}, schema)
    server.assert_healthy(after="the fuzzing")


def test_schema_lists_every_operation(deployment: Deployment) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in deployment.schema.get_all_operations()}
    assert found == set(OPERATIONS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_operation(deployment: Deployment, method: str, path: str, mode: GenerationMode) -> None:
    if mode is GenerationMode.NEGATIVE and (method, path) in NO_INPUT:
        pytest.skip("no input to make invalid")
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


def anchored(shared_data: Path) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests pinned to what exists (a loaded name, a real image): random ones never reach a 200."""
    image = next(p for p in sorted(shared_data.glob("*/1_fake/*.png"))).read_bytes()
    return [
        ("GET", "/generators/{name}", {"path_parameters": {"name": "g3"}}),
        ("GET", "/generators/{name}/fingerprint.png", {"path_parameters": {"name": "g3"}}),
        ("GET", "/generators/{name}/spectrum.png", {"path_parameters": {"name": "g3"}}),
        ("POST", "/lineage", {"body": {"a": "g1", "b": "g2"}, "media_type": "application/json"}),
        ("POST", "/detect", {"body": {"file": image}, "media_type": "multipart/form-data"}),
    ]


def test_success_answers_match_the_schema(deployment: Deployment, shared_data: Path) -> None:
    """The 200 bodies and content types of the operations that random input only ever refuses."""
    for method, path, pinned in anchored(shared_data):
        operation = deployment.schema[path][method]
        statuses: list[int] = []

        @given(case=operation.as_strategy(**pinned))
        @settings(max_examples=3, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call(headers=deployment.headers or None, timeout=30)
            statuses.append(response.status_code)
            case.validate_response(response, checks=CHECKED, headers=deployment.headers or None)

        call()
        assert set(statuses) == {200}, (method, path, statuses)
