"""Migration runner and schema: idempotence, Supabase no-op baseline, checksums, constraints."""
from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from lorafiles.db.backfill import backfill_batch_ids
from lorafiles.db.connect import Database, connect
from lorafiles.db.migrate import (
    MigrationError,
    applied_migrations,
    apply_migrations,
    default_migrations_dir,
    discover,
)

ALL = [m.name for m in discover()]
NEW_TABLES = ["lora_training_files", "lora_training_jobs", "lora_training_job_items",
              "lora_training_file_members", "lora_training_file_versions"]
EXISTING_TABLES = ["conversations", "batch_jobs", "batch_items", "personas", "emotional_arcs", "training_topics"]


def catalog_snapshot(url: str, tables: list[str] | None = None) -> dict[str, Any]:
    """Everything a migration could change, in comparable form."""
    rel_filter = "AND c.relname = ANY(%(tables)s)" if tables else ""
    params = {"tables": tables}
    with connect(url) as conn:
        def rows(query: str) -> list[tuple]:
            # the runner's own bookkeeping table is not part of the schema under test
            return sorted(tuple(r.values()) for r in conn.execute(query, params).fetchall()
                          if not any("lorafiles_schema_migrations" in str(v) for v in r.values()))

        return {
            "tables": rows(f"""
                SELECT n.nspname, c.relname, c.relkind::text, c.relrowsecurity
                FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('public', 'auth') AND c.relkind IN ('r', 'v', 'm', 'p') {rel_filter}"""),
            "columns": rows(f"""
                SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                       a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
                FROM pg_attribute a
                JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
                LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                WHERE n.nspname IN ('public', 'auth') AND c.relkind = 'r' AND a.attnum > 0
                  AND NOT a.attisdropped {rel_filter}"""),
            "indexes": rows(f"""
                SELECT i.schemaname, i.tablename, i.indexname, i.indexdef FROM pg_indexes i
                JOIN pg_class c ON c.relname = i.tablename
                JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = i.schemaname
                WHERE i.schemaname IN ('public', 'auth') {rel_filter}"""),
            "constraints": rows(f"""
                SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)
                FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname IN ('public', 'auth') {rel_filter}"""),
            "policies": rows(f"""
                SELECT p.schemaname, p.tablename, p.policyname, p.cmd, p.roles::text, p.qual, p.with_check
                FROM pg_policies p JOIN pg_class c ON c.relname = p.tablename
                WHERE p.schemaname IN ('public', 'auth') {rel_filter}"""),
            "triggers": rows(f"""
                SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid)
                FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE NOT t.tgisinternal AND n.nspname IN ('public', 'auth') {rel_filter}"""),
            "functions": rows("""
                SELECT n.nspname, p.proname, pg_get_functiondef(p.oid)
                FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname IN ('public', 'auth')"""),
            "grants": rows(f"""
                SELECT g.table_schema, g.table_name, g.grantee, g.privilege_type
                FROM information_schema.role_table_grants g
                JOIN pg_class c ON c.relname = g.table_name
                WHERE g.table_schema IN ('public', 'auth') {rel_filter}"""),
            "schema_grants": rows("""
                SELECT n.nspname, r.rolname, has_schema_privilege(r.oid, n.oid, 'USAGE')
                FROM pg_namespace n CROSS JOIN pg_roles r
                WHERE n.nspname IN ('public', 'auth')
                  AND r.rolname IN ('anon', 'authenticated', 'service_role')"""),
            "roles": rows("""
                SELECT rolname, rolcanlogin, rolbypassrls, rolinherit FROM pg_roles
                WHERE rolname IN ('anon', 'authenticated', 'service_role')"""),
        }


# --------------------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------------------

def test_discover_finds_the_migrations_in_order():
    assert ALL[:5] == ["20260101000100_baseline_existing.sql",
                       "20260101000200_conversation_batch_id.sql",
                       "20260101000300_training_files.sql",
                       "20261202000100_trainer_exports.sql",
                       "20261202000200_request_fingerprint_and_name_key.sql"]
    assert {"20261202000400_training_files_bucket.sql", "20261202000500_owner_id_indexes.sql"} <= set(ALL)
    assert ALL == sorted(p.name for p in (Path(__file__).resolve().parents[2] / "migrations").glob("*.sql"))
    assert default_migrations_dir() == Path(__file__).resolve().parents[2] / "migrations"


