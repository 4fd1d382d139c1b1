"""Seeding and acting-as helpers of the RLS tests (tests/db/test_rls.py, test_schema_guards.py)."""
from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

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
