-- conversations.batch_id: the batch job a conversation was generated in.
--
-- Why a real column and not a view:
--   * The conversations page lists, filters and sorts by batch through PostgREST on the
--     existing `conversations` endpoint (`?batch_id=eq.<id>&order=batch_id`). A real column
--     works there directly: no join, no new endpoint, no embedded resource, and it can be
--     indexed, alone and together with the owner (`created_by, batch_id`) for the
--     owner-scoped page. A view would be a second endpoint with its own RLS story
--     (security_invoker), and a join cannot use one composite index for owner + batch.
--   * batch_items stays the source of truth: the trigger below recomputes batch_id from
--     batch_items whenever an item is inserted, deleted, or has its conversation_id or
--     batch_job_id changed, so the app's existing write paths need no change.
-- Why not generation_logs: generation_logs.run_id is a per-run log id rather than the
--   batch_jobs id the UI shows, it is not written for every generation path, and it has one
--   row per API call (many per conversation). batch_items.conversation_id holds
--   conversations.id and batch_items.batch_job_id the batch: that is the relation we want.
--
-- Rule: batch_id = batch_job_id of the latest batch_items row of the conversation
-- (updated_at DESC NULLS LAST, then id), among rows whose batch job exists; NULL if none.

ALTER TABLE public.conversations
  ADD COLUMN IF NOT EXISTS batch_id uuid REFERENCES public.batch_jobs(id) ON DELETE SET NULL;

CREATE INDEX IF NOT EXISTS conversations_batch_id_idx
  ON public.conversations (batch_id);
CREATE INDEX IF NOT EXISTS conversations_created_by_batch_id_idx
  ON public.conversations (created_by, batch_id);

-- The trigger and the back-fill look items up by conversation; index that FK column
-- unless some index already leads with it.
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_index i
    JOIN pg_catalog.pg_attribute a
      ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] AND a.attname = 'conversation_id'
    WHERE i.indrelid = 'public.batch_items'::regclass
  ) THEN
    CREATE INDEX batch_items_conversation_id_idx ON public.batch_items (conversation_id);
  END IF;
END
$$;

-- Back-fill rows that exist before this migration.
UPDATE public.conversations c
SET batch_id = latest.batch_job_id
FROM (
  SELECT DISTINCT ON (bi.conversation_id::uuid)
         bi.conversation_id::uuid AS conversation_pk,
         bi.batch_job_id::uuid    AS batch_job_id
  FROM public.batch_items bi
  JOIN public.batch_jobs bj ON bj.id = bi.batch_job_id::uuid
  WHERE bi.conversation_id IS NOT NULL
  ORDER BY bi.conversation_id::uuid, bi.updated_at DESC NULLS LAST, bi.id
) AS latest
WHERE c.id = latest.conversation_pk
  AND c.batch_id IS DISTINCT FROM latest.batch_job_id;

-- Keep it consistent. SECURITY DEFINER (owned by the migration role, which owns
-- `conversations`) so the sync works whichever role writes batch_items, RLS included.
CREATE OR REPLACE FUNCTION public.lorafiles_batch_items_sync_batch_id()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
DECLARE
  ids uuid[] := ARRAY[]::uuid[];
  cid uuid;
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.conversation_id IS NOT NULL THEN
    ids := ids || OLD.conversation_id::uuid;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.conversation_id IS NOT NULL
     AND NOT (NEW.conversation_id::uuid = ANY (ids)) THEN
    ids := ids || NEW.conversation_id::uuid;
  END IF;

  FOREACH cid IN ARRAY ids LOOP
    UPDATE public.conversations c
    SET batch_id = s.batch_job_id
    FROM (
      SELECT (
        SELECT bi.batch_job_id::uuid
        FROM public.batch_items bi
        JOIN public.batch_jobs bj ON bj.id = bi.batch_job_id::uuid
        WHERE bi.conversation_id::uuid = cid
        ORDER BY bi.updated_at DESC NULLS LAST, bi.id
        LIMIT 1
      ) AS batch_job_id
    ) AS s
    WHERE c.id = cid
      AND c.batch_id IS DISTINCT FROM s.batch_job_id;
  END LOOP;
  RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION public.lorafiles_batch_items_sync_batch_id() FROM PUBLIC, anon, authenticated;

DROP TRIGGER IF EXISTS lorafiles_batch_items_sync_batch_id ON public.batch_items;
CREATE TRIGGER lorafiles_batch_items_sync_batch_id
  AFTER INSERT OR UPDATE OF conversation_id, batch_job_id OR DELETE ON public.batch_items
  FOR EACH ROW EXECUTE FUNCTION public.lorafiles_batch_items_sync_batch_id();
