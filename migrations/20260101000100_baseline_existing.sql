-- Baseline: the existing train-data tables that lorafiles reads, plus the Supabase
-- pieces (auth schema, auth.uid(), roles) that plain PostgreSQL lacks.
--
-- This file must be a NO-OP on the real Supabase project:
--   * tables are created only when missing (CREATE TABLE IF NOT EXISTS);
--   * a column we rely on is added only when it is missing. The check runs before any
--     ALTER TABLE, so an existing live table is not even locked;
--   * Supabase objects (schema auth, auth.users, auth.uid(), auth.jwt(), roles) are
--     created only when missing, and schema grants are issued only when missing.
-- On plain PostgreSQL (local, tests) it builds a faithful-enough copy of the schema
-- described in /work/shared/spec/existing-schema.md. gen_random_uuid() is built in
-- since PostgreSQL 13, so no extension is needed.

-- ---------------------------------------------------------------------------
-- Supabase pieces
-- ---------------------------------------------------------------------------
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = 'auth') THEN
    CREATE SCHEMA auth;
  END IF;

  IF to_regclass('auth.users') IS NULL THEN
    CREATE TABLE auth.users (
      id         uuid PRIMARY KEY,
      email      text,
      created_at timestamptz DEFAULT now()
    );
  END IF;

  -- Same semantics as Supabase: the `sub` claim of the request JWT, NULL when absent.
  -- nullif(..., '') before the jsonb cast: a custom GUC reset at transaction end reads
  -- back as '' (not NULL), and ''::jsonb would raise.
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'uid'
  ) THEN
    CREATE FUNCTION auth.uid() RETURNS uuid
      LANGUAGE sql STABLE
      AS $f$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
        )::uuid
      $f$;
  END IF;

  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = 'auth' AND p.proname = 'jwt'
  ) THEN
    CREATE FUNCTION auth.jwt() RETURNS jsonb
      LANGUAGE sql STABLE
      AS $f$
        SELECT coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $f$;
  END IF;

  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
END
$$;

-- grant usage on schema public, auth to anon, authenticated, service_role
-- (only where missing: on Supabase these grants exist and `auth` is not ours to touch)
DO $$
DECLARE
  r text;
  s text;
