-- Trainer-ready exports (OpenAI, TRL, Axolotl, LLaMA-Factory), their report and manifest.
--
-- * lora_training_files.policy / lora_training_jobs.policy: the training policy (target model,
--   max_length, over-length policy, min quality, text fixes) a file is built with, and the one a
--   job asked for. A job whose policy differs from its file's re-renders the file's members
--   (`rerender_ids`) from their stored v4 fragments.
-- * members and staged items carry one exports bundle object per conversation
--   (`exports_fragment_key`, byte ranges per format in `exports_layout`) and its compact
--   token statistics (`export_stats`), so publishing never re-reads enriched files and never
--   re-tokenizes.
-- * versions (and the file, for its current version) list every artifact in `artifacts`
--   ({name: {path, size, sha256, lines, content_type}}) plus the policy and a summary of the
--   export figures. A version row is inserted once with all of them: all artifacts or none.
--
-- Re-runnable: every statement is guarded (ADD COLUMN IF NOT EXISTS).

ALTER TABLE public.lora_training_files
  ADD COLUMN IF NOT EXISTS policy          jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS artifacts       jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS export_summary  jsonb NOT NULL DEFAULT '{}';

ALTER TABLE public.lora_training_jobs
  ADD COLUMN IF NOT EXISTS policy       jsonb,
  ADD COLUMN IF NOT EXISTS rerender_ids text[] NOT NULL DEFAULT '{}';

ALTER TABLE public.lora_training_job_items
  ADD COLUMN IF NOT EXISTS exports_fragment_key  text,
  ADD COLUMN IF NOT EXISTS exports_fragment_size bigint,
  ADD COLUMN IF NOT EXISTS exports_layout        jsonb,
  ADD COLUMN IF NOT EXISTS export_stats          jsonb,
  ADD COLUMN IF NOT EXISTS policy_digest         text;

ALTER TABLE public.lora_training_file_members
  ADD COLUMN IF NOT EXISTS exports_fragment_key  text,
  ADD COLUMN IF NOT EXISTS exports_fragment_size bigint,
  ADD COLUMN IF NOT EXISTS exports_layout        jsonb,
  ADD COLUMN IF NOT EXISTS export_stats          jsonb,
  ADD COLUMN IF NOT EXISTS policy_digest         text;

ALTER TABLE public.lora_training_file_versions
  ADD COLUMN IF NOT EXISTS policy          jsonb,
  ADD COLUMN IF NOT EXISTS artifacts       jsonb NOT NULL DEFAULT '{}',
  ADD COLUMN IF NOT EXISTS export_summary  jsonb NOT NULL DEFAULT '{}';
