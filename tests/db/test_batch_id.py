"""conversations.batch_id: maintained from batch_items by trigger, back-filled in bounded batches
(only rows whose value changes), indexed."""
from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import psycopg

from lorafiles.db.backfill import backfill_batch_ids
from lorafiles.db.connect import Database, connect
from lorafiles.db.migrate import apply_migrations

MIGRATION_200 = Path(__file__).resolve().parents[2] / "migrations" / "20260101000200_conversation_batch_id.sql"


def new_job(conn: psycopg.Connection, owner: uuid.UUID | None = None) -> uuid.UUID:
    return conn.execute("INSERT INTO batch_jobs (name, status, created_by, job_type) "
                        "VALUES ('batch', 'completed', %s, 'generation') RETURNING id", (owner,)).fetchone()["id"]


def new_conversation(conn: psycopg.Connection, owner: uuid.UUID | None = None) -> uuid.UUID:
    return conn.execute("INSERT INTO conversations (conversation_id, created_by) VALUES (%s, %s) RETURNING id",
                        (str(uuid.uuid4()), owner)).fetchone()["id"]


def new_item(conn: psycopg.Connection, job: uuid.UUID | None, conv: uuid.UUID | None,
             updated_at: str | None = "now") -> uuid.UUID:
    return conn.execute("""INSERT INTO batch_items (batch_job_id, position, status, conversation_id, updated_at)
                           VALUES (%s, 1, 'completed', %s, %s::timestamptz) RETURNING id""",
                        (job, conv, updated_at)).fetchone()["id"]


def batch_of(conn: psycopg.Connection, conv: uuid.UUID) -> uuid.UUID | None:
    return conn.execute("SELECT batch_id FROM conversations WHERE id = %s", (conv,)).fetchone()["batch_id"]


def test_column_is_a_nullable_fk_to_batch_jobs(db_url):
    with connect(db_url) as conn:
        fk = conn.execute("""
            SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint
            WHERE conrelid = 'conversations'::regclass AND contype = 'f'
              AND pg_get_constraintdef(oid) LIKE 'FOREIGN KEY (batch_id)%%'""").fetchone()
        assert fk["d"] == "FOREIGN KEY (batch_id) REFERENCES batch_jobs(id) ON DELETE SET NULL"


def test_insert_move_and_delete_items(db: Database):
    with db.connection() as conn:
        j1, j2 = new_job(conn), new_job(conn)
        c = new_conversation(conn)
        assert batch_of(conn, c) is None

        item = new_item(conn, j1, c)
        assert batch_of(conn, c) == j1

        # moving the item to another batch job follows it
        conn.execute("UPDATE batch_items SET batch_job_id = %s WHERE id = %s", (j2, item))
        assert batch_of(conn, c) == j2

        # deleting the item clears it
        conn.execute("DELETE FROM batch_items WHERE id = %s", (item,))
        assert batch_of(conn, c) is None


def test_delete_falls_back_to_the_latest_remaining_item(db: Database):
    with db.connection() as conn:
        j_old, j_mid, j_new = new_job(conn), new_job(conn), new_job(conn)
        c = new_conversation(conn)
        new_item(conn, j_mid, c, "2025-11-02")
        new_item(conn, j_old, c, None)  # NULL updated_at sorts last
        newest = new_item(conn, j_new, c, "2025-11-03")
        assert batch_of(conn, c) == j_new
        conn.execute("DELETE FROM batch_items WHERE id = %s", (newest,))
        assert batch_of(conn, c) == j_mid


def test_moving_an_item_to_another_conversation_updates_both(db: Database):
    with db.connection() as conn:
        j = new_job(conn)
        c1, c2 = new_conversation(conn), new_conversation(conn)
        item = new_item(conn, j, c1)
        conn.execute("UPDATE batch_items SET conversation_id = %s WHERE id = %s", (c2, item))
        assert batch_of(conn, c1) is None
        assert batch_of(conn, c2) == j
        conn.execute("UPDATE batch_items SET conversation_id = NULL WHERE id = %s", (item,))
        assert batch_of(conn, c2) is None


