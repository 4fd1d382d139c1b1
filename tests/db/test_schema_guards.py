"""What the migrations guard, one rule per test: each table's own RLS policy (pinned alone, with
the other policies made permissive, so one policy's slip is caught even while another would cover
for it), the version numbering, the job statuses, member positions and one active job per file."""
from __future__ import annotations

import uuid

import psycopg
import pytest

from lorafiles.db.connect import connect

from rlskit import TABLES, seed_user


@pytest.fixture
def two_owners(db_url):
    a, b = uuid.uuid4(), uuid.uuid4()
    with connect(db_url) as conn:
        seeds = {a: seed_user(conn, a), b: seed_user(conn, b)}
    return db_url, a, b, seeds


def _as_user_with_only_one_policy(conn: psycopg.Connection, table: str, user: uuid.UUID) -> None:
    """In this transaction: every lora_* policy except `table`'s lets everything through, then act
    as `user` (authenticated)."""
    for other in TABLES:
        if other != table:
            conn.execute(f"ALTER POLICY {other}_select_own ON public.{other} USING (true)")
    conn.execute("SET LOCAL ROLE authenticated")
    conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                 (f'{{"sub": "{user}", "role": "authenticated"}}',))


@pytest.mark.parametrize("table", TABLES)
def test_each_tables_own_policy_hides_other_owners_rows(two_owners, table):
    url, a, b, seeds = two_owners
    with connect(url) as conn:
        _as_user_with_only_one_policy(conn, table, a)
        rows = conn.execute(f"SELECT * FROM public.{table}").fetchall()
        # the other tables are wide open in this transaction (the check that the setup bites) ...
        opened = [t for t in TABLES if t != table]
        assert all(len(conn.execute(f"SELECT * FROM public.{t}").fetchall()) == 2 for t in opened)
        conn.rollback()
    # ... and this table's policy alone still shows `a` exactly its own row
    assert len(rows) == 1, table
    if table == "lora_training_file_versions":
        assert rows[0]["file_id"] == seeds[a]["file_id"]
    else:
        assert rows[0]["owner_id"] == a


def test_versions_start_at_one(two_owners):
    url, a, _b, seeds = two_owners
    with connect(url) as conn:
        with pytest.raises(psycopg.errors.CheckViolation, match="lora_training_file_versions_version_check"):
            conn.execute("""INSERT INTO lora_training_file_versions
                              (file_id, version, job_id, json_path, jsonl_path, json_size, jsonl_size, json_sha256,
                               jsonl_sha256, conversation_count, training_pair_count, total_turns, quality_summary,
                               scaffolding_distribution, created_at)
                            VALUES (%s, 0, %s, 'j', 'l', 1, 1, 'a', 'b', 1, 1, 1, '{}', '{}', now())""",
                         (seeds[a]["file_id"], seeds[a]["job_id"]))


@pytest.mark.parametrize("status", ["queued", "running", "succeeded", "failed", "cancelled", "done", ""])
def test_job_statuses_are_exactly_the_four(two_owners, status):
    url, a, _b, seeds = two_owners
    allowed = status in ("queued", "running", "succeeded", "failed")
    with connect(url) as conn:
        if allowed:
            conn.execute("UPDATE lora_training_jobs SET status = %s WHERE id = %s", (status, seeds[a]["job_id"]))
        else:
            with pytest.raises(psycopg.errors.CheckViolation, match="lora_training_jobs_status_check"):
                conn.execute("UPDATE lora_training_jobs SET status = %s WHERE id = %s", (status, seeds[a]["job_id"]))


def test_two_members_cannot_share_a_position(two_owners):
    url, a, _b, seeds = two_owners
    with connect(url) as conn:
        conn.execute("INSERT INTO conversations (conversation_id, created_by, enrichment_status) "
                     "VALUES ('second', %s, 'completed')", (a,))
        member = conn.execute("SELECT * FROM lora_training_file_members WHERE owner_id = %s", (a,)).fetchone()
        cols = [c for c in member if c not in ("conversation_id", "added_at")]
        with pytest.raises(psycopg.errors.UniqueViolation, match="lora_training_file_members_file_position_key"):
            conn.execute(f"INSERT INTO lora_training_file_members (conversation_id, {', '.join(cols)}) "
                         f"SELECT 'second', {', '.join(cols)} FROM lora_training_file_members WHERE owner_id = %s",
                         (a,))


def test_a_file_has_at_most_one_active_job(two_owners):
    url, a, _b, seeds = two_owners
    with connect(url) as conn:
        new = lambda key, status: conn.execute(  # noqa: E731
            "INSERT INTO lora_training_jobs (owner_id, file_id, kind, status, idempotency_key) "
            "VALUES (%s, %s, 'add', %s, %s)", (a, seeds[a]["file_id"], status, key))
        new("k-queued", "queued")
        new("k-done", "succeeded")  # ended jobs do not count
        with pytest.raises(psycopg.errors.UniqueViolation, match="lora_training_jobs_one_active_per_file"):
            new("k-running", "running")
