"""All SQL of the feature, behind one class. Callers own the transaction (the connection).

Guarding is done by the database: row locks (`FOR UPDATE`), the unique index on
(owner, name_key) (the NFKC case-folded name), the partial unique index "one active job per file", and primary keys
that make every pipeline write idempotent (`ON CONFLICT`).
"""
from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Iterable, Iterator, Sequence

import psycopg
from psycopg.types.json import Jsonb

from ..domain.rules import name_key
from ..domain.summary import ConversationStats

ACTIVE_JOB = ("queued", "running")
_STATS = tuple(ConversationStats.__dataclass_fields__)
_ITEM_COLS = (
    "conversation_pk", "batch_id", "source_file", "source_sha256", "json_fragment_key", "jsonl_fragment_key",
    "json_fragment_size", "jsonl_fragment_size", *_STATS, "warnings",
    "exports_fragment_key", "exports_fragment_size", "exports_layout", "export_stats", "policy_digest",
)
_JSONB = frozenset({"warnings", "consultant_profile", "exports_layout", "export_stats", "quality_summary",
                    "scaffolding_distribution", "policy", "artifacts", "export_summary", "error", "request"})
FRAGMENT_COLUMNS = ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key")
ITEM_COLUMNS = _ITEM_COLS


def _jsonb(row: dict[str, Any]) -> dict[str, Any]:
    """Wrap the JSONB columns' values for psycopg."""
    return {k: Jsonb(v) if k in _JSONB and v is not None else v for k, v in row.items()}
_MEMBER_COPY = ", ".join(_ITEM_COLS)


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def is_uuid(value: Any) -> bool:
    """Ids from users are looked up only when they are UUIDs in the 8-4-4-4-12 hex form (anything
    else simply is not found). Stricter than uuid.UUID, which also takes `urn:uuid:…`, braces and
    bare hex that PostgreSQL's uuid type does not all accept."""
    return isinstance(value, (str, uuid.UUID)) and (isinstance(value, uuid.UUID)
                                                    or _UUID_TEXT.fullmatch(value) is not None)


