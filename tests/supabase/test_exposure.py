"""Item 2 of issue 10: nothing lorafiles creates is readable or writable by `anon` or
`authenticated` under Supabase's default grants, its migration history included.

Older lorafiles kept its history in public.lorafiles_schema_migrations; under Supabase's default
privileges `anon` could read and delete it through the REST API (reproduced first below)."""
from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from supakit import push_locally

from lorafiles.db.migrate import HISTORY_TABLE, applied_migrations, apply_migrations, discover

ALL = [m.name for m in discover()]
LEGACY = """CREATE TABLE public.lorafiles_schema_migrations (
  version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"""


def as_role(url: str, role: str, statement: str, params: tuple = ()) -> list[tuple] | str:
    """Run one statement as `role` (with a user's JWT claims for `authenticated`), the way PostgREST
    does; returns the rows, or the error's SQLSTATE name."""
    with psycopg.connect(url) as conn:
        conn.execute(f"SET LOCAL ROLE {role}")
        if role == "authenticated":
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                         (json.dumps({"sub": str(uuid.uuid4()), "role": "authenticated"}),))
        try:
            cur = conn.execute(statement, params or None)
            return cur.fetchall() if cur.description else [(cur.rowcount,)]
        except psycopg.errors.InsufficientPrivilege:
            return "insufficient_privilege"
        finally:
            conn.rollback()


def test_the_legacy_history_table_was_exposed(supabase_project):
    """The problem, reproduced: a public table created by the migration role is anon's to read and delete."""
    with psycopg.connect(supabase_project.url) as conn:
        conn.execute(LEGACY)
        conn.execute("INSERT INTO public.lorafiles_schema_migrations (version, name, checksum) VALUES ('1', '1_a.sql', 'x')")
    assert as_role(supabase_project.url, "anon", "SELECT version FROM public.lorafiles_schema_migrations") == [("1",)]
    assert as_role(supabase_project.url, "anon", "DELETE FROM public.lorafiles_schema_migrations") == [(1,)]


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_history_is_out_of_reach_after_lorafiles_migrate(supabase_project, role):
    url = supabase_project.url
    # a project migrated by an older lorafiles (history in the public table): moved, then dropped
    apply_migrations(url, upto="20260101000100")
    with psycopg.connect(url) as conn:
        conn.execute(f"DELETE FROM {HISTORY_TABLE}")
        conn.execute(LEGACY)
        conn.execute("INSERT INTO public.lorafiles_schema_migrations (version, name, checksum) "
                     "VALUES ('20260101000100', '20260101000100_baseline_existing.sql', 'old')")
    assert apply_migrations(url) == ALL[1:]  # the legacy row counts as applied
    assert applied_migrations(url) == ALL

    for statement in (f"SELECT * FROM {HISTORY_TABLE}", f"DELETE FROM {HISTORY_TABLE}",
                      f"INSERT INTO {HISTORY_TABLE} (version) VALUES ('1')"):
        assert as_role(url, role, statement) == "insufficient_privilege", statement
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('public.lorafiles_schema_migrations')").fetchone()[0] is None
        assert conn.execute(f"SELECT count(*) FROM {HISTORY_TABLE}").fetchone()[0] == len(ALL)


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_nothing_lorafiles_created_is_granted_beyond_its_policies(supabase_project, role):
    """After a push (the CLI's way), with Supabase's default privileges in force: anon has no
    privilege on any lorafiles table or function; authenticated may only SELECT (RLS then filters)."""
    url = supabase_project.url
    push_locally(url)
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname LIKE 'lora\\_%'")]
        functions = [r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND p.proname LIKE 'lorafiles\\_%'")]
        assert len(tables) == 5 and len(functions) >= 4
        for t in tables:
            for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER"):
                allowed = conn.execute("SELECT has_table_privilege(%s, %s, %s)", (role, t, privilege)).fetchone()[0]
                assert allowed == (role == "authenticated" and privilege == "SELECT"), (role, t, privilege)
            assert conn.execute("SELECT relrowsecurity FROM pg_class WHERE oid = %s::regclass", (t,)).fetchone()[0]
        for f in functions:
            assert not conn.execute("SELECT has_function_privilege(%s, %s, 'EXECUTE')", (role, f)).fetchone()[0], f
        assert not conn.execute("SELECT has_schema_privilege(%s, 'supabase_migrations', 'USAGE')", (role,)).fetchone()[0]
    # and through the rows: nothing to see, nothing to delete
    assert as_role(url, role, "SELECT count(*) FROM lora_training_files") == (
        [(0,)] if role == "authenticated" else "insufficient_privilege")
    assert as_role(url, role, "DELETE FROM lora_training_files") == "insufficient_privilege"
