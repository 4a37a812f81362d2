"""Postgres persistence of one tenant's resources, always in that tenant's schema.

Every statement names its schema explicitly (via `tenants.schemas.quoted_schema`)
instead of setting `search_path`, so a pooled connection never carries one
tenant's context into another tenant's request.
"""
