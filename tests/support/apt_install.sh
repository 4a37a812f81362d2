#!/usr/bin/env bash
# Installs the Debian packages named as arguments, as root or through sudo: what
# the tests need beyond Python on a fresh machine (CI has nothing else). Where
# there is no apt-get, says what is missing and fails.
set -euo pipefail

if ! command -v apt-get >/dev/null 2>&1; then
    echo "the tests need the Debian packages $*, and apt-get is not available: install their equivalents" >&2
    exit 1
fi
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
# A package may start a system-wide server; the tests start their own.
if command -v service >/dev/null 2>&1; then
    for package in "$@"; do
        as_root service "$package" stop >/dev/null 2>&1 || true
    done
fi
