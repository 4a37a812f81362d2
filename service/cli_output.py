"""How every `scim-platform` command prints: for people, or JSON with `--json`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import msgspec


def emit(value: Any, as_json: bool, human: str | Callable[[], str]) -> None:
    """Print ``value`` as indented JSON, or the human text (built only when needed)."""
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(value).decode()) + "\n")
    else:
        sys.stdout.write((human if isinstance(human, str) else human()) + "\n")