BEGIN
  FOREACH s IN ARRAY ARRAY['public', 'auth'] LOOP
    FOREACH r IN ARRAY ARRAY['anon', 'authenticated', 'service_role'] LOOP
      IF NOT has_schema_privilege(r, s, 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, r);
      END IF;
    END LOOP;
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Scaffolding tables
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.personas (
  id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name               varchar(255) NOT NULL,
  persona_key        varchar(100) NOT NULL UNIQUE,
  archetype          text,
  emotional_baseline text,
  demographics       jsonb,
  is_active          boolean DEFAULT true,
  usage_count        integer DEFAULT 0,
  last_used_at       timestamptz,
  created_at         timestamptz DEFAULT now(),
  updated_at         timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.emotional_arcs (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name              varchar(255) NOT NULL,
  arc_key           varchar(100) NOT NULL UNIQUE,
  starting_emotion  text,
  ending_emotion    text,
  starting_intensity numeric,
  ending_intensity  numeric,
  tier              text,
  is_active         boolean DEFAULT true,
  usage_count       integer DEFAULT 0,
  last_used_at      timestamptz,
  created_at        timestamptz DEFAULT now(),
  updated_at        timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.training_topics (
  id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name             varchar(255) NOT NULL,
  topic_key        varchar(100) NOT NULL UNIQUE,
  category         text,
  complexity_level text,
  is_active        boolean DEFAULT true,
  usage_count      integer DEFAULT 0,
  last_used_at     timestamptz,
  created_at       timestamptz DEFAULT now(),
  updated_at       timestamptz DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- conversations
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.conversations (
  id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  conversation_id      text NOT NULL UNIQUE,
  created_by           uuid,
  persona_id           uuid,
  emotional_arc_id     uuid,
  training_topic_id    uuid,
  template_id          uuid,
  persona_key          text,
  emotional_arc_key    text,
  topic_key            text,
  scaffolding_snapshot jsonb,
  status               text,
  processing_status    varchar(50),
  quality_score        numeric(3,1),
  conversation_name    text,
  turn_count           integer,
  file_path            text,
  storage_bucket       text,
  enrichment_status    varchar(50) DEFAULT 'not_started',
  validation_report    jsonb,
  enriched_file_path   text,
  enriched_file_size   bigint,
  enriched_at          timestamptz,
  enrichment_version   varchar(20) DEFAULT 'v1.0',
  enrichment_error     text,
  is_active            boolean DEFAULT true,
  created_at           timestamptz DEFAULT now(),
  updated_at           timestamptz DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- batch_jobs / batch_items
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.batch_jobs (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name                     text,
  description              text,
  job_type                 text DEFAULT 'generation',
  configuration            jsonb,
  status                   varchar(20),
  total_items              integer DEFAULT 0,
  completed_items          integer DEFAULT 0,
  failed_items             integer DEFAULT 0,
  successful_items         integer DEFAULT 0,
  skipped_items            integer DEFAULT 0,
  progress_percentage      numeric DEFAULT 0,
  priority                 varchar(20) DEFAULT 'normal',
  tier                     text,
  shared_parameters        jsonb,
  concurrent_processing    integer,
  error_handling           text,
  error_message            text,
  results                  jsonb,
  summary                  jsonb,
  started_at               timestamptz,
  completed_at             timestamptz,
  estimated_time_remaining integer,
  created_by               uuid,
  created_at               timestamptz DEFAULT now(),
  updated_at               timestamptz DEFAULT now()
);

CREATE TABLE IF NOT EXISTS public.batch_items (
  id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  batch_job_id    uuid REFERENCES public.batch_jobs(id) ON DELETE CASCADE,
  position        integer,
  topic           text,
  tier            text,
  parameters      jsonb,
  status          text,
  progress        integer,
  estimated_time  integer,
  error_message   text,
  conversation_id uuid REFERENCES public.conversations(id) ON DELETE SET NULL,
  created_at      timestamptz DEFAULT now(),
  updated_at      timestamptz DEFAULT now()
);

-- ---------------------------------------------------------------------------
-- Columns we rely on, added only when missing (no ALTER, hence no lock, when present)
-- ---------------------------------------------------------------------------
DO $$
DECLARE
  c record;
BEGIN
  FOR c IN
    SELECT * FROM (VALUES
      ('conversations', 'created_by',           'uuid'),
      ('conversations', 'persona_id',           'uuid'),
      ('conversations', 'emotional_arc_id',     'uuid'),
      ('conversations', 'training_topic_id',    'uuid'),
      ('conversations', 'template_id',          'uuid'),
      ('conversations', 'persona_key',          'text'),
      ('conversations', 'emotional_arc_key',    'text'),
      ('conversations', 'topic_key',            'text'),
      ('conversations', 'scaffolding_snapshot', 'jsonb'),
      ('conversations', 'status',               'text'),
      ('conversations', 'processing_status',    'varchar(50)'),
      ('conversations', 'quality_score',        'numeric(3,1)'),
      ('conversations', 'conversation_name',    'text'),
      ('conversations', 'turn_count',           'integer'),
      ('conversations', 'file_path',            'text'),
      ('conversations', 'storage_bucket',       'text'),
      ('conversations', 'enrichment_status',    'varchar(50) DEFAULT ''not_started'''),
      ('conversations', 'validation_report',    'jsonb'),
      ('conversations', 'enriched_file_path',   'text'),
      ('conversations', 'enriched_file_size',   'bigint'),
      ('conversations', 'enriched_at',          'timestamptz'),
      ('conversations', 'enrichment_version',   'varchar(20) DEFAULT ''v1.0'''),
      ('conversations', 'enrichment_error',     'text'),
      ('conversations', 'is_active',            'boolean DEFAULT true'),
      ('conversations', 'created_at',           'timestamptz DEFAULT now()'),
      ('conversations', 'updated_at',           'timestamptz DEFAULT now()'),
      ('batch_jobs',    'name',                 'text'),
      ('batch_jobs',    'status',               'varchar(20)'),
      ('batch_jobs',    'created_by',           'uuid'),
      ('batch_jobs',    'job_type',             'text'),
      ('batch_jobs',    'created_at',           'timestamptz DEFAULT now()'),
      ('batch_jobs',    'updated_at',           'timestamptz DEFAULT now()'),
      ('batch_items',   'batch_job_id',         'uuid REFERENCES public.batch_jobs(id) ON DELETE CASCADE'),
      ('batch_items',   'position',             'integer'),
      ('batch_items',   'topic',                'text'),
      ('batch_items',   'tier',                 'text'),
      ('batch_items',   'parameters',           'jsonb'),
      ('batch_items',   'status',               'text'),
      ('batch_items',   'progress',             'integer'),
      ('batch_items',   'estimated_time',       'integer'),
      ('batch_items',   'error_message',        'text'),
      ('batch_items',   'conversation_id',      'uuid REFERENCES public.conversations(id) ON DELETE SET NULL'),
      ('batch_items',   'created_at',           'timestamptz DEFAULT now()'),
      ('batch_items',   'updated_at',           'timestamptz DEFAULT now()'),
      ('personas',        'name',               'varchar(255)'),
      ('personas',        'persona_key',        'varchar(100)'),
      ('emotional_arcs',  'name',               'varchar(255)'),
      ('emotional_arcs',  'arc_key',            'varchar(100)'),
      ('training_topics', 'name',               'varchar(255)'),
      ('training_topics', 'topic_key',          'varchar(100)')
    ) AS v(tbl, col, def)
  LOOP
    IF NOT EXISTS (
      SELECT 1 FROM pg_catalog.pg_attribute
      WHERE attrelid = to_regclass('public.' || quote_ident(c.tbl))
        AND attname = c.col AND attnum > 0 AND NOT attisdropped
    ) THEN
      EXECUTE format('ALTER TABLE public.%I ADD COLUMN IF NOT EXISTS %I %s', c.tbl, c.col, c.def);
    END IF;
  END LOOP;
END
$$;

-- ---------------------------------------------------------------------------
-- Constraints we rely on, added only when missing
-- ---------------------------------------------------------------------------
DO $$
DECLARE
  att smallint;
BEGIN
  -- conversations.enrichment_status CHECK (20251120): only if the column has no CHECK yet.
  SELECT attnum INTO att FROM pg_catalog.pg_attribute
  WHERE attrelid = 'public.conversations'::regclass AND attname = 'enrichment_status' AND NOT attisdropped;
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_constraint
    WHERE conrelid = 'public.conversations'::regclass AND contype = 'c' AND att = ANY (conkey)
  ) THEN
    ALTER TABLE public.conversations
      ADD CONSTRAINT conversations_enrichment_status_check CHECK (enrichment_status IN (
        'not_started', 'validation_failed', 'validated', 'enrichment_in_progress',
        'enriched', 'normalization_failed', 'completed'));
  END IF;

  -- conversations.conversation_id must be unique: lora_training_file_members references it.
  SELECT attnum INTO att FROM pg_catalog.pg_attribute
  WHERE attrelid = 'public.conversations'::regclass AND attname = 'conversation_id' AND NOT attisdropped;
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index
    WHERE indrelid = 'public.conversations'::regclass AND indisunique AND indpred IS NULL
      AND indnatts = 1 AND indkey[0] = att
  ) THEN
    ALTER TABLE public.conversations
      ADD CONSTRAINT conversations_conversation_id_key UNIQUE (conversation_id);
  END IF;
END
$$;
