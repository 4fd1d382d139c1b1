"""Suite-wide fixtures.

PostgreSQL: ONE server per test session (the embedded PostgreSQL 18 wheel in a temporary
data dir, or the server of ``$DATABASE_URL`` when set). Migrations are applied once into a
template database; each test that asks for ``db_url`` / ``db`` gets a fresh copy
(``CREATE DATABASE ... TEMPLATE``), dropped afterwards.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import shared_fixtures as shared
from lorafiles.db.connect import Database, embedded_server, url_with_database
from lorafiles.db.migrate import apply_migrations

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_DB = "lorafiles_template"


@pytest.fixture(scope="session", autouse=True)
def _cold_models_under_mutation() -> None:
    """Under mutmut, each mutant's tests run in a process forked from one that already ran them:
    the target models it loaded (`lorafiles.tokens._cache`, with their render and piece caches)
    would be inherited, so a mutant in a loader or behind a cache would never run. Start every
    mutant's session from cold models. (A normal run is untouched.)"""
    if os.environ.get("MUTANT_UNDER_TEST"):
        import lorafiles.tokens

        lorafiles.tokens._cache.clear()


def _admin(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, prepare_threshold=None)


def _create_database(admin_url: str, name: str, template: str | None) -> None:
    with _admin(admin_url) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template))
        conn.execute(query)


def _drop_database(admin_url: str, name: str) -> None:
    """Drop, ending whatever our own connections left open (FORCE). A role that is not a
    superuser (the Supabase migration role of tests/supabase) may not end an autovacuum worker
    that happens to be in the database: then a plain DROP, which cancels autovacuum itself."""
    with _admin(admin_url) as conn:
        try:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        except psycopg.errors.InsufficientPrivilege:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """URL of a maintenance database on the session's PostgreSQL server (can CREATE DATABASE)."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external
        return
    base = Path(tempfile.mkdtemp(prefix="lorafiles-pg-"))
    try:
        with embedded_server(base / "pgdata", cleanup_mode="delete") as url:
            # Throw-away cluster: durability off makes CREATE DATABASE and DDL much faster.
            with _admin(url) as conn:
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
                conn.execute("SELECT pg_reload_conf()")
            yield url
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    """Name of the template database holding all migrations (applied once per session).

    ``LORAFILES_TEST_TEMPLATE_DB`` names an existing, already migrated database to copy instead
    (tests/supabase runs the database tests against a project pushed by the Supabase CLI)."""
    given = os.environ.get("LORAFILES_TEST_TEMPLATE_DB")
    if given:
        yield given
        return
    # A shared external server may serve several sessions at once: give each its own template.
    name = TEMPLATE_DB if not os.environ.get("DATABASE_URL") else f"{TEMPLATE_DB}_{uuid.uuid4().hex[:8]}"
    _drop_database(pg_admin_url, name)
    _create_database(pg_admin_url, name, None)
    apply_migrations(url_with_database(pg_admin_url, name))
    yield name
    _drop_database(pg_admin_url, name)


@pytest.fixture
def make_database(pg_admin_url: str) -> Iterator[Callable[..., str]]:
    """Factory: ``make_database(template=None)`` creates a new database (empty, or a copy of
    ``template``) and returns its URL; all are dropped after the test."""
    created: list[str] = []

    def factory(template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex}"
        _create_database(pg_admin_url, name, template)
        created.append(name)
        return url_with_database(pg_admin_url, name)

    yield factory
    for name in created:
        _drop_database(pg_admin_url, name)


@pytest.fixture
def db_url(make_database: Callable[..., str], pg_template: str) -> str:
    """A fresh, fully migrated database for this test."""
    return make_database(pg_template)


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A migrated database shared by one test module (for expensive setups)."""
    name = f"m_{uuid.uuid4().hex}"
    _create_database(pg_admin_url, name, pg_template)
    yield url_with_database(pg_admin_url, name)
    _drop_database(pg_admin_url, name)


@pytest.fixture
def empty_db_url(make_database: Callable[..., str], pg_template: str) -> str:
    """A fresh database with no migrations (cluster-wide roles already exist, as on Supabase)."""
    return make_database("template0")


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url)
    yield database
    database.close()


@pytest.fixture
def shared_fixtures() -> Path:
    """../shared/fixtures next to the repository (or $LORAFILES_FIXTURES); the test is skipped if absent."""
    if not shared.available():
        pytest.skip(shared.REASON)
    return shared.ROOT


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say plainly how much of the suite did not run for want of the shared fixtures."""
    skipped = terminalreporter.stats.get("skipped", [])
    n = sum(1 for r in skipped if shared.REASON in str(getattr(r, "longrepr", "")))
    if n:
        terminalreporter.write_line(f"{n} tests skipped: {shared.REASON} (fixture-parametrised tests count once each)",
                                    yellow=True, bold=True)

