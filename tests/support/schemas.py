"""What a tenant schema is made of, to compare two schemas built different ways."""

from __future__ import annotations

from service.postgres import Pool


async def schema_shape(db: Pool, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """Columns, indexes, constraints, functions and triggers of a schema, its name taken out."""

    def plain(value: object) -> object:
        return value.replace(schema, "<schema>") if isinstance(value, str) else value

    queries = {
        "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default, "
        "is_identity, is_generated, generation_expression "
        "FROM information_schema.columns WHERE table_schema = $1",
        "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1",
        "constraints": "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
        "JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = $1",
        "functions": "SELECT p.proname, pg_get_functiondef(p.oid) FROM pg_proc p "
        "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1",
        "triggers": "SELECT t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND NOT t.tgisinternal",
    }
    return {
        name: sorted(tuple(plain(value) for value in row) for row in await db.fetch(sql, schema))
        for name, sql in queries.items()
    }
