"""A PostgreSQL database set up like the app's hosted Supabase project, and the two ways of pushing
the migrations into it: the real Supabase CLI (`supabase db push --db-url`) and the same
procedure done here (each file split into statements, run in one transaction together with its
row in supabase_migrations.schema_migrations), for machines without the CLI.

What makes it Supabase-like (what a plain PostgreSQL lacks):
* the migrations run as `lorafiles_postgres`, playing Supabase's `postgres`: not a superuser,
  CREATEROLE/BYPASSRLS, member of anon/authenticated/service_role, owner of the database;
* schema `auth` (users, uid(), jwt(), role()) owned by `supabase_auth_admin`, and `storage`
  (buckets, objects with RLS, foldername()) owned by `supabase_storage_admin`, with the grants
  Supabase gives on them;
* Supabase's default privileges: every table, sequence and function the migration role creates in
  `public` is granted ALL to anon, authenticated and service_role;
* the app's existing tables (conversations with RLS and its policy, batch_jobs, batch_items, the
  scaffolding tables) created by the migration role, with some data.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from lorafiles.db.migrate import HISTORY_TABLE, discover, split_statements

REPO = Path(__file__).resolve().parents[2]
MIGRATOR = "lorafiles_postgres"  # Supabase's `postgres`; member of supabase_storage_admin
RESTRICTED = "lorafiles_postgres_restricted"  # the same without the storage owner's rights

ROLES = f"""
DO $$
DECLARE r text;
BEGIN
  FOREACH r IN ARRAY ARRAY['anon', 'authenticated'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT', r);
    END IF;
  END LOOP;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  FOREACH r IN ARRAY ARRAY['supabase_auth_admin', 'supabase_storage_admin'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I NOLOGIN NOINHERIT CREATEROLE', r);
    END IF;
  END LOOP;
  FOREACH r IN ARRAY ARRAY['{MIGRATOR}', '{RESTRICTED}'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER CREATEROLE CREATEDB BYPASSRLS', r);
    END IF;
    EXECUTE format('GRANT anon, authenticated, service_role TO %I', r);
  END LOOP;
END
$$;
GRANT supabase_storage_admin TO {MIGRATOR};
"""

SCHEMAS = """
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
SET ROLE supabase_auth_admin;
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
RESET ROLE;
GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role, {migrators};
GRANT SELECT, REFERENCES ON auth.users TO {migrators};

CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
SET ROLE supabase_storage_admin;
CREATE TABLE storage.buckets (
  id text PRIMARY KEY, name text NOT NULL, owner uuid, owner_id text,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  public boolean DEFAULT false, avif_autodetection boolean DEFAULT false,
  file_size_limit bigint, allowed_mime_types text[]);
CREATE UNIQUE INDEX bname ON storage.buckets (name);
CREATE TABLE storage.objects (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), bucket_id text REFERENCES storage.buckets (id),
  name text, owner uuid, owner_id text, created_at timestamptz DEFAULT now(),
  updated_at timestamptz DEFAULT now(), last_accessed_at timestamptz DEFAULT now(), metadata jsonb,
  path_tokens text[] GENERATED ALWAYS AS (string_to_array(name, '/')) STORED, version text);
CREATE UNIQUE INDEX bucketid_objname ON storage.objects (bucket_id, name);
ALTER TABLE storage.buckets ENABLE ROW LEVEL SECURITY;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
CREATE FUNCTION storage.foldername(name text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE _parts text[];
BEGIN
  SELECT string_to_array(name, '/') INTO _parts;
  RETURN _parts[1:array_length(_parts, 1) - 1];
END $$;
RESET ROLE;
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role, {migrators};
GRANT ALL ON storage.buckets, storage.objects TO anon, authenticated, service_role;
GRANT ALL ON storage.buckets, storage.objects TO {migrators} WITH GRANT OPTION;

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
"""

DEFAULT_PRIVILEGES = """
ALTER DEFAULT PRIVILEGES FOR ROLE {role} IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {role} IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE {role} IN SCHEMA public GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
"""

APP_TABLES = """
CREATE TABLE public.user_profiles (id uuid PRIMARY KEY, email text);
CREATE TABLE public.personas (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  persona_key varchar(100) UNIQUE NOT NULL, archetype text, emotional_baseline text,
  demographics jsonb DEFAULT '{}', is_active boolean DEFAULT true, usage_count int DEFAULT 0,
  last_used_at timestamptz, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE TABLE public.emotional_arcs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  arc_key varchar(100) UNIQUE NOT NULL, starting_emotion text, ending_emotion text, tier text,
  is_active boolean DEFAULT true, usage_count int DEFAULT 0, created_at timestamptz DEFAULT now());
CREATE TABLE public.training_topics (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(255) NOT NULL,
  topic_key varchar(100) UNIQUE NOT NULL, category varchar(100), complexity_level varchar(50),
  is_active boolean DEFAULT true, created_at timestamptz DEFAULT now());
CREATE TABLE public.conversations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id text UNIQUE NOT NULL,
  persona text, emotion text, emotional_arc jsonb, training_topic jsonb,
  tier text CHECK (tier IN ('template', 'scenario', 'edge_case')),
  status text DEFAULT 'draft', quality_score numeric(3,1) CHECK (quality_score >= 0 AND quality_score <= 10),
  turn_count integer DEFAULT 0, approved_by uuid REFERENCES auth.users(id), approved_at timestamptz,
  created_by uuid,  -- FK to user_profiles and NOT NULL dropped in 20251117_fix_foreign_keys
  persona_id uuid, emotional_arc_id uuid, training_topic_id uuid, template_id uuid,
  persona_key text, emotional_arc_key text, topic_key text, scaffolding_snapshot jsonb,
  processing_status varchar(50) DEFAULT 'queued', conversation_name text,
  file_path text, file_size bigint, storage_bucket text DEFAULT 'conversation-files',
  enrichment_status varchar(50) DEFAULT 'not_started' NOT NULL,
  validation_report jsonb, enriched_file_path text, enriched_file_size bigint, enriched_at timestamptz,
  enrichment_version varchar(20) DEFAULT 'v1.0', enrichment_error text,
  is_active boolean DEFAULT true, created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now(),
  CONSTRAINT valid_enrichment_status CHECK (enrichment_status IN ('not_started','validation_failed',
    'validated','enrichment_in_progress','enriched','normalization_failed','completed')));
CREATE INDEX idx_conversations_enrichment_status ON public.conversations (enrichment_status);
ALTER TABLE public.conversations ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view own conversations" ON public.conversations
  FOR SELECT TO authenticated USING (created_by = auth.uid());
CREATE FUNCTION public.set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.updated_at := now(); RETURN NEW; END $$;
CREATE TRIGGER conversations_updated_at BEFORE UPDATE ON public.conversations
  FOR EACH ROW EXECUTE FUNCTION public.set_updated_at();
CREATE TABLE public.batch_jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL, description text,
  job_type text DEFAULT 'generation', status varchar(20) DEFAULT 'queued',
  created_by uuid,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
ALTER TABLE public.batch_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY "Users can view own batches" ON public.batch_jobs
  FOR SELECT TO authenticated USING (created_by = auth.uid());
CREATE TABLE public.batch_items (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  batch_job_id uuid NOT NULL REFERENCES public.batch_jobs(id) ON DELETE CASCADE,
  position int NOT NULL, topic text, tier text, parameters jsonb DEFAULT '{}',
  status text DEFAULT 'queued', error_message text,
  -- no DDL of this FK exists in the app's repository; ON DELETE SET NULL as the baseline assumes
  conversation_id uuid REFERENCES public.conversations(id) ON DELETE SET NULL,
  created_at timestamptz DEFAULT now(), updated_at timestamptz DEFAULT now());
CREATE INDEX idx_batch_items_conversation ON public.batch_items (conversation_id);
"""

OWNER = uuid.UUID("5b0d1c3e-0000-4000-8000-0000000000aa")
BATCH = uuid.UUID("5b0d1c3e-0000-4000-8000-0000000000bb")

APP_DATA = f"""
INSERT INTO public.user_profiles (id) VALUES ('{OWNER}');
INSERT INTO public.batch_jobs (id, name, created_by, status) VALUES ('{BATCH}', 'batch 1', '{OWNER}', 'completed');
INSERT INTO public.conversations (conversation_id, created_by, enrichment_status, enriched_file_path)
SELECT gen_random_uuid()::text, '{OWNER}', 'completed', '{OWNER}/c' || g || '/enriched.json'
FROM generate_series(1, 30) g;
INSERT INTO public.batch_items (batch_job_id, position, conversation_id, status)
SELECT '{BATCH}', row_number() OVER (), id, 'completed' FROM public.conversations;
"""


def socket_conninfo(admin_url: str) -> dict[str, Any]:
    return conninfo_to_dict(admin_url)


def role_url(admin_url: str, dbname: str, role: str) -> str:
    """A URL for `role` on database `dbname` of the server of `admin_url` (Unix socket, trust auth),
    in the percent-encoded form the Supabase CLI accepts (`host` as a query parameter)."""
    info = socket_conninfo(admin_url)
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    if host.startswith("/"):
        return f"postgresql://{role}:unused@localhost:{port}/{quote(dbname)}?host={quote(host, safe='')}"
    return f"postgresql://{role}:unused@{host}:{port}/{quote(dbname)}"


def create_supabase_like(admin_url: str, dbname: str, *, migrator: str = MIGRATOR) -> str:
    """Create database `dbname` set up like the app's Supabase project; return the URL of the
    migration role on it."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(ROLES)
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
            sql.Identifier(dbname), sql.Identifier(migrator)))
    info = socket_conninfo(admin_url)
    info["dbname"] = dbname
    with psycopg.connect(**info, autocommit=True) as conn:
        conn.execute(SCHEMAS.format(migrators=f"{MIGRATOR}, {RESTRICTED}"))
        for role in (MIGRATOR, RESTRICTED):
            conn.execute(DEFAULT_PRIVILEGES.format(role=role))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(migrator)))
        conn.execute(APP_TABLES)
        conn.execute(APP_DATA)
    return role_url(admin_url, dbname, migrator)


