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

-- Re-applicable with no effect: every object is created only when missing, and the checks read
-- the catalog first, so a re-run takes no lock on the app's live tables.
--
-- No data is changed here. Rows that exist before this migration get their batch_id from
-- public.lorafiles_backfill_batch_ids(max_rows), run in bounded batches, each its own
-- transaction, by `lorafiles migrate` (or `lorafiles backfill-batch-ids`) AFTER the migration:
-- it updates only rows whose value changes, so the app's Database Webhook and `updated_at`
-- trigger fire once per conversation that really gains a batch_id, spread over the batches,
-- never once per row of the table in one transaction. Order of operations: docs/SUPABASE.md.

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_attribute
    WHERE attrelid = 'public.conversations'::regclass AND attname = 'batch_id' AND NOT attisdropped
  ) THEN
    ALTER TABLE public.conversations
      ADD COLUMN batch_id uuid REFERENCES public.batch_jobs(id) ON DELETE SET NULL;
  END IF;
  IF to_regclass('public.conversations_batch_id_idx') IS NULL THEN
    CREATE INDEX conversations_batch_id_idx ON public.conversations (batch_id);
  END IF;
  IF to_regclass('public.conversations_created_by_batch_id_idx') IS NULL THEN
    CREATE INDEX conversations_created_by_batch_id_idx ON public.conversations (created_by, batch_id);
  END IF;
END
$$;

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

-- Back-fill, in bounded batches (called by `lorafiles migrate`, see the header): sets batch_id on
-- at most `max_rows` conversations whose value differs from the rule, returns how many it
-- changed (0 = done). Same rule as the trigger below.
CREATE OR REPLACE FUNCTION public.lorafiles_backfill_batch_ids(max_rows integer DEFAULT 500)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, public
AS $$
DECLARE
  changed integer;
BEGIN
  IF max_rows IS NULL OR max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be at least 1, not %', max_rows;
  END IF;
  WITH latest AS (
    SELECT DISTINCT ON (bi.conversation_id::uuid)
           bi.conversation_id::uuid AS conversation_pk,
           bi.batch_job_id::uuid    AS batch_job_id
    FROM public.batch_items bi
    JOIN public.batch_jobs bj ON bj.id = bi.batch_job_id::uuid
    WHERE bi.conversation_id IS NOT NULL
    ORDER BY bi.conversation_id::uuid, bi.updated_at DESC NULLS LAST, bi.id
  ), todo AS (
    SELECT c.id, l.batch_job_id
    FROM public.conversations c
    LEFT JOIN latest l ON l.conversation_pk = c.id
    WHERE c.batch_id IS DISTINCT FROM l.batch_job_id
    ORDER BY c.id
    LIMIT max_rows
    FOR UPDATE OF c
  )
  UPDATE public.conversations c
  SET batch_id = todo.batch_job_id
  FROM todo
  WHERE c.id = todo.id;
  GET DIAGNOSTICS changed = ROW_COUNT;
  RETURN changed;
END
$$;

REVOKE ALL ON FUNCTION public.lorafiles_backfill_batch_ids(integer) FROM PUBLIC, anon, authenticated;

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

DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM pg_catalog.pg_trigger
    WHERE tgrelid = 'public.batch_items'::regclass AND tgname = 'lorafiles_batch_items_sync_batch_id'
  ) THEN
    CREATE TRIGGER lorafiles_batch_items_sync_batch_id
      AFTER INSERT OR UPDATE OF conversation_id, batch_job_id OR DELETE ON public.batch_items
      FOR EACH ROW EXECUTE FUNCTION public.lorafiles_batch_items_sync_batch_id();
  END IF;
END
$$;