class Repository:
    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        return self.conn.execute(sql, params).fetchone()

    def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return self.conn.execute(sql, params).fetchall()

    # --- conversations -------------------------------------------------------------------
    def conversations_for_owner(self, owner_id: str, conversation_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Rows of the given ids that belong to the owner; other people's ids are simply absent."""
        rows = self._all(
            """select id as conversation_pk, conversation_id, created_by, enrichment_status, enriched_file_path,
                      enriched_file_size, batch_id, created_at, persona_key, emotional_arc_key, topic_key,
                      scaffolding_snapshot
                 from conversations where conversation_id = any(%s) and created_by = %s""",
            (list(set(conversation_ids)), owner_id),
        )
        return {r["conversation_id"]: r for r in rows}

    def upsert_conversation(self, row: dict[str, Any]) -> bool:
        """Insert or refresh the owner's conversation; False when the id belongs to someone else."""
        return self.conn.execute(
            """insert into conversations (conversation_id, created_by, enrichment_status, enriched_file_path,
                                          enriched_file_size, enriched_at, processing_status, storage_bucket,
                                          persona_key, emotional_arc_key, topic_key, turn_count, quality_score)
               values (%(conversation_id)s, %(created_by)s, 'completed', %(enriched_file_path)s, %(enriched_file_size)s,
                       now(), 'completed', 'conversation-files', %(persona_key)s, %(emotional_arc_key)s,
                       %(topic_key)s, %(turn_count)s, %(quality_score)s)
               on conflict (conversation_id) do update set
                   enrichment_status = 'completed', enriched_file_path = excluded.enriched_file_path,
                   enriched_file_size = excluded.enriched_file_size, enriched_at = now(),
                   processing_status = 'completed', updated_at = now()
               where conversations.created_by is not distinct from excluded.created_by
               returning id""",
            row,
        ).fetchone() is not None

    def ensure_batch_link(self, batch_id: str, conversation_id: str, owner_id: str) -> None:
        """Record that `batch_id` generated the conversation (batch_items is the source of truth)."""
        self.conn.execute(
            """insert into batch_jobs (id, name, status, job_type, created_by)
               values (%s, 'imported', 'completed', 'generation', %s) on conflict (id) do nothing""",
            (batch_id, owner_id),
        )
        self.conn.execute(
            """insert into batch_items (batch_job_id, conversation_id, status)
               select %s, c.id, 'completed' from conversations c
                where c.conversation_id = %s and c.created_by = %s
                  and not exists (select 1 from batch_items b where b.batch_job_id = %s and b.conversation_id = c.id)""",
            (batch_id, conversation_id, owner_id, batch_id),
        )

    # --- files ---------------------------------------------------------------------------
    def _owned_row(self, table: str, row_id: str, owner_id: str | None, lock: bool) -> dict[str, Any] | None:
        """One row by id (optionally only the owner's, optionally locked); non-UUID ids are not found."""
        if not is_uuid(row_id):
            return None
        sql = f"select * from {table} where id = %s" + (" and owner_id = %s" if owner_id is not None else "")
        params = [row_id] + ([owner_id] if owner_id is not None else [])
        return self._one(sql + (" for update" if lock else ""), params)

    def file(self, file_id: str, owner_id: str | None = None, *, lock: bool = False) -> dict[str, Any] | None:
        return self._owned_row("lora_training_files", file_id, owner_id, lock)

    def file_by_name(self, owner_id: str, name: str) -> dict[str, Any] | None:
        """The owner's file whose name is the same as `name` (domain.rules.name_key; the database's
        generated `name_key` column is the same function and holds the unique index)."""
        return self._one("select * from lora_training_files where owner_id = %s and name_key = %s",
                         (owner_id, name_key(name)))

    def files(self, owner_id: str) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_files where owner_id = %s order by created_at desc, id",
                         (owner_id,))

    def insert_file(self, owner_id: str, name: str, description: str | None, target_model: str,
                    created_at: Any, policy: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._one(
            """insert into lora_training_files (owner_id, name, description, target_model, created_at, policy)
               values (%s, %s, %s, %s, %s, %s) returning *""",
            (owner_id, name, description, target_model, created_at, Jsonb(policy or {})),
        )

    def delete_file(self, file_id: str) -> None:
        self.conn.execute("delete from lora_training_files where id = %s", (file_id,))

    def member_ids(self, file_id: str, among: Iterable[str] | None = None) -> set[str]:
        if among is None:
            rows = self._all("select conversation_id from lora_training_file_members where file_id = %s", (file_id,))
        else:
            rows = self._all(
                "select conversation_id from lora_training_file_members where file_id = %s and conversation_id = any(%s)",
                (file_id, list(among)),
            )
        return {r["conversation_id"] for r in rows}

    def member_ids_with_prefixes(self, file_id: str, length: int, prefixes: Sequence[str]) -> list[str]:
        """Members whose conversation id starts with one of `prefixes` (each `length` characters), in file order."""
        rows = self._all("""select conversation_id from lora_training_file_members
                             where file_id = %s and left(conversation_id, %s) = any(%s) order by position""",
                         (file_id, length, list(prefixes)))
        return [r["conversation_id"] for r in rows]

    def members(self, file_id: str) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_file_members where file_id = %s order by position", (file_id,))

    def members_rendered_otherwise(self, file_id: str, policy_digest: str) -> list[str]:
        """Members (in order) whose exports were not rendered under the given policy."""
        rows = self._all("""select conversation_id from lora_training_file_members
                             where file_id = %s and policy_digest is distinct from %s order by position""",
                         (file_id, policy_digest))
        return [r["conversation_id"] for r in rows]

    def members_by_ids(self, file_id: str, conversation_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        rows = self._all("select * from lora_training_file_members where file_id = %s and conversation_id = any(%s)",
                         (file_id, list(conversation_ids)))
        return {r["conversation_id"]: r for r in rows}

    def versions(self, file_id: str) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_file_versions where file_id = %s order by version", (file_id,))

    def version(self, file_id: str, version: int) -> dict[str, Any] | None:
        return self._one("select * from lora_training_file_versions where file_id = %s and version = %s",
                         (file_id, version))

    # --- jobs ----------------------------------------------------------------------------
    def insert_job(self, job: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Insert a job, or return the existing one with the same idempotency key. (row, created)."""
        row = self._one(
            """insert into lora_training_jobs (owner_id, file_id, kind, file_name, description, requested_ids,
                                               rerender_ids, policy, batch_size, total_batches, idempotency_key,
                                               created_at, request, request_fingerprint)
               values (%(owner_id)s, %(file_id)s, %(kind)s, %(file_name)s, %(description)s, %(requested_ids)s,
                       %(rerender_ids)s, %(policy)s, %(batch_size)s, %(total_batches)s, %(idempotency_key)s,
                       %(created_at)s, %(request)s, %(request_fingerprint)s)
               on conflict (owner_id, idempotency_key) do nothing returning *""",
            _jsonb({"rerender_ids": [], "policy": None, "request": None, "request_fingerprint": None, **job}),
        )
        if row is not None:
            return row, True
        return self.job_by_key(job["owner_id"], job["idempotency_key"]), False

    def job_by_key(self, owner_id: str, idempotency_key: str) -> dict[str, Any] | None:
        return self._one("select * from lora_training_jobs where owner_id = %s and idempotency_key = %s",
                         (owner_id, idempotency_key))

    def job(self, job_id: str, owner_id: str | None = None, *, lock: bool = False) -> dict[str, Any] | None:
        return self._owned_row("lora_training_jobs", job_id, owner_id, lock)

    def active_job_for_file(self, file_id: str) -> dict[str, Any] | None:
        return self._one(
            "select * from lora_training_jobs where file_id = %s and status = any(%s) order by created_at limit 1",
            (file_id, list(ACTIVE_JOB)),
        )

    def jobs_for_file(self, file_id: str, limit: int = 20) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_jobs where file_id = %s order by created_at desc limit %s",
                         (file_id, limit))

    def update_job(self, job_id: str, **fields: Any) -> dict[str, Any]:
        cols = ", ".join(f"{k} = %({k})s" for k in fields)
        values = _jsonb(fields)
        return self._one(f"update lora_training_jobs set {cols} where id = %(_id)s returning *", {**values, "_id": job_id})

    def open_job(self, job_id: str, step: str) -> dict[str, Any] | None:
        """Mark a job that has not ended running at `step` (None when there is no such job or it
        ended); `started_at` is set once, by the database's clock, at the first step that opens it."""
        if not is_uuid(job_id):
            return None
        return self._one("update lora_training_jobs set status = 'running', step = %s,"
                         " started_at = coalesce(started_at, now())"
                         " where id = %s and status = any(%s) returning *", (step, job_id, list(ACTIVE_JOB)))

    def record_first_error(self, job_id: str, error: dict[str, Any]) -> None:
        self.conn.execute("update lora_training_jobs set error = %s where id = %s and error is null"
                          " and status <> 'succeeded'", (Jsonb(error), job_id))

    def mark_batch_done(self, job_id: str, batch_index: int) -> None:
        self.conn.execute(
            """update lora_training_jobs
                  set completed_batches = array(select distinct unnest(completed_batches || %s::int) order by 1)
                where id = %s""",
            (batch_index, job_id),
        )

    def stuck_jobs(self, older_than_seconds: int) -> list[dict[str, Any]]:
        return self._all(
            """select * from lora_training_jobs where status = any(%s)
                 and updated_at < now() - make_interval(secs => %s) order by updated_at""",
            (list(ACTIVE_JOB), older_than_seconds),
        )

    # --- staged items --------------------------------------------------------------------
    def upsert_items(self, items: list[dict[str, Any]]) -> None:
        """Stage a batch's items in one pipelined statement; re-staging the same item is a no-op."""
        if not items:
            return
        cols = ("job_id", "conversation_id", "owner_id", "position", *_ITEM_COLS, "vertical", "consultant_profile")
        updates = ", ".join(f"{c} = excluded.{c}" for c in cols[2:])
        with self.conn.cursor() as cur:
            cur.executemany(
                f"""insert into lora_training_job_items ({", ".join(cols)})
                    values ({", ".join(f"%({c})s" for c in cols)})
                    on conflict (job_id, conversation_id) do update set {updates}""",
                [_jsonb({k: item[k] for k in cols}) for item in items],
            )

    def delete_items(self, job_id: str) -> None:
        self.conn.execute("delete from lora_training_job_items where job_id = %s", (job_id,))

    def item_fragment_keys(self, job_id: str) -> list[str]:
        rows = self._all(f"select {', '.join(FRAGMENT_COLUMNS)} from lora_training_job_items where job_id = %s",
                         (job_id,))
        return [r[k] for r in rows for k in FRAGMENT_COLUMNS if r[k]]

    def referenced_fragment_keys(self, file_id: str) -> set[str]:
        rows = self._all(f"select {', '.join(FRAGMENT_COLUMNS)} from lora_training_file_members where file_id = %s",
                         (file_id,))
        return {r[k] for r in rows for k in FRAGMENT_COLUMNS if r[k]}

    def first_item(self, job_id: str) -> dict[str, Any] | None:
        return self._one("select vertical, consultant_profile from lora_training_job_items where job_id = %s "
                         "order by position limit 1", (job_id,))

    def count_items(self, job_id: str) -> int:
        return self._one("select count(*) as n from lora_training_job_items where job_id = %s", (job_id,))["n"]

    def version_entries(self, file_id: str, job_id: str) -> Iterator[dict[str, Any]]:
        """The next version's conversations in order: current members (replaced by this job's item
        where the job regenerates them), then this job's new items. Streams with a server-side cursor."""
        fields = ("source_file", "source_sha256", "json_fragment_key", "jsonl_fragment_key", "batch_id", *_STATS,
                  "exports_fragment_key", "exports_layout", "export_stats", "policy_digest", "warnings")
        cols = ", ".join(f"case when i.job_id is null then m.{c} else i.{c} end as {c}" for c in fields)
        new_cols = ", ".join(f"i.{c}" for c in fields)
        sql = f"""
            select * from (
              select 0 as part, m.position as ord, m.conversation_id, {cols}
                from lora_training_file_members m
                left join lora_training_job_items i on i.job_id = %(job)s and i.conversation_id = m.conversation_id
               where m.file_id = %(file)s
              union all
              select 1 as part, i.position as ord, i.conversation_id, {new_cols}
                from lora_training_job_items i
               where i.job_id = %(job)s
                 and not exists (select 1 from lora_training_file_members m
                                  where m.file_id = %(file)s and m.conversation_id = i.conversation_id)
            ) e order by part, ord"""
        with self.conn.cursor(name=f"entries_{job_id.replace('-', '')}") as cur:
            cur.itersize = 500
            cur.execute(sql, {"job": job_id, "file": file_id})
            yield from cur

    # --- publishing ----------------------------------------------------------------------
    def publish(self, *, file_row: dict[str, Any], job: dict[str, Any], version_row: dict[str, Any],
                file_fields: dict[str, Any]) -> None:
        """Make the staged items members and point the file at the new version (caller holds the file lock)."""
        file_id, job_id = file_row["id"], job["id"]
        vr = _jsonb(version_row)
        self.conn.execute(
            f"insert into lora_training_file_versions ({', '.join(vr)}) values ({', '.join(f'%({k})s' for k in vr)})", vr)
        # regenerated members: replace their content in place
        sets = ", ".join(f"{c} = i.{c}" for c in _ITEM_COLS)
        self.conn.execute(
            f"""update lora_training_file_members m set {sets}, job_id = i.job_id
                  from lora_training_job_items i
                 where i.job_id = %s and m.file_id = %s and m.conversation_id = i.conversation_id""",
            (job_id, file_id),
        )
        # new members, appended after the current last position in requested order
        self.conn.execute(
            f"""insert into lora_training_file_members
                    (file_id, conversation_id, owner_id, position, added_by, job_id, {_MEMBER_COPY})
                select %(file)s, i.conversation_id, i.owner_id,
                       coalesce((select max(position) from lora_training_file_members where file_id = %(file)s), 0)
                         + row_number() over (order by i.position),
                       %(owner)s, i.job_id, {", ".join(f"i.{c}" for c in _ITEM_COLS)}
                  from lora_training_job_items i
                 where i.job_id = %(job)s
                   and not exists (select 1 from lora_training_file_members m
                                    where m.file_id = %(file)s and m.conversation_id = i.conversation_id)""",
            {"file": file_id, "job": job_id, "owner": job["owner_id"]},
        )
        ff = _jsonb(file_fields)
        cols = ", ".join(f"{k} = %({k})s" for k in ff)
        self.conn.execute(
            f"""update lora_training_files set {cols},
                       batch_ids = array(select distinct batch_id from lora_training_file_members
                                          where file_id = %(_id)s and batch_id is not null order by 1),
                       updated_at = now()
                 where id = %(_id)s""",
            {**ff, "_id": file_id},
        )
        self.delete_items(job_id)

    # --- staleness (events and schedule) ------------------------------------------------
    def stale_files(self) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_files where status = 'stale' order by stale_since, id")

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """The conversation by business key, whoever owns it (events carry no owner)."""
        return self.conn.execute(
            """select id as conversation_pk, conversation_id, created_by, enrichment_status, enriched_file_path,
                      enriched_file_size, enriched_at
                 from conversations where conversation_id = %s""",
            (conversation_id,),
        ).fetchone()

    def memberships(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every file that holds the conversation, with what was recorded at inclusion."""
        return self.conn.execute(
            """select m.file_id, m.owner_id, m.source_file, m.source_sha256, f.status, f.stale_since
                 from lora_training_file_members m join lora_training_files f on f.id = m.file_id
                where m.conversation_id = %s order by m.file_id""",
            (conversation_id,),
        ).fetchall()

    def mark_stale(self, file_ids: Sequence[str]) -> list[dict[str, Any]]:
        """Mark files stale; returns (id, owner_id, previous_status, stale_since) of the rows touched.

        A mark made while a
        job of the file is active and was created at/after `stale_since` moves `stale_since` to
        now, so that job's publish (which clears staleness only when `stale_since` is older than
        the job) keeps the file stale: the job may have read the enriched file before it changed.
        Marking again with no such job changes nothing (idempotent).
        """
        return self.conn.execute(
            """with target as (
                   select id, status, stale_since from lora_training_files
                    where id = any(%(ids)s) and status <> 'creating' order by id for update)
               update lora_training_files f
                  set status = 'stale',
                      stale_since = case
                          when t.stale_since is null then clock_timestamp()
                          when exists (select 1 from lora_training_jobs j
                                        where j.file_id = f.id and j.status = any(%(active)s)
                                          and j.created_at >= t.stale_since) then clock_timestamp()
                          else t.stale_since end
                 from target t
                where f.id = t.id
            returning f.id, f.owner_id, t.status as previous_status, f.stale_since""",
            {"ids": list(file_ids), "active": list(ACTIVE_JOB)},
        ).fetchall()

    def last_enriched_at(self, file_id: str) -> datetime | None:
        """The latest enrichment time among the file's members."""
        return self.conn.execute(
            """select max(c.enriched_at) as t from lora_training_file_members m
                 join conversations c on c.conversation_id = m.conversation_id where m.file_id = %s""",
            (file_id,),
        ).fetchone()["t"]

    def jobs_with_key_prefix(self, owner_id: str, file_id: str, prefix: str) -> list[dict[str, Any]]:
        return self.conn.execute(
            """select id, status, idempotency_key, execution_arn, created_at from lora_training_jobs
                where owner_id = %s and file_id = %s and starts_with(idempotency_key, %s)
                order by created_at""",
            (owner_id, file_id, prefix),
        ).fetchall()

    # --- crash recovery (issue 9) -----------------------------------------------------------
    def active_jobs(self) -> list[dict[str, Any]]:
        return self._all("select * from lora_training_jobs where status = any(%s) order by created_at",
                         (list(ACTIVE_JOB),))

    def referenced_object_keys(self, file_id: str, prefix: str, except_job: str) -> set[str]:
        """Every object key under `prefix` that a row of the file still names: any text column of
        its members, or of the staged items of its other jobs (whatever columns they grow)."""
        rows = self._all(
            """select e.value as key
                 from lora_training_file_members m, jsonb_each_text(to_jsonb(m)) e
                where m.file_id = %(file)s and starts_with(e.value, %(prefix)s)
               union
               select e.value
                 from lora_training_job_items i join lora_training_jobs j on j.id = i.job_id,
                      jsonb_each_text(to_jsonb(i)) e
                where j.file_id = %(file)s and i.job_id <> %(job)s and starts_with(e.value, %(prefix)s)""",
            {"file": file_id, "prefix": prefix, "job": except_job},
        )
        return {r["key"] for r in rows}
