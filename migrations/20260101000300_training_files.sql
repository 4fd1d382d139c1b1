-- LoRA training files: files, their active members, jobs, staged job items, and the
-- immutable version history. Prefix `lora_` keeps clear of the app's older
-- `training_files` / `training_file_conversations` tables.
--
-- Access: our functions connect as the database owner (bypasses RLS). Row level
-- security lets `authenticated` users SELECT only their own rows
-- (owner_id = auth.uid()); they can write nothing, and `anon` gets nothing.
--
-- Re-applicable with no effect (supabase db push after a history repair, or a second
-- runner): tables and indexes IF NOT EXISTS, functions CREATE OR REPLACE, triggers CREATE OR
-- REPLACE, policies dropped and created again with the same definition, grants restated.
-- `(select auth.uid())` in the policies is the same predicate as `auth.uid()`, written so
-- the planner evaluates it once per statement instead of once per row.

-- ---------------------------------------------------------------------------
-- Shared trigger functions
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.lorafiles_set_updated_at()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION public.lorafiles_versions_immutable()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
BEGIN
  RAISE EXCEPTION 'lora_training_file_versions rows are immutable (file_id=%, version=%)',
    OLD.file_id, OLD.version
    USING ERRCODE = 'restrict_violation';
END
$$;

-- ---------------------------------------------------------------------------
-- lora_training_files
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.lora_training_files (
  id                       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id                 uuid NOT NULL,
  name                     text NOT NULL
                           CONSTRAINT lora_training_files_name_check
                           CHECK (char_length(name) BETWEEN 1 AND 255 AND name = btrim(name)),
  description              text,
  status                   text NOT NULL DEFAULT 'creating'
                           CONSTRAINT lora_training_files_status_check
                           CHECK (status IN ('creating', 'ready', 'stale')),
  target_model             text NOT NULL,
  vertical                 text,
  consultant_profile       jsonb,
  current_version          integer NOT NULL DEFAULT 0,
  conversation_count       integer NOT NULL DEFAULT 0,
  training_pair_count      integer NOT NULL DEFAULT 0,
  total_turns              integer NOT NULL DEFAULT 0,
  quality_summary          jsonb NOT NULL DEFAULT '{}',
  scaffolding_distribution jsonb NOT NULL DEFAULT '{}',
  batch_ids                uuid[] NOT NULL DEFAULT '{}',
  json_path                text,
  jsonl_path               text,
  json_size                bigint,
  jsonl_size               bigint,
  json_sha256              text,
  jsonl_sha256             text,
  stale_since              timestamptz,
  created_at               timestamptz NOT NULL DEFAULT now(),
  updated_at               timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX IF NOT EXISTS lora_training_files_owner_name_key
  ON public.lora_training_files (owner_id, lower(name));
CREATE INDEX IF NOT EXISTS lora_training_files_owner_created_idx
  ON public.lora_training_files (owner_id, created_at DESC);

CREATE OR REPLACE TRIGGER lora_training_files_set_updated_at
  BEFORE UPDATE ON public.lora_training_files
  FOR EACH ROW EXECUTE FUNCTION public.lorafiles_set_updated_at();

-- ---------------------------------------------------------------------------
-- lora_training_jobs
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.lora_training_jobs (
  id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  owner_id          uuid NOT NULL,
  file_id           uuid REFERENCES public.lora_training_files(id) ON DELETE CASCADE,
  kind              text NOT NULL
                    CONSTRAINT lora_training_jobs_kind_check
                    CHECK (kind IN ('create', 'add', 'regenerate')),
  status            text NOT NULL DEFAULT 'queued'
                    CONSTRAINT lora_training_jobs_status_check
                    CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
  step              text,
  file_name         text,
  description       text,
  requested_ids     text[] NOT NULL DEFAULT '{}',
  batch_size        integer NOT NULL DEFAULT 10,
  total_batches     integer NOT NULL DEFAULT 0,
  completed_batches integer[] NOT NULL DEFAULT '{}',
  base_version      integer,
  published_version integer,
  error             jsonb,
  idempotency_key   text NOT NULL,
  execution_name    text,
  execution_arn     text,
  created_at        timestamptz NOT NULL DEFAULT now(),
  updated_at        timestamptz NOT NULL DEFAULT now(),
  started_at        timestamptz,
  finished_at       timestamptz,
  CONSTRAINT lora_training_jobs_owner_idempotency_key UNIQUE (owner_id, idempotency_key)
);

-- At most one active job per file.
CREATE UNIQUE INDEX IF NOT EXISTS lora_training_jobs_one_active_per_file
  ON public.lora_training_jobs (file_id)
  WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS lora_training_jobs_status_updated_idx
  ON public.lora_training_jobs (status, updated_at);
-- FK lookups (ON DELETE CASCADE from files, jobs of a file).
CREATE INDEX IF NOT EXISTS lora_training_jobs_file_id_idx
  ON public.lora_training_jobs (file_id);

CREATE OR REPLACE TRIGGER lora_training_jobs_set_updated_at
  BEFORE UPDATE ON public.lora_training_jobs
  FOR EACH ROW EXECUTE FUNCTION public.lorafiles_set_updated_at();

-- ---------------------------------------------------------------------------
-- lora_training_job_items: staged work of one job
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.lora_training_job_items (
  job_id              uuid NOT NULL REFERENCES public.lora_training_jobs(id) ON DELETE CASCADE,
  conversation_id     text NOT NULL,
  owner_id            uuid NOT NULL,
  position            integer NOT NULL,
  conversation_pk     uuid NOT NULL,
  batch_id            uuid,
  source_file         text NOT NULL,
  source_sha256       text NOT NULL,
  json_fragment_key   text NOT NULL,
  jsonl_fragment_key  text NOT NULL,
  json_fragment_size  bigint NOT NULL,
  jsonl_fragment_size bigint NOT NULL,
  pairs               integer NOT NULL,
  training_pairs      integer NOT NULL,
  quality_sum         double precision NOT NULL,
  quality_count       integer NOT NULL,
  quality_min         double precision,
  quality_max         double precision,
  human_reviewed      integer NOT NULL,
  quality_tier        text NOT NULL,
  persona_key         text,
  persona_name        text,
  emotional_arc_key   text,
  emotional_arc       text,
  training_topic_key  text,
  training_topic      text,
  vertical            text,
  consultant_profile  jsonb,
  warnings            jsonb NOT NULL DEFAULT '[]',
  created_at          timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job_id, conversation_id)
);

