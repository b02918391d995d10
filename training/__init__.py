"""Offline module: trains, evaluates, imports and inspects fingerprints."""
