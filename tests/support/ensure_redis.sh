#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH: the rate-limit tests start their own
# throw-away Redis on a free loopback port. CI runs on a fresh machine with
# only Python, so the Debian package is installed here when it is missing.
set -euo pipefail

if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing and apt-get is not available; install Redis to run its tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# The package starts a system-wide server; the tests never use it.
if command -v service >/dev/null 2>&1; then
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
command -v redis-server >/dev/null