-- ---------------------------------------------------------------------------
-- lora_training_file_members: active members of a file
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.lora_training_file_members (
  file_id             uuid NOT NULL REFERENCES public.lora_training_files(id) ON DELETE CASCADE,
  conversation_id     text NOT NULL
                      REFERENCES public.conversations(conversation_id) ON UPDATE CASCADE,
  owner_id            uuid NOT NULL,
  position            integer NOT NULL,
  added_by            uuid NOT NULL,
  added_at            timestamptz NOT NULL DEFAULT now(),
  -- the job that added or last regenerated this member; no FK so history survives
  job_id              uuid NOT NULL,
  conversation_pk     uuid NOT NULL,
  batch_id            uuid,
  source_file         text NOT NULL,
  source_sha256       text NOT NULL,
  json_fragment_key   text NOT NULL,
  jsonl_fragment_key  text NOT NULL,
  json_fragment_size  bigint NOT NULL,
  jsonl_fragment_size bigint NOT NULL,
  pairs               integer NOT NULL,
  training_pairs      integer NOT NULL,
  quality_sum         double precision NOT NULL,
  quality_count       integer NOT NULL,
  quality_min         double precision,
  quality_max         double precision,
  human_reviewed      integer NOT NULL,
  quality_tier        text NOT NULL,
  persona_key         text,
  persona_name        text,
  emotional_arc_key   text,
  emotional_arc       text,
  training_topic_key  text,
  training_topic      text,
  warnings            jsonb NOT NULL DEFAULT '[]',
  PRIMARY KEY (file_id, conversation_id),
  CONSTRAINT lora_training_file_members_file_position_key UNIQUE (file_id, position)
);

