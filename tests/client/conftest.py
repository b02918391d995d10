"""The client is tested against real servers: the service tests' fixtures (a uvicorn server on a port)."""

from tests.service.conftest import (  # noqa: F401  (fixtures, found by name)
    _no_dif_environment,
    fingerprints_dir,
    png_512,
    sample_images,
    serve,
)