def test_other_column_updates_do_not_touch_conversations(db: Database):
    with db.connection() as conn:
        j = new_job(conn)
        c = new_conversation(conn)
        item = new_item(conn, j, c)
        xmin = conn.execute("SELECT xmin::text AS x FROM conversations WHERE id = %s", (c,)).fetchone()["x"]
    with db.connection() as conn:
        conn.execute("UPDATE batch_items SET status = 'failed', progress = 100 WHERE id = %s", (item,))
        conn.execute("UPDATE batch_items SET batch_job_id = batch_job_id WHERE id = %s", (item,))  # no-op value
        assert conn.execute("SELECT xmin::text AS x FROM conversations WHERE id = %s", (c,)).fetchone()["x"] == xmin


def test_deleting_a_batch_job_cascades_cleanly(db: Database):
    with db.connection() as conn:
        j1, j2 = new_job(conn), new_job(conn)
        c = new_conversation(conn)
        new_item(conn, j1, c, "2025-11-01")
        new_item(conn, j2, c, "2025-11-05")
        assert batch_of(conn, c) == j2
        conn.execute("DELETE FROM batch_jobs WHERE id = %s", (j2,))  # its items go (cascade)
        assert batch_of(conn, c) == j1
        conn.execute("DELETE FROM batch_jobs WHERE id = %s", (j1,))
        assert batch_of(conn, c) is None


def test_deleting_a_conversation_keeps_items(db: Database):
    with db.connection() as conn:
        j = new_job(conn)
        c = new_conversation(conn)
        item = new_item(conn, j, c)
        conn.execute("DELETE FROM conversations WHERE id = %s", (c,))
        row = conn.execute("SELECT conversation_id FROM batch_items WHERE id = %s", (item,)).fetchone()
        assert row["conversation_id"] is None


def test_sync_works_when_an_rls_restricted_role_writes_items(db: Database):
    """The trigger is SECURITY DEFINER: a role that may write batch_items but not
    conversations still keeps batch_id right."""
    with db.connection() as conn:
        j = new_job(conn)
        c = new_conversation(conn)
        conn.execute("GRANT INSERT, SELECT ON batch_items TO authenticated")
    with db.connection() as conn:
        conn.execute("SET LOCAL ROLE authenticated")
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (json.dumps({"sub": str(uuid.uuid4())}),))
        conn.execute("INSERT INTO batch_items (batch_job_id, position, conversation_id) VALUES (%s, 1, %s)", (j, c))
    with db.connection() as conn:
        assert batch_of(conn, c) == j


def test_backfill_of_rows_that_existed_before_the_migration(empty_db_url):
    assert apply_migrations(empty_db_url, upto="20260101000100")
    with connect(empty_db_url) as conn:
        j1, j2, j3 = new_job(conn), new_job(conn), new_job(conn)
        single = new_conversation(conn)
        new_item(conn, j1, single, "2025-11-01")
        several = new_conversation(conn)
        new_item(conn, j1, several, "2025-11-01")
        new_item(conn, j3, several, None)
        new_item(conn, j2, several, "2025-11-09")
        new_item(conn, j1, several, "2025-11-05")
        nulls_only = new_conversation(conn)
        new_item(conn, j3, nulls_only, None)
        orphan_item_job = new_conversation(conn)
        new_item(conn, None, orphan_item_job, "2025-11-01")
        lonely = new_conversation(conn)
        new_item(conn, None, None)

    applied = apply_migrations(empty_db_url)
    assert applied[0] == "20260101000200_conversation_batch_id.sql"
    with connect(empty_db_url) as conn:
        # the migration itself changes no data: the back-fill runs after it, in batches
        assert batch_of(conn, single) is None
    assert backfill_batch_ids(empty_db_url, batch_size=2) == {"rows": 3, "batches": 2, "done": True}
    with connect(empty_db_url) as conn:
        assert batch_of(conn, single) == j1
        assert batch_of(conn, several) == j2
        assert batch_of(conn, nulls_only) == j3
        assert batch_of(conn, orphan_item_job) is None
        assert batch_of(conn, lonely) is None