-- Which files contain a conversation.
CREATE INDEX IF NOT EXISTS lora_training_file_members_conversation_id_idx
  ON public.lora_training_file_members (conversation_id);

-- ---------------------------------------------------------------------------
-- lora_training_file_versions: immutable history
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.lora_training_file_versions (
  file_id                  uuid NOT NULL REFERENCES public.lora_training_files(id) ON DELETE CASCADE,
  version                  integer NOT NULL
                           CONSTRAINT lora_training_file_versions_version_check CHECK (version >= 1),
  job_id                   uuid NOT NULL,
  json_path                text NOT NULL,
  jsonl_path               text NOT NULL,
  json_size                bigint NOT NULL,
  jsonl_size               bigint NOT NULL,
  json_sha256              text NOT NULL,
  jsonl_sha256             text NOT NULL,
  conversation_count       integer NOT NULL,
  training_pair_count      integer NOT NULL,
  total_turns              integer NOT NULL,
  quality_summary          jsonb NOT NULL,
  scaffolding_distribution jsonb NOT NULL,
  created_at               timestamptz NOT NULL,
  PRIMARY KEY (file_id, version)
);

CREATE OR REPLACE TRIGGER lora_training_file_versions_immutable
  BEFORE UPDATE ON public.lora_training_file_versions
  FOR EACH ROW EXECUTE FUNCTION public.lorafiles_versions_immutable();

-- ---------------------------------------------------------------------------
-- Row level security, policies, grants
-- ---------------------------------------------------------------------------
ALTER TABLE public.lora_training_files         ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.lora_training_jobs          ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.lora_training_job_items     ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.lora_training_file_members  ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.lora_training_file_versions ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS lora_training_files_select_own ON public.lora_training_files;
CREATE POLICY lora_training_files_select_own
  ON public.lora_training_files FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS lora_training_jobs_select_own ON public.lora_training_jobs;
CREATE POLICY lora_training_jobs_select_own
  ON public.lora_training_jobs FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS lora_training_job_items_select_own ON public.lora_training_job_items;
CREATE POLICY lora_training_job_items_select_own
  ON public.lora_training_job_items FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS lora_training_file_members_select_own ON public.lora_training_file_members;
CREATE POLICY lora_training_file_members_select_own
  ON public.lora_training_file_members FOR SELECT TO authenticated
  USING (owner_id = (SELECT auth.uid()));
DROP POLICY IF EXISTS lora_training_file_versions_select_own ON public.lora_training_file_versions;
CREATE POLICY lora_training_file_versions_select_own
  ON public.lora_training_file_versions FOR SELECT TO authenticated
  USING (EXISTS (
    SELECT 1 FROM public.lora_training_files f
    WHERE f.id = lora_training_file_versions.file_id
      AND f.owner_id = (SELECT auth.uid())
  ));

-- Supabase's default privileges grant ALL on new public tables to anon and authenticated;
-- revoke first so the grants below are the whole story on both Supabase and plain PostgreSQL.
REVOKE ALL ON public.lora_training_files, public.lora_training_jobs,
              public.lora_training_job_items, public.lora_training_file_members,
              public.lora_training_file_versions
  FROM PUBLIC, anon, authenticated;
GRANT SELECT ON public.lora_training_files, public.lora_training_jobs,
                public.lora_training_job_items, public.lora_training_file_members,
                public.lora_training_file_versions
  TO authenticated;
GRANT ALL ON public.lora_training_files, public.lora_training_jobs,
             public.lora_training_job_items, public.lora_training_file_members,
             public.lora_training_file_versions
  TO service_role;

REVOKE ALL ON FUNCTION public.lorafiles_set_updated_at() FROM PUBLIC, anon, authenticated;
REVOKE ALL ON FUNCTION public.lorafiles_versions_immutable() FROM PUBLIC, anon, authenticated;
