"""Row level security on the lora_* tables: authenticated users read only their own rows,
write nothing; anon gets nothing; service_role and the owner bypass RLS; versions are immutable."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from lorafiles.db.connect import connect

TABLES = ["lora_training_files", "lora_training_jobs", "lora_training_job_items",
          "lora_training_file_members", "lora_training_file_versions"]

STATS = {
    "source_file": "o/c/enriched.json", "source_sha256": "ab" * 32,
    "json_fragment_key": "o/f/fragments/c/x.json", "jsonl_fragment_key": "o/f/fragments/c/x.jsonl",
    "json_fragment_size": 100, "jsonl_fragment_size": 80, "pairs": 5, "training_pairs": 5,
    "quality_sum": 15.0, "quality_count": 5, "quality_min": 3.0, "quality_max": 3.0,
    "human_reviewed": 0, "quality_tier": "good", "persona_key": "anxious_planner",
}


def _insert(conn: psycopg.Connection, table: str, row: dict[str, Any], returning: str | None = None) -> Any:
    q = f"INSERT INTO {table} ({', '.join(row)}) VALUES ({', '.join(['%s'] * len(row))})"
    if returning:
        q += f" RETURNING {returning}"
    cur = conn.execute(q, [psycopg.types.json.Jsonb(v) if isinstance(v, dict) else v
                           for v in row.values()])
    return cur.fetchone()[returning] if returning else None


def seed_user(conn: psycopg.Connection, owner: uuid.UUID) -> dict[str, Any]:
    """One row in each lora_* table for ``owner`` (as the database owner: RLS bypassed)."""
    conv_id = f"conv-{owner}"
    conv_pk = _insert(conn, "conversations", {"conversation_id": conv_id, "created_by": owner,
                                              "enrichment_status": "completed"}, "id")
    file_id = _insert(conn, "lora_training_files",
                      {"owner_id": owner, "name": f"file {owner}", "target_model": "m", "status": "ready",
                       "current_version": 1}, "id")
    job_id = _insert(conn, "lora_training_jobs",
                     {"owner_id": owner, "file_id": file_id, "kind": "create", "status": "succeeded",
                      "idempotency_key": "k", "requested_ids": [conv_id]}, "id")
    _insert(conn, "lora_training_job_items",
            {"job_id": job_id, "conversation_id": conv_id, "owner_id": owner, "position": 1,
             "conversation_pk": conv_pk, **STATS})
    _insert(conn, "lora_training_file_members",
            {"file_id": file_id, "conversation_id": conv_id, "owner_id": owner, "position": 1,
             "added_by": owner, "job_id": job_id, "conversation_pk": conv_pk, **STATS})
    _insert(conn, "lora_training_file_versions",
            {"file_id": file_id, "version": 1, "job_id": job_id,
             "json_path": f"{owner}/{file_id}/v1/training.json", "jsonl_path": f"{owner}/{file_id}/v1/training.jsonl",
             "json_size": 10, "jsonl_size": 8, "json_sha256": "a" * 64, "jsonl_sha256": "b" * 64,
             "conversation_count": 1, "training_pair_count": 5, "total_turns": 10,
             "quality_summary": {"avg": 3.0}, "scaffolding_distribution": {}, "created_at": "2026-01-01T00:00:00Z"})
    return {"file_id": file_id, "job_id": job_id, "conversation_id": conv_id}


@pytest.fixture
def seeded(db_url: str) -> dict[str, Any]:
    a, b = uuid.uuid4(), uuid.uuid4()
    with connect(db_url) as conn:
        seeds = {a: seed_user(conn, a), b: seed_user(conn, b)}
    return {"url": db_url, "a": a, "b": b, "seeds": seeds}


@contextmanager
def acting_as(url: str, role: str, user: uuid.UUID | None = None) -> Iterator[psycopg.Connection]:
    """A transaction running as ``role`` with the JWT claims of ``user`` (like PostgREST)."""
    with connect(url) as conn:
        conn.execute(f"SET LOCAL ROLE {role}")
        if user is not None:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                         (json.dumps({"sub": str(user), "role": role}),))
        try:
            yield conn
        finally:
            conn.rollback()


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


@pytest.mark.parametrize("statement", [
    "INSERT INTO lora_training_files (owner_id, name, target_model) VALUES (auth.uid(), 'mine', 'm')",
    "INSERT INTO lora_training_jobs (owner_id, kind, idempotency_key) VALUES (auth.uid(), 'create', 'x')",
    "UPDATE lora_training_files SET name = 'renamed' WHERE owner_id = auth.uid()",
    "UPDATE lora_training_jobs SET status = 'failed' WHERE owner_id = auth.uid()",
    "UPDATE lora_training_file_members SET position = 9 WHERE owner_id = auth.uid()",
    "UPDATE lora_training_job_items SET pairs = 0 WHERE owner_id = auth.uid()",
    "UPDATE lora_training_file_versions SET json_size = 0",
    "DELETE FROM lora_training_files WHERE owner_id = auth.uid()",
    "DELETE FROM lora_training_file_members WHERE owner_id = auth.uid()",
])
def test_authenticated_cannot_write(seeded, statement):
    with acting_as(seeded["url"], "authenticated", seeded["a"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with connect(seeded["url"]) as conn:  # nothing changed
        names = {r["name"] for r in conn.execute("SELECT name FROM lora_training_files")}
        assert names == {f"file {seeded['a']}", f"file {seeded['b']}"}


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
