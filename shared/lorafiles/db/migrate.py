"""Migration runner: applies ``migrations/*.sql`` in name order, each exactly once.

Each file runs in its own transaction together with its row in
``lorafiles_schema_migrations``. Every transaction first takes
``pg_advisory_xact_lock`` (transaction-scoped, so it also works through Supabase's
transaction pooler), so concurrent runners serialize and never apply a file twice.
A file whose content changed after it was applied is refused (checksum mismatch).
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .connect import connect

__all__ = [
    "MigrationError",
    "Migration",
    "apply_migrations",
    "applied_migrations",
    "default_migrations_dir",
    "discover",
]

MIGRATIONS_TABLE = "lorafiles_schema_migrations"
# Fixed key for pg_advisory_xact_lock (the bigint of "lorafiles" in ASCII, truncated).
LOCK_KEY = 0x6C6F726166696C65

_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<label>[A-Za-z0-9_.-]+)\.sql$")

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS public.{MIGRATIONS_TABLE} (
  version    text PRIMARY KEY,
  name       text NOT NULL,
  checksum   text NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """A migration cannot be applied (bad file name, duplicate version, changed checksum,
    or the SQL failed). The message names the file."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str  # file name, e.g. "20260101000100_baseline_existing.sql"
    path: Path
    sql: str
    checksum: str  # sha256 hex of the file (CRLF normalized to LF)


def default_migrations_dir() -> Path:
    """``$LORAFILES_MIGRATIONS_DIR``, else ``<repo>/migrations``."""
    env = os.environ.get("LORAFILES_MIGRATIONS_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[3] / "migrations"


def discover(migrations_dir: Path | None = None, upto: str | None = None) -> list[Migration]:
    """The migration files in name order. ``upto`` (a file name or version prefix) keeps
    only the files up to and including the first one matching it."""
    directory = Path(migrations_dir) if migrations_dir is not None else default_migrations_dir()
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    migrations: list[Migration] = []
    seen: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql"), key=lambda p: p.name):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration file names must look like <digits>_<name>.sql")
        version = m["version"]
        if version in seen:
            raise MigrationError(f"{path.name}: version {version} is also used by {seen[version]}")
        seen[version] = path.name
        data = path.read_bytes().replace(b"\r\n", b"\n")
        migrations.append(Migration(version=version, name=path.name, path=path,
                                    sql=data.decode("utf-8"),
                                    checksum=hashlib.sha256(data).hexdigest()))
    if upto is not None:
        index = next((i for i, mig in enumerate(migrations)
                      if mig.name == upto or mig.version == upto or mig.name.startswith(upto)), None)
        if index is None:
            raise MigrationError(f"no migration matches upto={upto!r} in {directory}")
        migrations = migrations[: index + 1]
    return migrations


@contextmanager
def _connection(url_or_conn: str | psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    if isinstance(url_or_conn, psycopg.Connection):
        conn = url_or_conn
        if conn.info.transaction_status != TransactionStatus.IDLE:
            raise MigrationError("apply_migrations needs an idle connection (no transaction in progress)")
        yield conn
        return
    with connect(url_or_conn) as conn:
        yield conn


def _locked(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    conn.execute(_CREATE_TABLE)


def _applied(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    cur = conn.execute(f"SELECT version, name, checksum, applied_at FROM public.{MIGRATIONS_TABLE}")
    rows = cur.fetchall()
    cols = [d.name for d in cur.description or []]
    out = {}
    for row in rows:
        rec = row if isinstance(row, dict) else dict(zip(cols, row))
        out[rec["version"]] = rec
    return out


def _check_checksums(migrations: list[Migration], applied: dict[str, dict[str, Any]]) -> None:
    for mig in migrations:
        rec = applied.get(mig.version)
        if rec is not None and rec["checksum"] != mig.checksum:
            raise MigrationError(
                f"migration {mig.name} was changed after it was applied "
                f"(applied as {rec['name']} with checksum {rec['checksum'][:12]}..., "
                f"file now {mig.checksum[:12]}...). Never edit an applied migration: add a new one.")


def applied_migrations(url_or_conn: str | psycopg.Connection[Any]) -> list[str]:
    """Names of the applied migrations, in version order (empty if none)."""
    with _connection(url_or_conn) as conn:
        with conn.transaction():
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok",
                                  (f"public.{MIGRATIONS_TABLE}",)).fetchone()
            ok = exists["ok"] if isinstance(exists, dict) else exists[0]
            if not ok:
                return []
            applied = _applied(conn)
    return [applied[v]["name"] for v in sorted(applied)]


def apply_migrations(url_or_conn: str | psycopg.Connection[Any], migrations_dir: Path | None = None,
                     *, upto: str | None = None) -> list[str]:
    """Apply the pending migrations; return the names of the files applied (in order).

    ``url_or_conn``: a database URL or an idle psycopg connection (its transactions are
    committed). ``migrations_dir`` defaults to :func:`default_migrations_dir`. ``upto``
    stops after the named file (name or version prefix), e.g. to seed data between
    migrations in tests.
    """
    migrations = discover(migrations_dir, upto)
    done: list[str] = []
    with _connection(url_or_conn) as conn:
        # Refuse before changing anything if an applied file was edited.
        with conn.transaction():
            _locked(conn)
            _check_checksums(migrations, _applied(conn))
        for mig in migrations:
            with conn.transaction():
                _locked(conn)
                applied = _applied(conn)
                if mig.version in applied:
                    _check_checksums([mig], applied)
                    continue
                try:
                    conn.execute(mig.sql)  # no parameters: simple protocol, many statements
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {mig.name} failed: {exc}") from exc
                conn.execute(
                    f"INSERT INTO public.{MIGRATIONS_TABLE} (version, name, checksum, applied_at)"
                    " VALUES (%s, %s, %s, now())",
                    (mig.version, mig.name, mig.checksum))
            done.append(mig.name)
    return done
