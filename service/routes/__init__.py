"""Litestar controllers: SCIM, the operator admin API, and health."""
