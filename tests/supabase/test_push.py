"""Item 1 of issue 10: the repository is a Supabase project folder the CLI pushes as is, into a
database set up like the app's Supabase project (supakit). Every migration re-applies with no
effect, `lorafiles migrate` and `supabase db push` agree on what is applied, and the database
tests pass against the pushed project.

Each test runs twice: with the real Supabase CLI (`supabase db push --db-url`, skipped with the
reason when no CLI is installed) and with the same procedure done in Python (`push_locally`)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from supakit import (REPO, SKIP_NO_CLI, forget_history_locally, forget_history_with_cli, history, push_locally,
                     push_with_cli, role_url, snapshot, supabase_cli)

from lorafiles.db.backfill import backfill_batch_ids
from lorafiles.db.migrate import applied_migrations, apply_migrations, discover

ALL = [m.name for m in discover()]


@pytest.fixture(params=["supabase-cli", "python"])
def pusher(request):
    if request.param == "supabase-cli" and not supabase_cli():
        pytest.skip(SKIP_NO_CLI)
    return request.param


def push(pusher: str, url: str) -> str:
    if pusher == "supabase-cli":
        return push_with_cli(url)
    return "\n".join(push_locally(url)) or "Remote database is up to date."


def forget(pusher: str, url: str) -> None:
    (forget_history_with_cli if pusher == "supabase-cli" else forget_history_locally)(url)


def test_the_repository_is_a_supabase_project_folder():
    folder = REPO / "supabase"
    assert (folder / "config.toml").is_file()
    assert (folder / "migrations").is_symlink() and os.readlink(folder / "migrations") == "../migrations"
    assert sorted(p.name for p in (folder / "migrations").glob("*.sql")) == ALL


def test_push_twice_reapply_all_and_lorafiles_agrees(pusher, supabase_project):
    url = supabase_project.url
    out = push(pusher, url)
    for name in ALL:
        assert name in out
    assert [h[0] for h in history(url)] == [m.version for m in discover()]
    first = snapshot(url)
    with_data = snapshot_data(url)
    assert with_data["batch_ids"] == 0  # migrations change no data (the back-fill is separate)

    # a second push finds nothing to do and changes nothing
    assert "up to date" in push(pusher, url)
    assert snapshot(url) == first

    # every migration applied again (history forgotten, as after `supabase migration repair
    # --status reverted`): no effect at all, data untouched (no row updated)
    forget(pusher, url)
    out = push(pusher, url)
    assert all(name in out for name in ALL)
    assert snapshot(url) == first
    assert snapshot_data(url) == with_data

    # `lorafiles migrate` sees the same history: nothing to apply, the same files applied
    assert apply_migrations(url) == []
    assert applied_migrations(url) == ALL
    # ... and the CLI recorded each file split into statements exactly as the runner splits it
    for (version, label, statements), mig in zip(history(url), discover()):
        assert (version, label, statements) == (mig.version, mig.label, list(mig.statements))

    # the back-fill then touches each conversation of a batch once, and nothing on a re-run
    assert backfill_batch_ids(url, batch_size=8) == {"rows": 30, "batches": 4, "done": True}
    assert backfill_batch_ids(url) == {"rows": 0, "batches": 0, "done": True}


def test_lorafiles_migrate_first_then_the_cli_finds_nothing(pusher, supabase_project):
    url = supabase_project.url
    assert apply_migrations(url) == ALL
    first = snapshot(url)
    assert "up to date" in push(pusher, url)
    assert snapshot(url) == first
    assert [h[:2] for h in history(url)] == [(m.version, m.label) for m in discover()]


def test_lorafiles_migrate_joins_a_history_with_the_apps_own_versions(supabase_project):
    """The project's history already holds the app's migrations (pushed from its own repository):
    lorafiles applies its files and leaves those versions alone."""
    import psycopg

    url = supabase_project.url
    push_locally(url)
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM supabase_migrations.schema_migrations WHERE version > '20260101000100'")
        conn.execute("INSERT INTO supabase_migrations.schema_migrations (version, name, statements) VALUES "
                     "('20251120000000', 'add_enrichment_status', ARRAY['select 1']), "
                     "('20261130000000', 'app_later_change', ARRAY['select 2'])")
    assert apply_migrations(url) == ALL[1:]  # re-applied with no effect, recorded
    assert applied_migrations(url) == sorted(["20251120000000_add_enrichment_status.sql",
                                              "20261130000000_app_later_change.sql", *ALL])


def test_database_tests_pass_against_the_pushed_project(supabase_project, pg_admin_url):
    """The suite's database tests (tests/db), run as the project's migration role (not a superuser)
    on copies of a project pushed by the Supabase CLI (or the Python push without it)."""
    url = supabase_project.url
    if supabase_cli():
        push_with_cli(url)
    else:
        push_locally(url)
    backfill_batch_ids(url)
    env = {**os.environ, "DATABASE_URL": role_url(pg_admin_url, "postgres", supabase_project.role),
           "LORAFILES_TEST_TEMPLATE_DB": supabase_project.name}
    # (the embedded-server tests start servers of their own: not about this database)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/db",
                             "--deselect", "tests/db/test_migrations.py::test_database_url_embedded_under_home",
                             "--deselect", "tests/db/test_embedded_lifecycle.py"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout.splitlines()[-1]


def snapshot_data(url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("""SELECT count(*) FILTER (WHERE batch_id IS NOT NULL) AS batch_ids,
                                     count(DISTINCT updated_at) AS stamps, count(*) AS n FROM conversations""").fetchone()
    return {"batch_ids": row[0], "stamps": row[1], "rows": row[2]}