def drop_database(admin_url: str, dbname: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


# ---------------------------------------------------------------------------- pushing
def supabase_cli() -> str | None:
    """The Supabase CLI: `supabase` on PATH, else the one `npm ci` installs (package.json)."""
    found = shutil.which("supabase")
    if found:
        return found
    local = REPO / "node_modules" / ".bin" / "supabase"
    return str(local) if local.exists() else None


SKIP_NO_CLI = ("the Supabase CLI is not installed: no `supabase` on PATH nor node_modules/.bin/supabase "
               "(`npm ci` installs it from package.json)")


def cli(*args: str, url: str, timeout: int = 180) -> subprocess.CompletedProcess[str]:
    binary = supabase_cli()
    assert binary, SKIP_NO_CLI
    env = {**os.environ, "SUPABASE_TELEMETRY_DISABLED": "1", "DO_NOT_TRACK": "1"}
    result = subprocess.run([binary, *args, "--db-url", url, "--yes"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"supabase {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def push_with_cli(url: str) -> str:
    """`supabase db push` from the repository (its supabase/ project folder); returns its output."""
    result = cli("db", "push", url=url)
    return result.stdout + result.stderr


def forget_history_with_cli(url: str) -> None:
    """`supabase migration repair --status reverted <every version>`: the next push applies all again."""
    cli("migration", "repair", "--status", "reverted", *[m.version for m in discover()], url=url)


def push_locally(url: str) -> list[str]:
    """What `supabase db push` does, done here: create the history table as the CLI does, then for
    each file not in it: its statements and its history row, in one transaction."""
    applied: list[str] = []
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("CREATE SCHEMA IF NOT EXISTS supabase_migrations")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (version text NOT NULL PRIMARY KEY)")
        conn.execute(f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS statements text[]")
        conn.execute(f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS name text")
        done = {r[0] for r in conn.execute(f"SELECT version FROM {HISTORY_TABLE}")}
        for mig in discover():
            if mig.version in done:
                continue
            statements = split_statements(mig.path.read_text())
            with conn.transaction():
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"INSERT INTO {HISTORY_TABLE} (version, name, statements) VALUES (%s, %s, %s)",
                             (mig.version, mig.label, statements))
            applied.append(mig.name)
    return applied


def forget_history_locally(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DELETE FROM {HISTORY_TABLE}")


# ---------------------------------------------------------------------------- comparing
def snapshot(url: str) -> dict[str, list[tuple]]:
    """Everything a migration could change, in comparable form (OIDs left out), plus the bucket row."""
    schemas = ["public", "auth", "storage", "supabase_migrations"]
    queries = {
        "relations": """SELECT n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relowner::regrole::text,
                               coalesce(c.relacl::text, '')
                        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = ANY(%(s)s)""",
        "columns": """SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                             coalesce(pg_get_expr(d.adbin, d.adrelid), '')
                      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                      JOIN pg_namespace n ON n.oid = c.relnamespace
                      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                      WHERE n.nspname = ANY(%(s)s) AND a.attnum > 0 AND NOT a.attisdropped""",
        "indexes": "SELECT schemaname, tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = ANY(%(s)s)",
        "constraints": """SELECT n.nspname, c.relname, k.conname, pg_get_constraintdef(k.oid)
                          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
                          JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY(%(s)s)""",
        "policies": """SELECT schemaname, tablename, policyname, cmd, roles::text, coalesce(qual, ''),
                              coalesce(with_check, '') FROM pg_policies WHERE schemaname = ANY(%(s)s)""",
        "triggers": """SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
                       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
                       JOIN pg_namespace n ON n.oid = c.relnamespace
                       WHERE NOT t.tgisinternal AND n.nspname = ANY(%(s)s)""",
        "functions": """SELECT n.nspname, p.proname, pg_get_functiondef(p.oid), p.proowner::regrole::text,
                               coalesce(p.proacl::text, '')
                        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = ANY(%(s)s)""",
        "schemas": """SELECT nspname, nspowner::regrole::text, coalesce(nspacl::text, '') FROM pg_namespace
                      WHERE nspname = ANY(%(s)s)""",
        "default_acl": "SELECT defaclrole::regrole::text, defaclobjtype::text, defaclacl::text FROM pg_default_acl",
        "roles": """SELECT rolname, rolcanlogin, rolbypassrls, rolinherit, rolsuper FROM pg_roles
                    WHERE rolname IN ('anon', 'authenticated', 'service_role')""",
        "buckets": """SELECT id, name, public, file_size_limit, allowed_mime_types::text, updated_at::text
                      FROM storage.buckets""",
    }
    with psycopg.connect(url) as conn:
        return {key: sorted(tuple(str(v) for v in row) for row in conn.execute(q, {"s": schemas}).fetchall())
                for key, q in queries.items()}


def history(url: str) -> list[tuple[str, str, list[str]]]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(f"SELECT version, name, statements FROM {HISTORY_TABLE} ORDER BY version")]
