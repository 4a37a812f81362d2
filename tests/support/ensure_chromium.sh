#!/usr/bin/env bash
# Makes sure a Chromium is there for the console's browser tests
# (tests/integration/test_console_browser.py): CHROMIUM_PATH if set, else
# Debian's /usr/bin/chromium, installed when missing. Playwright drives it; its
# own browser download is not used (the machine may not reach it).
set -euo pipefail

if [ -n "${CHROMIUM_PATH:-}" ]; then
    [ -x "$CHROMIUM_PATH" ] || { echo "CHROMIUM_PATH=$CHROMIUM_PATH is not an executable" >&2; exit 1; }
elif [ ! -x /usr/bin/chromium ]; then
    bash "$(dirname "$0")/apt_install.sh" chromium
    [ -x /usr/bin/chromium ]
fi
