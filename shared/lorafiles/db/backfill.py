"""Data back-fills that migrations leave out on purpose, run in bounded batches.

``conversations.batch_id`` (migration 20260101000200) is filled for rows that existed before the
migration by ``public.lorafiles_backfill_batch_ids(max_rows)``: each call is one short
transaction that changes at most ``max_rows`` rows, and only rows whose value changes. Every
changed row fires the app's Database Webhook and its ``updated_at`` trigger once, so the batches
(and an optional pause between them) bound the burst; the enrichment webhook ignores these
updates (record and old_record differ only in columns it does not read). A re-run changes
nothing. Works through the transaction pooler (no session state).
"""
from __future__ import annotations

import time
from typing import Any

from .connect import Database

DEFAULT_BATCH_SIZE = 500


def backfill_batch_ids(db: Database | str, *, batch_size: int = DEFAULT_BATCH_SIZE, pause: float = 0.0,
                       max_batches: int | None = None) -> dict[str, Any]:
    """Run the batch_id back-fill until nothing is left (or ``max_batches``). Returns
    ``{"rows": changed rows, "batches": transactions that changed rows, "done": bool}``."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    database = Database(db) if isinstance(db, str) else db
    rows = batches = 0
    done = False
    try:
        while max_batches is None or batches < max_batches:
            with database.connection() as conn:
                changed = conn.execute("SELECT public.lorafiles_backfill_batch_ids(%s) AS n",
                                       (batch_size,)).fetchone()["n"]
            if not changed:
                done = True
                break
            rows += changed
            batches += 1
            if pause:
                time.sleep(pause)
    finally:
        if isinstance(db, str):
            database.close()
    return {"rows": rows, "batches": batches, "done": done}
