"""Structured JSON logs, one object per line, with secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime

import msgspec

from observability.tracing import current_ids

# Anything shaped like one of our secrets, or an HTTP credential, never reaches a log line.
# Whatever follows "Bearer" or "Basic" is taken for a credential: redacting a
# word of prose now and then is cheaper than leaking one short password.
# The scheme's case is ignored in ASCII only (`a`), so that every match holds
# "scimsk_", "scimadm_", "bearer" or "basic" once the text is lowercased.
_SECRET = re.compile(r"(scim(?:sk|adm)_[0-9A-Za-z]{38})|((?ia:bearer|basic)\s+)[^\s\"']+")


def redact(text: str) -> str:
    # The pattern scans at some 40 ns a character and almost no text holds a
    # secret; looking for the markers first costs a tenth of that. Every access
    # log line and request log row passes through here several times.
    lowered = text.lower()
    if not (
        "scimsk_" in lowered or "scimadm_" in lowered or "bearer" in lowered or "basic" in lowered
    ):
        return text
    return _SECRET.sub(lambda m: f"{m.group(2) or ''}[REDACTED]", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        # Structured fields a caller passed as `extra={"fields": {...}}` (the access log).
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(key, redact(value) if isinstance(value, str) else value)
        if "trace_id" not in entry:
            ids = current_ids()
            if ids is not None:
                entry["trace_id"], entry["span_id"] = ids
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return msgspec.json.encode(entry).decode()


def configure_logging(level: str) -> None:
    # What `JsonFormatter` never writes is not gathered for every record either
    # (the logging HOWTO's "Optimization"): the caller's file and line (a stack
    # walk), the thread, the process and its name. The access log writes a
    # record per request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
