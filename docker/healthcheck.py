"""Docker HEALTHCHECK: exit 0 when the service answers /readyz with 200.

The slim image has no curl, and Python is there anyway. Readiness (not /healthz) is what
"healthy" means to `docker compose up --wait` and `depends_on: service_healthy`: the
fingerprints are loaded and warmed up and the service is not draining.
"""

import os
import sys
import urllib.request

port = os.environ.get("DIF_PORT", "8000")
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception as exc:  # noqa: BLE001 - any failure means unhealthy
    print(f"unhealthy: {exc}", file=sys.stderr)
    sys.exit(1)