def test_backfill_touches_only_changed_rows_in_bounded_batches(empty_db_url):
    """The app's `updated_at` trigger and Database Webhook fire once per UPDATEd row: the back-fill
    must update only conversations whose batch_id changes, at most batch_size per transaction."""
    apply_migrations(empty_db_url, upto="20260101000100")
    with connect(empty_db_url) as conn:
        # stand-in for the app's per-row triggers: log each row update with its transaction
        conn.execute("""
            CREATE TABLE row_updates (conversation uuid, tx bigint);
            CREATE FUNCTION count_update() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO row_updates VALUES (NEW.id, txid_current()); RETURN NEW; END $$;
            CREATE TRIGGER app_updated_at BEFORE UPDATE ON conversations
              FOR EACH ROW EXECUTE FUNCTION count_update();""")
        job = new_job(conn)
        in_batch = [new_conversation(conn) for _ in range(7)]
        for c in in_batch:
            new_item(conn, job, c, "2025-11-01")
        untouched = [new_conversation(conn) for _ in range(293)]  # no batch item: batch_id stays NULL
    apply_migrations(empty_db_url)
    with connect(empty_db_url) as conn:
        assert conn.execute("SELECT count(*) AS n FROM row_updates").fetchone()["n"] == 0

    assert backfill_batch_ids(empty_db_url, batch_size=3) == {"rows": 7, "batches": 3, "done": True}
    with connect(empty_db_url) as conn:
        updates = conn.execute("SELECT conversation, tx FROM row_updates").fetchall()
        assert sorted(u["conversation"] for u in updates) == sorted(in_batch)  # 7 of 300, once each
        per_tx = conn.execute("SELECT count(*) AS n FROM row_updates GROUP BY tx ORDER BY n DESC").fetchall()
        assert [r["n"] for r in per_tx] == [3, 3, 1]
        assert all(batch_of(conn, c) == job for c in in_batch)
        assert all(batch_of(conn, c) is None for c in untouched[:5])

    # a second run, and re-running the migration's SQL, touch nothing
    assert backfill_batch_ids(empty_db_url) == {"rows": 0, "batches": 0, "done": True}
    with connect(empty_db_url) as conn:
        conn.execute(MIGRATION_200.read_text())
        assert conn.execute("SELECT count(*) AS n FROM row_updates").fetchone()["n"] == 7


def test_indexes_exist(db_url):
    with connect(db_url) as conn:
        defs = {r["indexname"]: r["indexdef"] for r in conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'conversations'")}
    assert defs["conversations_batch_id_idx"].endswith("USING btree (batch_id)")
    assert defs["conversations_created_by_batch_id_idx"].endswith("USING btree (created_by, batch_id)")


def _plan(conn: psycopg.Connection, query: str, params: tuple[Any, ...]) -> str:
    rows = conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchall()
    return json.dumps(rows[0]["QUERY PLAN"])


def test_filter_and_sort_by_batch_id_use_the_indexes(db: Database):
    owners = [uuid.uuid4() for _ in range(20)]
    with db.connection() as conn:
        jobs = [new_job(conn) for _ in range(60)]
        conn.execute("""
            INSERT INTO conversations (conversation_id, created_by)
            SELECT gen_random_uuid()::text, (%s::uuid[])[1 + g %% 20] FROM generate_series(1, 6000) g""",
                     (owners,))
        conn.execute("""
            INSERT INTO batch_items (batch_job_id, position, conversation_id)
            SELECT (%s::uuid[])[1 + (row_number() OVER () %% 60)::int], 1, id FROM conversations""",
                     (jobs,))
        conn.execute("ANALYZE conversations")
    with db.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM conversations WHERE batch_id IS NULL").fetchone()["n"] == 0
        plan = _plan(conn, "SELECT id FROM conversations WHERE batch_id = %s", (jobs[7],))
        assert "conversations_batch_id_idx" in plan or "conversations_created_by_batch_id_idx" in plan, plan
        plan = _plan(conn, "SELECT id FROM conversations WHERE created_by = %s AND batch_id = %s "
                           "ORDER BY created_at DESC LIMIT 25", (owners[3], jobs[7]))
        assert "conversations_created_by_batch_id_idx" in plan, plan
        plan = _plan(conn, "SELECT id, batch_id FROM conversations ORDER BY batch_id LIMIT 25", ())
        assert "conversations_batch_id_idx" in plan, plan
