"""The DIF inference service: FastAPI app, dynamic batcher, metrics. ``create_app`` is in ``app.main``."""
