"""Row level security on the lora_* tables: authenticated users read only their own rows,
write nothing; anon gets nothing; service_role and the owner bypass RLS; versions are immutable."""
from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from lorafiles.db.connect import connect

from rlskit import TABLES, acting_as, seed_user


@pytest.fixture
def seeded(db_url: str) -> dict[str, Any]:
    a, b = uuid.uuid4(), uuid.uuid4()
    with connect(db_url) as conn:
        seeds = {a: seed_user(conn, a), b: seed_user(conn, b)}
    return {"url": db_url, "a": a, "b": b, "seeds": seeds}


def visible(conn: psycopg.Connection, table: str) -> list[dict[str, Any]]:
    return conn.execute(f"SELECT * FROM {table}").fetchall()


def test_rls_enabled_and_policies_select_only_for_authenticated(db_url):
    with connect(db_url) as conn:
        rls = conn.execute("""SELECT relname, relrowsecurity FROM pg_class
                              WHERE relname = ANY(%s) AND relkind = 'r'""", (TABLES,)).fetchall()
        assert {r["relname"]: r["relrowsecurity"] for r in rls} == {t: True for t in TABLES}
        policies = conn.execute("""SELECT tablename, cmd, roles::text[] AS roles FROM pg_policies
                                   WHERE tablename = ANY(%s)""", (TABLES,)).fetchall()
        assert sorted(p["tablename"] for p in policies) == sorted(TABLES)
        assert all(p["cmd"] == "SELECT" and p["roles"] == ["authenticated"] for p in policies)


@pytest.mark.parametrize("who", ["a", "b"])
def test_user_sees_only_own_rows(seeded, who):
    user = seeded[who]
    other = seeded["b" if who == "a" else "a"]
    mine, theirs = seeded["seeds"][user], seeded["seeds"][other]
    with acting_as(seeded["url"], "authenticated", user) as conn:
        assert conn.execute("SELECT auth.uid() AS u").fetchone()["u"] == user
        for table in TABLES:
            rows = visible(conn, table)
            assert len(rows) == 1, table
            if table == "lora_training_file_versions":
                assert rows[0]["file_id"] == mine["file_id"]
            else:
                assert rows[0]["owner_id"] == user, table
        # addressing the other user's rows directly finds nothing either
        assert conn.execute("SELECT * FROM lora_training_files WHERE id = %s", (theirs["file_id"],)).fetchall() == []
        assert conn.execute("SELECT * FROM lora_training_file_versions WHERE file_id = %s",
                            (theirs["file_id"],)).fetchall() == []
        assert conn.execute("SELECT * FROM lora_training_file_members WHERE conversation_id = %s",
                            (theirs["conversation_id"],)).fetchall() == []


def test_authenticated_without_claims_sees_nothing(seeded):
    with acting_as(seeded["url"], "authenticated") as conn:
        for table in TABLES:
            assert visible(conn, table) == [], table


