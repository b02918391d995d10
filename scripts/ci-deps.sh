#!/usr/bin/env bash
# System packages the test suite needs beyond the Python venv; `make test` runs it first.
# Idempotent: does nothing when the tools are already there.
#
# - prometheus (Debian package): `promtool check metrics` lints the live /metrics
#   output and a real `prometheus` scrapes the service in tests/service and tests/ship.
# - chromium (Debian package): tests/web drive the page at / in a real headless browser,
#   through Playwright for Python (the dev extra); `playwright install` is never needed.
#
# When it cannot install (not root and no sudo, or no apt-get), it prints one line
# saying what to run and exits 1, so `make test` stops before a suite that would fail.
set -euo pipefail

PACKAGES=()
MISSING=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
    PACKAGES+=(prometheus)
    MISSING+=("promtool and prometheus are missing")
fi
if ! command -v chromium >/dev/null 2>&1; then
    PACKAGES+=(chromium)
    MISSING+=("chromium is missing")
fi
if [ ${#PACKAGES[@]} -eq 0 ]; then
    exit 0
fi
# Builtins only: the script must say what is missing on a machine that lacks even sed.
WHAT=$(printf '%s; ' "${MISSING[@]}")
WHAT=${WHAT%; }
INSTALL="apt-get install -y ${PACKAGES[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ci-deps: $WHAT and there is no apt-get here; install Prometheus 2.x (promtool, prometheus) and Chromium so they are on PATH, then run make test again" >&2
    exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=
elif command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
else
    echo "ci-deps: $WHAT; run as root: apt-get update && $INSTALL (then make test again)" >&2
    exit 1
fi
echo "ci-deps: installing the Debian ${PACKAGES[*]} package(s) for the test suite" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null
