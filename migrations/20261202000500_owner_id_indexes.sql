-- Every RLS-protected lora_* table filters on owner_id (policy `owner_id = auth.uid()`): give the
-- two that had no index leading with owner_id one. lora_training_files ((owner_id, lower(name)),
-- (owner_id, created_at)) and lora_training_jobs ((owner_id, idempotency_key)) have one;
-- lora_training_file_versions has no owner_id (its policy goes through its file's primary key).
-- tests/db/test_rls.py checks that every RLS table with an owner_id column is covered.
-- Re-applicable with no effect.

CREATE INDEX IF NOT EXISTS lora_training_job_items_owner_id_idx
  ON public.lora_training_job_items (owner_id);
CREATE INDEX IF NOT EXISTS lora_training_file_members_owner_id_idx
  ON public.lora_training_file_members (owner_id);