def test_apply_twice_applies_nothing_and_changes_nothing(empty_db_url):
    assert applied_migrations(empty_db_url) == []
    assert apply_migrations(empty_db_url) == ALL
    before = catalog_snapshot(empty_db_url)
    assert {t[1] for t in before["tables"]} >= set(NEW_TABLES + EXISTING_TABLES)

    assert apply_migrations(empty_db_url) == []
    assert catalog_snapshot(empty_db_url) == before
    assert applied_migrations(empty_db_url) == ALL


def test_template_copy_is_fully_migrated(db_url):
    assert applied_migrations(db_url) == ALL
    assert apply_migrations(db_url) == []


def test_accepts_an_open_connection(empty_db_url):
    with connect(empty_db_url) as conn:
        assert apply_migrations(conn, upto="20260101000100") == ALL[:1]
        assert apply_migrations(conn) == ALL[1:]
        conn.execute("SELECT 1")
        with pytest.raises(MigrationError, match="idle connection"):
            apply_migrations(conn)
    assert applied_migrations(empty_db_url) == ALL


def test_upto_by_name_and_unknown(empty_db_url):
    assert apply_migrations(empty_db_url, upto=ALL[1]) == ALL[:2]
    with pytest.raises(MigrationError, match="no migration matches"):
        apply_migrations(empty_db_url, upto="29990101")
    assert apply_migrations(empty_db_url) == ALL[2:]


def test_env_overrides_migrations_dir(monkeypatch, tmp_path):
    (tmp_path / "1_one.sql").write_text("SELECT 1;")
    monkeypatch.setenv("LORAFILES_MIGRATIONS_DIR", str(tmp_path))
    assert default_migrations_dir() == tmp_path
    assert [m.name for m in discover()] == ["1_one.sql"]


def _copy_migrations(tmp_path: Path) -> Path:
    target = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), target)
    return target


def test_changed_checksum_is_refused_naming_the_file(empty_db_url, tmp_path):
    mdir = _copy_migrations(tmp_path)
    assert apply_migrations(empty_db_url, mdir) == ALL
    edited = mdir / ALL[1]
    edited.write_text(edited.read_text() + "\n-- an innocent edit\n")
    (mdir / "29990101000400_next.sql").write_text("CREATE TABLE public.should_not_exist (id int);")

    with pytest.raises(MigrationError) as err:
        apply_migrations(empty_db_url, mdir)
    assert ALL[1] in str(err.value)
    assert "changed" in str(err.value)
    # Refused before anything was applied.
    assert applied_migrations(empty_db_url) == ALL
    with connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.should_not_exist') AS r").fetchone()["r"] is None


def test_crlf_checkout_has_the_same_checksum(empty_db_url, tmp_path):
    mdir = _copy_migrations(tmp_path)
    assert apply_migrations(empty_db_url, mdir) == ALL
    for path in mdir.glob("*.sql"):
        path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert apply_migrations(empty_db_url, mdir) == []


def test_failing_migration_rolls_back_and_names_the_file(empty_db_url, tmp_path):
    mdir = _copy_migrations(tmp_path)
    (mdir / "29991231000000_broken.sql").write_text(
        "CREATE TABLE public.half_done (id int);\nSELECT * FROM no_such_table;\n")
    with pytest.raises(MigrationError, match="29991231000000_broken.sql"):
        apply_migrations(empty_db_url, mdir)
    assert applied_migrations(empty_db_url) == ALL  # the good ones were committed one by one
    with connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('public.half_done') AS r").fetchone()["r"] is None


