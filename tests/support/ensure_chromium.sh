#!/usr/bin/env bash
# Makes sure a Chromium is there for the console's browser tests
# (tests/integration/test_console_browser.py): CHROMIUM_PATH if set, else
# Debian's /usr/bin/chromium, installed here when missing, since CI runs on a
# fresh machine with only Python. Playwright drives it; its own browser
# download is not used (the machine may not reach it).
set -euo pipefail

if [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
    exit 0
fi
if [ -n "${CHROMIUM_PATH:-}" ]; then
    echo "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "Chromium is missing and apt-get is not available; install Chromium and set CHROMIUM_PATH to run the console's browser tests" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
[ -x /usr/bin/chromium ]