@pytest.mark.parametrize("table", TABLES)
def test_anon_sees_nothing(seeded, table):
    # anon has no privilege at all (and no policy): even with a user's claims it reads nothing
    with acting_as(seeded["url"], "anon", seeded["a"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            visible(conn, table)


WRITES = [  # (statement, table)
    ("INSERT INTO lora_training_files (owner_id, name, target_model) VALUES (auth.uid(), 'mine', 'm')",
     "lora_training_files"),
    ("INSERT INTO lora_training_jobs (owner_id, kind, idempotency_key) VALUES (auth.uid(), 'create', 'x')",
     "lora_training_jobs"),
    ("UPDATE lora_training_files SET name = 'renamed' WHERE owner_id = auth.uid()", "lora_training_files"),
    ("UPDATE lora_training_jobs SET status = 'failed' WHERE owner_id = auth.uid()", "lora_training_jobs"),
    ("UPDATE lora_training_file_members SET position = 9 WHERE owner_id = auth.uid()", "lora_training_file_members"),
    ("UPDATE lora_training_job_items SET pairs = 0 WHERE owner_id = auth.uid()", "lora_training_job_items"),
    ("UPDATE lora_training_file_versions SET json_size = 0", "lora_training_file_versions"),
    ("DELETE FROM lora_training_files WHERE owner_id = auth.uid()", "lora_training_files"),
    ("DELETE FROM lora_training_file_members WHERE owner_id = auth.uid()", "lora_training_file_members"),
]


def _unchanged(seeded) -> None:
    with connect(seeded["url"]) as conn:
        names = {r["name"] for r in conn.execute("SELECT name FROM lora_training_files")}
        assert names == {f"file {seeded['a']}", f"file {seeded['b']}"}
        assert conn.execute("SELECT count(*) AS n FROM lora_training_jobs").fetchone()["n"] == 2
        assert conn.execute("SELECT count(*) AS n FROM lora_training_file_members WHERE position = 1"
                            ).fetchone()["n"] == 2


@pytest.mark.parametrize("statement,table", WRITES)
def test_authenticated_cannot_write_for_want_of_a_grant(seeded, statement, table):
    # The refusal comes from the privileges (authenticated has SELECT only), before any policy:
    # PostgreSQL says "permission denied for table"; a policy refusal would name row-level security.
    with acting_as(seeded["url"], "authenticated", seeded["a"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=f"^permission denied for table {table}$"):
            conn.execute(statement)
    _unchanged(seeded)


@pytest.mark.parametrize("statement,table", WRITES)
def test_even_with_write_grants_the_policies_allow_no_write(seeded, statement, table):
    # The second layer: with the grants given (a Supabase default privilege, say), there is no
    # INSERT/UPDATE/DELETE policy, so a new row violates row-level security and an UPDATE or
    # DELETE finds no row it may touch.
    with connect(seeded["url"]) as conn:
        conn.execute(f"GRANT INSERT, UPDATE, DELETE ON public.{table} TO authenticated")
        # the name key's function is the service's only (a third layer); grant it too, so what
        # refuses the INSERT below can only be the row-level security policy
        conn.execute("GRANT EXECUTE ON FUNCTION public.lorafiles_name_key(text) TO authenticated")
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (f'{{"sub": "{seeded["a"]}", "role": "authenticated"}}',))
        if statement.startswith("INSERT"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match=f'new row violates row-level security policy for table "{table}"'):
                conn.execute(statement)
        else:
            assert conn.execute(statement).rowcount == 0
        conn.rollback()
    _unchanged(seeded)


def test_service_role_bypasses_rls_and_can_write(seeded):
    with acting_as(seeded["url"], "service_role") as conn:
        for table in TABLES:
            assert len(visible(conn, table)) == 2, table
        file_id = seeded["seeds"][seeded["a"]]["file_id"]
        row = conn.execute("""UPDATE lora_training_files SET status = 'stale', stale_since = now()
                              WHERE id = %s RETURNING status""", (file_id,)).fetchone()
        assert row["status"] == "stale"
        conn.execute("INSERT INTO lora_training_files (owner_id, name, target_model) VALUES (%s, 'svc', 'm')",
                     (seeded["b"],))


def test_versions_are_immutable_even_for_the_owner(seeded):
    file_id = seeded["seeds"][seeded["a"]]["file_id"]
    with connect(seeded["url"]) as conn:
        with pytest.raises(psycopg.errors.RestrictViolation, match="immutable"):
            conn.execute("UPDATE lora_training_file_versions SET json_size = 1 WHERE file_id = %s", (file_id,))
        conn.rollback()
        # deleting the file removes its history (cascade); the other user's is untouched
        conn.execute("DELETE FROM lora_training_files WHERE id = %s", (file_id,))
        assert conn.execute("SELECT count(*) AS n FROM lora_training_file_versions").fetchone()["n"] == 1
        assert conn.execute("SELECT count(*) AS n FROM lora_training_file_members").fetchone()["n"] == 1
        assert conn.execute("SELECT count(*) AS n FROM lora_training_jobs").fetchone()["n"] == 1


def test_every_rls_table_with_an_owner_id_has_an_index_leading_with_it(db_url):
    with connect(db_url) as conn:
        rows = conn.execute("""
            SELECT c.relname,
                   EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a
                             ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                           WHERE i.indrelid = c.oid AND a.attname = 'owner_id') AS indexed
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity
              AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'owner_id'
                          AND NOT a.attisdropped)""").fetchall()
    assert {r["relname"] for r in rows} >= set(TABLES) - {"lora_training_file_versions"}
    assert [r["relname"] for r in rows if not r["indexed"]] == []