def test_bad_file_names_are_refused(tmp_path):
    (tmp_path / "baseline.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="baseline.sql"):
        discover(tmp_path)
    (tmp_path / "baseline.sql").unlink()
    (tmp_path / "1_a.sql").write_text("SELECT 1;")
    (tmp_path / "1_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="1_b.sql"):
        discover(tmp_path)


def test_concurrent_runners_apply_each_file_once(empty_db_url):
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(apply_migrations(empty_db_url))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(name for r in results for name in r) == ALL
    assert applied_migrations(empty_db_url) == ALL


# --------------------------------------------------------------------------------------
# Baseline against a live-like (Supabase) database
# --------------------------------------------------------------------------------------

LIVE_LIKE_SCHEMA = """
CREATE SCHEMA auth;
CREATE TABLE auth.users (
  instance_id uuid, id uuid PRIMARY KEY, aud varchar(255), role varchar(255), email varchar(255),
  encrypted_password varchar(255), raw_user_meta_data jsonb, created_at timestamptz, updated_at timestamptz);
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim.sub', true), ''),
                  (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'))::uuid $$;
CREATE FUNCTION auth.jwt() RETURNS jsonb LANGUAGE sql STABLE AS $$
  SELECT coalesce(nullif(current_setting('request.jwt.claim', true), ''),
                  nullif(current_setting('request.jwt.claims', true), ''))::jsonb $$;
CREATE FUNCTION auth.role() RETURNS text LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role' $$;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;

CREATE TABLE public.user_profiles (id uuid PRIMARY KEY, email text);

CREATE TABLE public.personas (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  persona_key varchar(100) UNIQUE NOT NULL, archetype text, emotional_baseline text,
  demographics jsonb DEFAULT '{}', financial_background text, communication_style text,
  is_active boolean DEFAULT true, usage_count int DEFAULT 0, last_used_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE public.emotional_arcs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  arc_key varchar(100) UNIQUE NOT NULL, starting_emotion text, ending_emotion text,
  starting_intensity_min numeric(3,2), ending_intensity_max numeric(3,2), tier text,
  is_active boolean DEFAULT true, usage_count int DEFAULT 0, created_at timestamptz DEFAULT now());
CREATE TABLE public.training_topics (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  topic_key varchar(100) UNIQUE NOT NULL, category varchar(100), complexity_level varchar(50),
  typical_question_length varchar(50), is_active boolean DEFAULT true, created_at timestamptz DEFAULT now());

CREATE TABLE public.conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id text UNIQUE NOT NULL,
  document_id uuid, chunk_id uuid,
  persona text, emotion text, emotional_arc jsonb, training_topic jsonb,
  tier text CHECK (tier IN ('template', 'scenario', 'edge_case')),
  status text DEFAULT 'draft' CHECK (status IN ('draft','generated','pending_review','approved',
                                                'rejected','needs_revision','none','failed')),
  category text[], quality_score numeric(3,1) CHECK (quality_score >= 0 AND quality_score <= 10),
  empathy_score numeric, clarity_score numeric, appropriateness_score numeric, brand_voice_alignment numeric,
  turn_count integer DEFAULT 0, total_tokens integer DEFAULT 0, estimated_cost_usd numeric(10,4),
  actual_cost_usd numeric(10,4), generation_duration_ms integer,
  approved_by uuid REFERENCES auth.users(id), approved_at timestamptz, reviewer_notes text,
  review_history jsonb DEFAULT '[]', parent_id uuid, parent_type text, parameters jsonb DEFAULT '{}',
  created_by uuid REFERENCES public.user_profiles(id),
  persona_id uuid, emotional_arc_id uuid, training_topic_id uuid, template_id uuid,
  persona_key text, emotional_arc_key text, topic_key text, scaffolding_snapshot jsonb,
  processing_status varchar(50) DEFAULT 'queued', conversation_name text,
  file_url text, file_path text, file_size bigint, storage_bucket text DEFAULT 'conversation-files',
  raw_response_path text, raw_response_size bigint, raw_stored_at timestamptz, parse_attempts int DEFAULT 0,
  last_parse_attempt_at timestamptz, parse_error_message text, parse_method_used varchar(50),
  requires_manual_review boolean DEFAULT false,
  enrichment_status varchar(50) DEFAULT 'not_started' NOT NULL,
  validation_report jsonb, enriched_file_path text, enriched_file_size bigint, enriched_at timestamptz,
  enrichment_version varchar(20) DEFAULT 'v1.0', enrichment_error text,
  is_active boolean DEFAULT true, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  reviewed_by uuid, reviewed_at timestamptz, expires_at timestamptz, usage_count int DEFAULT 0,
  CONSTRAINT valid_enrichment_status CHECK (enrichment_status IN ('not_started','validation_failed',
    'validated','enrichment_in_progress','enriched','normalization_failed','completed')));
CREATE INDEX idx_conversations_enrichment_status ON public.conversations (enrichment_status);
ALTER TABLE public.conversations ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view own conversations" ON public.conversations
  FOR SELECT TO authenticated USING (created_by = auth.uid());

CREATE TABLE public.batch_jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, description text,
  job_type text DEFAULT 'generation' CHECK (job_type IN ('generation','export','validation','cleanup')),
  configuration jsonb DEFAULT '{}', status varchar(20) DEFAULT 'queued',
  total_items int DEFAULT 0, completed_items int DEFAULT 0, failed_items int DEFAULT 0,
  successful_items int DEFAULT 0, skipped_items int DEFAULT 0, progress_percentage numeric(5,2) DEFAULT 0,
  started_at timestamptz, completed_at timestamptz, estimated_time_remaining int,
  priority varchar(20) DEFAULT 'normal', tier text, shared_parameters jsonb DEFAULT '{}',
  concurrent_processing int DEFAULT 3, error_handling text DEFAULT 'continue', error_message text,
  results jsonb, summary jsonb, created_by uuid REFERENCES public.user_profiles(id),
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());

CREATE TABLE public.batch_items (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  batch_job_id uuid NOT NULL REFERENCES public.batch_jobs(id) ON DELETE CASCADE,
  position int NOT NULL, topic text, tier text, parameters jsonb DEFAULT '{}',
  status text DEFAULT 'queued', progress int DEFAULT 0, estimated_time int, error_message text,
  conversation_id uuid REFERENCES public.conversations(id),
  started_at timestamptz, completed_at timestamptz,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE INDEX idx_batch_items_conversation ON public.batch_items (conversation_id);
"""


def test_baseline_is_a_noop_on_a_live_like_database(empty_db_url):
    owner = uuid.uuid4()
    with connect(empty_db_url) as conn:
        conn.execute(LIVE_LIKE_SCHEMA)
        conn.execute("INSERT INTO user_profiles (id) VALUES (%s)", (owner,))
        conn.execute("""INSERT INTO conversations (conversation_id, created_by, enrichment_status)
                        VALUES ('c-1', %s, 'completed')""", (owner,))
        conn.execute("INSERT INTO batch_jobs (id, name, created_by) VALUES (%s, 'b', %s)", (owner, owner))
        conn.execute("""INSERT INTO batch_items (batch_job_id, position, conversation_id)
                        SELECT %s, 1, id FROM conversations""", (owner,))
    before = catalog_snapshot(empty_db_url)

    assert apply_migrations(empty_db_url, upto="20260101000100") == ALL[:1]
    after = catalog_snapshot(empty_db_url)
    assert after == before  # nothing at all changed: no table, column, constraint, function, grant

    # The rest applies on top of the live-like schema, and the data is intact + back-filled.
    assert apply_migrations(empty_db_url) == ALL[1:]
    assert backfill_batch_ids(empty_db_url)["rows"] == 1
    with connect(empty_db_url) as conn:
        row = conn.execute("SELECT enrichment_status, batch_id FROM conversations").fetchone()
        assert row == {"enrichment_status": "completed", "batch_id": owner}
        # the live-like CHECK is kept, no second one was added
        checks = conn.execute("""
            SELECT conname FROM pg_constraint
            WHERE conrelid = 'conversations'::regclass AND contype = 'c'
              AND pg_get_constraintdef(oid) LIKE '%%enrichment_status%%'""").fetchall()
        assert [c["conname"] for c in checks] == ["valid_enrichment_status"]
        # no duplicate index on batch_items.conversation_id
        idx = conn.execute("""SELECT indexname FROM pg_indexes
                              WHERE tablename = 'batch_items' AND indexdef LIKE '%%(conversation_id)%%'""").fetchall()
        assert [i["indexname"] for i in idx] == ["idx_batch_items_conversation"]


def test_baseline_adds_only_missing_relied_on_pieces(empty_db_url):
    with connect(empty_db_url) as conn:
        conn.execute("""
            CREATE TABLE public.conversations (
              id uuid PRIMARY KEY DEFAULT gen_random_uuid(), conversation_id text NOT NULL,
              created_by uuid, legacy_note text, enrichment_status varchar(50) DEFAULT 'not_started');
            INSERT INTO public.conversations (conversation_id, legacy_note) VALUES ('keep-me', 'x');""")
    apply_migrations(empty_db_url)
    with connect(empty_db_url) as conn:
        cols = {r["column_name"] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'conversations'")}
        assert {"legacy_note", "enriched_file_path", "enrichment_error", "scaffolding_snapshot", "batch_id"} <= cols
        assert conn.execute("SELECT legacy_note FROM conversations").fetchone()["legacy_note"] == "x"
        # the 7-value CHECK and the unique conversation_id were added because they were missing
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE conversations SET enrichment_status = 'failed'")
        conn.rollback()
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO conversations (conversation_id) VALUES ('keep-me')")


def test_supabase_helpers_on_plain_postgres(db_url):
    user = uuid.uuid4()
    with connect(db_url) as conn:
        assert conn.execute("SELECT auth.uid() AS u").fetchone()["u"] is None
        conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                     (f'{{"sub":"{user}","role":"authenticated"}}',))
        assert conn.execute("SELECT auth.uid() AS u").fetchone()["u"] == user
        assert conn.execute("SELECT auth.jwt() ->> 'role' AS r").fetchone()["r"] == "authenticated"
        conn.commit()
        # after the local setting is gone the GUC reads back as '' : still NULL, no error
        assert conn.execute("SELECT auth.uid() AS u").fetchone()["u"] is None
        roles = conn.execute("""SELECT rolname, rolcanlogin, rolbypassrls FROM pg_roles
                                WHERE rolname IN ('anon','authenticated','service_role')
                                ORDER BY rolname""").fetchall()
        assert roles == [
            {"rolname": "anon", "rolcanlogin": False, "rolbypassrls": False},
            {"rolname": "authenticated", "rolcanlogin": False, "rolbypassrls": False},
            {"rolname": "service_role", "rolcanlogin": False, "rolbypassrls": True},
        ]


# --------------------------------------------------------------------------------------
# New tables: columns and constraints the repository relies on
# --------------------------------------------------------------------------------------

EXPECTED_COLUMNS = {
    "lora_training_files": [
        "id", "owner_id", "name", "description", "status", "target_model", "vertical", "consultant_profile",
        "current_version", "conversation_count", "training_pair_count", "total_turns", "quality_summary",
        "scaffolding_distribution", "batch_ids", "json_path", "jsonl_path", "json_size", "jsonl_size",
        "json_sha256", "jsonl_sha256", "stale_since", "created_at", "updated_at",
        "policy", "artifacts", "export_summary", "name_key"],
    "lora_training_jobs": [
        "id", "owner_id", "file_id", "kind", "status", "step", "file_name", "description", "requested_ids",
        "batch_size", "total_batches", "completed_batches", "base_version", "published_version", "error",
        "idempotency_key", "execution_name", "execution_arn", "created_at", "updated_at", "started_at",
        "finished_at", "policy", "rerender_ids", "request", "request_fingerprint"],
    "lora_training_job_items": [
        "job_id", "conversation_id", "owner_id", "position", "conversation_pk", "batch_id", "source_file",
        "source_sha256", "json_fragment_key", "jsonl_fragment_key", "json_fragment_size",
        "jsonl_fragment_size", "pairs", "training_pairs", "quality_sum", "quality_count", "quality_min",
        "quality_max", "human_reviewed", "quality_tier", "persona_key", "persona_name", "emotional_arc_key",
        "emotional_arc", "training_topic_key", "training_topic", "vertical", "consultant_profile",
        "warnings", "created_at",
        "exports_fragment_key", "exports_fragment_size", "exports_layout", "export_stats", "policy_digest"],
    "lora_training_file_members": [
        "file_id", "conversation_id", "owner_id", "position", "added_by", "added_at", "job_id",
        "conversation_pk", "batch_id", "source_file", "source_sha256", "json_fragment_key",
        "jsonl_fragment_key", "json_fragment_size", "jsonl_fragment_size", "pairs", "training_pairs",
        "quality_sum", "quality_count", "quality_min", "quality_max", "human_reviewed", "quality_tier",
        "persona_key", "persona_name", "emotional_arc_key", "emotional_arc", "training_topic_key",
        "training_topic", "warnings",
        "exports_fragment_key", "exports_fragment_size", "exports_layout", "export_stats", "policy_digest"],
    "lora_training_file_versions": [
        "file_id", "version", "job_id", "json_path", "jsonl_path", "json_size", "jsonl_size", "json_sha256",
        "jsonl_sha256", "conversation_count", "training_pair_count", "total_turns", "quality_summary",
        "scaffolding_distribution", "created_at",
        "policy", "artifacts", "export_summary"],
}


def test_new_tables_have_exactly_the_agreed_columns(db_url):
    with connect(db_url) as conn:
        for table, expected in EXPECTED_COLUMNS.items():
            cols = [r["column_name"] for r in conn.execute(
                """SELECT column_name FROM information_schema.columns
                   WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position""", (table,))]
            assert cols == expected, table


def _file(conn: psycopg.Connection, owner: uuid.UUID, name: str = "My file", **extra: Any) -> uuid.UUID:
    cols = {"owner_id": owner, "name": name, "target_model": "llama-3.1-8b", **extra}
    q = f"INSERT INTO lora_training_files ({', '.join(cols)}) VALUES ({', '.join(['%s'] * len(cols))}) RETURNING id"
    return conn.execute(q, list(cols.values())).fetchone()["id"]


def _job(conn: psycopg.Connection, owner: uuid.UUID, file_id: uuid.UUID | None, status: str = "queued",
         key: str | None = None) -> uuid.UUID:
    return conn.execute(
        """INSERT INTO lora_training_jobs (owner_id, file_id, kind, status, idempotency_key)
           VALUES (%s, %s, 'add', %s, %s) RETURNING id""",
        (owner, file_id, status, key or uuid.uuid4().hex)).fetchone()["id"]


def test_file_defaults_and_constraints(db: Database):
    owner = uuid.uuid4()
    with db.connection() as conn:
        fid = _file(conn, owner)
        row = conn.execute("SELECT * FROM lora_training_files WHERE id = %s", (fid,)).fetchone()
        assert row["status"] == "creating" and row["current_version"] == 0
        assert row["quality_summary"] == {} and row["scaffolding_distribution"] == {} and row["batch_ids"] == []

    bad = [{"name": " padded"}, {"name": ""}, {"name": "x" * 256}, {"name": "ok", "status": "done"}]
    for extra in bad:
        with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
            _file(conn, uuid.uuid4(), **extra)
    with db.connection() as conn:
        _file(conn, owner, name="x" * 255)
        _file(conn, uuid.uuid4(), name="MY FILE")  # other owner: fine
    with pytest.raises(psycopg.errors.UniqueViolation), db.connection() as conn:
        _file(conn, owner, name="my file")  # case-insensitive per owner


def test_updated_at_trigger(db: Database):
    owner = uuid.uuid4()
    with db.connection() as conn:
        fid = _file(conn, owner)
        jid = _job(conn, owner, fid)
        conn.execute("UPDATE lora_training_files SET updated_at = '2000-01-01', created_at = '2000-01-01'")
        conn.execute("UPDATE lora_training_jobs SET updated_at = '2000-01-01', created_at = '2000-01-01'")
    with db.connection() as conn:
        conn.execute("UPDATE lora_training_files SET description = 'd' WHERE id = %s", (fid,))
        conn.execute("UPDATE lora_training_jobs SET step = 's' WHERE id = %s", (jid,))
        for table in ("lora_training_files", "lora_training_jobs"):
            row = conn.execute(f"SELECT updated_at > created_at AS bumped FROM {table}").fetchone()
            assert row["bumped"], table


def test_one_active_job_per_file_and_idempotency_key(db: Database):
    owner = uuid.uuid4()
    with db.connection() as conn:
        fid = _file(conn, owner)
        _job(conn, owner, fid, "succeeded")
        _job(conn, owner, fid, "failed")
        _job(conn, owner, fid, "queued")
        _job(conn, owner, None, "queued")  # create jobs start without a file: no conflict
        _job(conn, owner, None, "running")
    with pytest.raises(psycopg.errors.UniqueViolation), db.connection() as conn:
        _job(conn, owner, fid, "running")
    with db.connection() as conn:
        _job(conn, owner, fid, "succeeded", key="k1")
        _job(conn, uuid.uuid4(), fid, "succeeded", key="k1")  # same key, other owner
    with pytest.raises(psycopg.errors.UniqueViolation), db.connection() as conn:
        _job(conn, owner, fid, "succeeded", key="k1")
    with pytest.raises(psycopg.errors.CheckViolation), db.connection() as conn:
        conn.execute("""INSERT INTO lora_training_jobs (owner_id, kind, idempotency_key)
                        VALUES (%s, 'merge', 'k2')""", (owner,))


# --------------------------------------------------------------------------------------
# Connections (lorafiles.db.connect)
# --------------------------------------------------------------------------------------

def test_connect_settings(db_url):
    with connect(db_url, autocommit=True, application_name="t") as conn:
        assert conn.autocommit is False and conn.prepare_threshold is None
        assert conn.execute("SELECT current_setting('application_name') AS a").fetchone() == {"a": "t"}


def test_database_commits_rolls_back_and_reuses(db_url):
    db = Database(db_url, reuse=True)
    with db.connection() as conn:
        conn.execute("CREATE TABLE t (x int)")
        first = conn
    with pytest.raises(ZeroDivisionError), db.connection() as conn:
        assert conn is first  # the idle connection is handed out again
        conn.execute("INSERT INTO t VALUES (1)")
        raise ZeroDivisionError
    assert first.closed  # a connection that saw an error is not reused
    with db.connection() as conn:
        assert conn is not first
        assert conn.execute("SELECT count(*) AS n FROM t").fetchone()["n"] == 0
        kept = conn
    kept.close()  # the kept connection died while idle: never handed out again
    with db.connection() as conn:
        assert conn is not kept and not conn.closed
    db.close()

    plain = Database(db_url)
    with plain.connection() as conn:
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.closed
    with plain.connection() as conn:
        assert conn.execute("SELECT count(*) AS n FROM t").fetchone()["n"] == 1


def test_database_url_prefers_env(monkeypatch, db_url):
    from lorafiles.db.connect import database_url, get_database

    monkeypatch.setenv("DATABASE_URL", db_url)
    with database_url() as url:
        assert url == db_url
    assert get_database() is get_database(db_url)


def test_database_url_embedded_under_home(monkeypatch, tmp_path):
    from lorafiles.db.connect import database_url, default_home

    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LORAFILES_HOME", str(tmp_path))
    assert default_home() == tmp_path
    with database_url() as url:
        assert (tmp_path / "pgdata" / "PG_VERSION").exists()
        with connect(url) as conn:
            assert conn.execute("SELECT current_database() AS d").fetchone()["d"] == "lorafiles"
    with database_url() as url:  # restart on the same data dir: the database is still there
        with connect(url) as conn:
            assert conn.execute("SELECT current_database() AS d").fetchone()["d"] == "lorafiles"


def test_database_replaces_a_kept_connection_the_server_dropped(db_url):
    db = Database(db_url, reuse=True, ping_after=0)
    with db.connection() as conn:
        pid = conn.info.backend_pid
        kept = conn
    with connect(db_url) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))  # waits until gone
    with db.connection() as conn:
        assert conn is not kept
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    db.close()
