"""Support code shared by the test suite and the benches (a development checkout only).

Not part of the service: the Docker image and the wheel leave it out. Each module imports only
what it needs, so a bench on a bare device machine can use ``testkit.fingerprints`` without the
web stack, and nothing here imports ``tests`` or ``bench``.
"""
