"""What a database's schema is, as PostgreSQL prints it: to compare two databases, or one with schema.sql."""

from __future__ import annotations

from typing import Any

import psycopg

from qualgent.server.db.engine import libpq_url

SCHEMAS = "ARRAY['public', 'reporting']"

# Every query: (kind, name, definition) rows of our schemas, none of an extension's.
QUERIES = {
    "function": f"""
        SELECT p.oid::regprocedure::text, pg_get_functiondef(p.oid) || COALESCE(obj_description(p.oid, 'pg_proc'), '')
        FROM pg_proc p
        WHERE p.pronamespace::regnamespace::text = ANY({SCHEMAS}) AND p.prokind IN ('f', 'p')
          AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')""",
    "view": f"""
        SELECT c.oid::regclass::text, pg_get_viewdef(c.oid) || COALESCE(obj_description(c.oid, 'pg_class'), '')
        FROM pg_class c
        WHERE c.relkind IN ('v', 'm') AND c.relnamespace::regnamespace::text = ANY({SCHEMAS})""",
    "trigger": f"""
        SELECT t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY({SCHEMAS})""",
    "table": f"""
        SELECT c.oid::regclass::text,
               concat_ws(' ', c.relkind, c.relpersistence, array_to_string(c.reloptions, ','),
                         obj_description(c.oid, 'pg_class'))
        FROM pg_class c
        WHERE c.relkind IN ('r', 'p', 'S') AND c.relnamespace::regnamespace::text = ANY({SCHEMAS})
          AND c.relname <> 'alembic_version'""",
    "column": f"""
        SELECT a.attrelid::regclass::text || '.' || a.attname,
               concat_ws(' ', format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity, a.attgenerated,
                         pg_get_expr(d.adbin, d.adrelid), col_description(a.attrelid, a.attnum))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v')
          AND c.relnamespace::regnamespace::text = ANY({SCHEMAS}) AND c.relname <> 'alembic_version'""",
    "constraint": f"""
        SELECT co.conrelid::regclass::text || '.' || co.conname, pg_get_constraintdef(co.oid)
        FROM pg_constraint co
        WHERE co.connamespace::regnamespace::text = ANY({SCHEMAS}) AND co.conrelid <> 0
          AND co.conrelid <> to_regclass('alembic_version')""",
    "index": f"""
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
        WHERE c.relnamespace::regnamespace::text = ANY({SCHEMAS}) AND c.relname <> 'alembic_version'""",
    "type": f"""
        SELECT t.oid::regtype::text, t.typtype::text || ' ' || COALESCE(
                   (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder) FROM pg_enum e
                    WHERE e.enumtypid = t.oid), '')
        FROM pg_type t
        WHERE t.typnamespace::regnamespace::text = ANY({SCHEMAS}) AND t.typtype IN ('e', 'd')""",
    "schema": """
        SELECT n.nspname::text, COALESCE(obj_description(n.oid, 'pg_namespace'), '')
        FROM pg_namespace n WHERE n.nspname = 'reporting'""",
}

REPLACEABLE = ("function", "view", "trigger")


def catalog(url: str) -> dict[str, dict[str, str]]:
    """kind -> name -> definition, for every kind above."""
    found: dict[str, dict[str, str]] = {}
    with psycopg.connect(libpq_url(url)) as conn:
        conn.execute("SET search_path = public")
        for kind, query in QUERIES.items():
            rows: list[Any] = conn.execute(query).fetchall()
            found[kind] = {name: definition for name, definition in rows}
    return found


def differences(left: dict[str, dict[str, str]], right: dict[str, dict[str, str]]) -> list[str]:
    """Readable differences between two catalogs (empty: the same)."""
    found = []
    for kind in QUERIES:
        a, b = left[kind], right[kind]
        found += [f"{kind} {name}: only in the first" for name in sorted(a.keys() - b.keys())]
        found += [f"{kind} {name}: only in the second" for name in sorted(b.keys() - a.keys())]
        found += [f"{kind} {name}: differs" for name in sorted(a.keys() & b.keys()) if a[name] != b[name]]
    return found
