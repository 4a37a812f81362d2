#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH: the rate-limit tests start their own
# throw-away Redis on a free loopback port. Installed from Debian when missing.
set -euo pipefail

if ! command -v redis-server >/dev/null 2>&1; then
    bash "$(dirname "$0")/apt_install.sh" redis-server
    command -v redis-server >/dev/null
fi
