"""Item 3 of issue 10: the private training-files bucket, its size limit and MIME types, and the
storage.objects policy that lets a user read only objects under their own folder."""
from __future__ import annotations

import json
import uuid

import psycopg
from supakit import push_locally, snapshot

from lorafiles.db.migrate import apply_migrations
from lorafiles.storage.content_types import ALLOWED_MIME_TYPES, ARTIFACT_NAMES, content_type_for

ALICE, BOB = uuid.uuid4(), uuid.uuid4()


def objects_visible_to(url: str, role: str, user: uuid.UUID | None) -> list[str]:
    with psycopg.connect(url) as conn:
        conn.execute(f"SET LOCAL ROLE {role}")
        if user:
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)",
                         (json.dumps({"sub": str(user), "role": role}),))
        return sorted(r[0] for r in conn.execute("SELECT bucket_id || ':' || name FROM storage.objects"))


def test_bucket_is_private_with_the_allowed_types_of_every_artifact(supabase_project):
    push_locally(supabase_project.url)
    with psycopg.connect(supabase_project.url) as conn:
        row = conn.execute("SELECT public, file_size_limit, allowed_mime_types FROM storage.buckets "
                           "WHERE id = 'training-files' AND name = 'training-files'").fetchone()
    assert row is not None
    public, limit, mime_types = row
    assert public is False
    assert limit == 1024 ** 3
    assert tuple(sorted(mime_types)) == ALLOWED_MIME_TYPES  # exactly the uploads' mapping
    for name in ARTIFACT_NAMES + ("fragments/c/0123abcd.json", "fragments/c/0123abcd.jsonl"):
        assert content_type_for(name) in mime_types, name
    assert {"application/json", "application/jsonl", "application/yaml", "text/markdown"} == set(mime_types)


def test_a_user_reads_only_objects_under_their_own_folder(supabase_project):
    url = supabase_project.url
    apply_migrations(url)  # lorafiles migrate provisions the same
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO storage.buckets (id, name) VALUES ('conversation-files', 'conversation-files')")
        for bucket, name in [("training-files", f"{ALICE}/f1/v1/training.json"),
                             ("training-files", f"{ALICE}/f1/v1/axolotl.yml"),
                             ("training-files", f"{BOB}/f2/v1/training.jsonl"),
                             ("training-files", f"x{ALICE}/f3/v1/training.json"),  # not her folder
                             ("training-files", f"{ALICE}.json"),  # no folder at all
                             ("conversation-files", f"{ALICE}/c1/enriched.json")]:  # another bucket
            conn.execute("INSERT INTO storage.objects (bucket_id, name) VALUES (%s, %s)", (bucket, name))
    assert objects_visible_to(url, "authenticated", ALICE) == [
        f"training-files:{ALICE}/f1/v1/axolotl.yml", f"training-files:{ALICE}/f1/v1/training.json"]
    assert objects_visible_to(url, "authenticated", BOB) == [f"training-files:{BOB}/f2/v1/training.jsonl"]
    assert objects_visible_to(url, "authenticated", None) == []
    assert objects_visible_to(url, "anon", None) == []
    # the policy is for signed-in users only: the anon role reads nothing even with a user's id in its claims
    assert objects_visible_to(url, "anon", ALICE) == []


def test_reapplying_rewrites_nothing_and_restores_changed_settings(supabase_project):
    url = supabase_project.url
    apply_migrations(url)
    first = snapshot(url)
    sql = next(p for p in (supabase_project_migrations()) if "training_files_bucket" in p.name).read_text()
    with psycopg.connect(url) as conn:
        conn.execute(sql)
    assert snapshot(url) == first  # not even updated_at of the bucket row moved
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE storage.buckets SET public = true, allowed_mime_types = NULL WHERE id = 'training-files'")
        conn.execute(sql)
        assert conn.execute("SELECT public, allowed_mime_types IS NOT NULL FROM storage.buckets "
                            "WHERE id = 'training-files'").fetchone() == (False, True)


def test_without_the_storage_owners_rights_the_bucket_is_made_and_the_policy_named(restricted_project):
    """Where the migration role may not create policies on storage.objects (it does not own it), the
    push still succeeds: the bucket is provisioned and a WARNING gives the statement to run."""
    notices: list[str] = []
    with psycopg.connect(restricted_project.url) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"{d.severity}: {d.message_primary} HINT {d.message_hint}"))
        apply_migrations(conn)
        assert conn.execute("SELECT count(*) FROM storage.buckets WHERE id = 'training-files'").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM pg_policies WHERE schemaname = 'storage'").fetchone()[0] == 0
    [warning] = [n for n in notices if n.startswith("WARNING")]
    assert "storage.objects" in warning and "CREATE POLICY lorafiles_training_files_read_own" in warning
    assert objects_visible_to(restricted_project.url, "authenticated", ALICE) == []  # fails closed


def test_plain_postgresql_has_no_storage_and_gets_no_bucket(db_url):
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT to_regclass('storage.buckets')").fetchone()[0] is None


def supabase_project_migrations():
    from lorafiles.db.migrate import discover

    return [m.path for m in discover()]
