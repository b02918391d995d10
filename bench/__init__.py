"""Benchmarks, each run from the repository root as a module: ``python -m bench.<name> --help``.

Support code shared with the test suite lives in ``testkit``; nothing outside bench/ imports it.
"""
