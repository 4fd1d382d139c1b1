-- Supabase Storage: the private `training-files` bucket that holds every artifact
-- (`<owner>/<file_id>/v<N>/…`, `<owner>/<file_id>/fragments/…`), and read access for each user
-- to the objects under their own folder only (first path segment = auth.uid()).
--
-- * allowed_mime_types is exactly the list of lorafiles.storage.content_types.ALLOWED_MIME_TYPES
--   (every upload's content type comes from that one mapping; tests/supabase/test_storage_bucket.py
--   checks the two agree): application/json (training.json, fragments, manifest.json,
--   report.json, dataset_info.json), application/jsonl (training.jsonl, fragments, openai.jsonl,
--   trl.jsonl, axolotl.jsonl, sharegpt.jsonl), application/yaml (axolotl.yml), text/markdown
--   (the dataset card README.md).
-- * file_size_limit 1 GiB: a 5,000-conversation training.json is about 190 MB. Supabase applies
--   the smaller of this and the project's global upload limit (Storage settings; 50 MB on the
--   Free plan), so raise the global limit for large files.
-- * Users only read (SELECT); writes go through the functions (service role / S3 keys, which
--   bypass RLS). Downloads are signed URLs, which need no policy; the policy lets the app list
--   and download a user's own artifacts with the user's session.
--
-- On plain PostgreSQL (local, tests) there is no storage schema: nothing is done.
-- Re-applicable with no effect: the bucket row is written only when it differs, and the policy
-- is created only when missing (no lock is taken on storage.objects on a re-run).
-- Creating a policy on storage.objects needs its owner's rights. Where the migration role lacks
-- them (hosted projects where `postgres` no longer owns storage.objects), the bucket is still
-- provisioned and a WARNING names the statement to run in the dashboard's SQL editor
-- (docs/SUPABASE.md); without the policy users can read nothing directly (fails closed).

DO $$
DECLARE
  mime_types constant text[] := ARRAY['application/json', 'application/jsonl', 'application/yaml', 'text/markdown'];
  size_limit constant bigint := 1073741824;
  objects_owner oid;
BEGIN
  IF to_regclass('storage.buckets') IS NULL THEN
    RAISE NOTICE 'no storage.buckets (not a Supabase database): bucket training-files not provisioned';
    RETURN;
  END IF;

  INSERT INTO storage.buckets AS b (id, name, public, file_size_limit, allowed_mime_types)
  VALUES ('training-files', 'training-files', false, size_limit, mime_types)
  ON CONFLICT (id) DO UPDATE
    SET public = EXCLUDED.public,
        file_size_limit = EXCLUDED.file_size_limit,
        allowed_mime_types = EXCLUDED.allowed_mime_types
    WHERE (b.public, b.file_size_limit, b.allowed_mime_types)
          IS DISTINCT FROM (EXCLUDED.public, EXCLUDED.file_size_limit, EXCLUDED.allowed_mime_types);

  IF to_regclass('storage.objects') IS NULL
     OR EXISTS (SELECT 1 FROM pg_catalog.pg_policies
                WHERE schemaname = 'storage' AND tablename = 'objects'
                  AND policyname = 'lorafiles_training_files_read_own') THEN
    RETURN;
  END IF;
  SELECT relowner INTO objects_owner FROM pg_catalog.pg_class WHERE oid = 'storage.objects'::regclass;
  IF pg_catalog.pg_has_role(current_user, objects_owner, 'USAGE') THEN
    CREATE POLICY lorafiles_training_files_read_own
      ON storage.objects FOR SELECT TO authenticated
      USING (bucket_id = 'training-files' AND split_part(name, '/', 1) = (SELECT auth.uid())::text);
  ELSE
    RAISE WARNING USING
      MESSAGE = format('%s may not create policies on storage.objects (owned by %s): bucket training-files '
                       'is provisioned, its read policy is not', current_user, objects_owner::regrole),
      HINT = 'Run as the owner (dashboard SQL editor): CREATE POLICY lorafiles_training_files_read_own '
             'ON storage.objects FOR SELECT TO authenticated USING (bucket_id = ''training-files'' AND '
             'split_part(name, ''/'', 1) = (SELECT auth.uid())::text);';
  END IF;
END
$$;
