"""OpenTelemetry traces, metrics and logs: setup, middleware, instruments, attribute names."""
