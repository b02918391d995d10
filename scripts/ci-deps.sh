#!/usr/bin/env bash
# System packages the test suite needs beyond the Python venv.
# Idempotent: does nothing when the tools are already there.
#
# - prometheus (Debian package): `promtool check metrics` lints the live /metrics
#   output and a real `prometheus` scrapes the service in tests/service.
set -euo pipefail

if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends prometheus
command -v promtool >/dev/null && command -v prometheus >/dev/null
