#!/usr/bin/env bash
# System packages the test suite needs beyond the Python venv; `make test` runs it first.
# Idempotent: does nothing when the tools are already there.
#
# - prometheus (Debian package): `promtool check metrics` lints the live /metrics
#   output and a real `prometheus` scrapes the service in tests/service and tests/ship.
#
# When it cannot install (not root and no sudo, or no apt-get), it prints one line
# saying what to run and exits 1, so `make test` stops before a suite that would fail.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
INSTALL="apt-get install -y prometheus"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: promtool and prometheus are missing and there is no apt-get here; install Prometheus 2.x so both are on PATH, then run make test again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    echo "ci-deps: promtool and prometheus are missing; run as root: apt-get update && $INSTALL (then make test again)" >&2
    exit 1
fi
echo "ci-deps: installing the Debian prometheus package (promtool, prometheus) for the test suite" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null
