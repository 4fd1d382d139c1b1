"""Migration runner: applies ``migrations/*.sql`` in name order, each exactly once, the way the
Supabase CLI's ``supabase db push`` does, and into the same history.

* History lives where the Supabase CLI keeps it: ``supabase_migrations.schema_migrations``
  (``version`` = the file's digits prefix, ``name`` = the rest without ``.sql``, ``statements``
  = the file split into statements as the CLI splits it). So ``lorafiles migrate`` and
  ``supabase db push`` agree on what is applied, whichever ran first. The schema is not exposed
  by PostgREST and grants nothing to ``anon``/``authenticated``.
* Each file runs statement by statement in one transaction together with its history row.
  Every transaction first takes ``pg_advisory_xact_lock`` (transaction-scoped, so it works
  through Supabase's transaction pooler): concurrent runners serialize and never apply a file
  twice.
* A file whose statements changed after it was applied is refused (whitespace is ignored; a
  history row without statements, e.g. from ``supabase migration repair``, is not checked).
* The history of older lorafiles versions (``public.lorafiles_schema_migrations``, readable by
  ``anon`` under Supabase's default grants) is moved into the CLI's table and dropped.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .connect import connect

__all__ = [
    "HISTORY_TABLE",
    "LEGACY_TABLE",
    "MigrationError",
    "Migration",
    "apply_migrations",
    "applied_migrations",
    "default_migrations_dir",
    "discover",
    "split_statements",
]

HISTORY_SCHEMA = "supabase_migrations"
HISTORY_TABLE = f"{HISTORY_SCHEMA}.schema_migrations"
LEGACY_TABLE = "public.lorafiles_schema_migrations"
# Fixed key for pg_advisory_xact_lock (the bigint of "lorafiles" in ASCII, truncated).
LOCK_KEY = 0x6C6F726166696C65

_NAME = re.compile(r"^(?P<version>[0-9]+)_(?P<label>[A-Za-z0-9_.-]+)\.sql$")


class MigrationError(RuntimeError):
    """A migration cannot be applied (bad file name, duplicate version, changed file, or the SQL
    failed). The message names the file."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str  # file name, e.g. "20260101000100_baseline_existing.sql"
    path: Path
    sql: str  # CRLF normalized to LF
    statements: tuple[str, ...] = field(repr=False)  # as `supabase db push` splits the file

    @property
    def label(self) -> str:
        """What the Supabase CLI stores in ``name``: the file name without version and ``.sql``."""
        return self.name[len(self.version) + 1: -len(".sql")]

    @property
    def checksum(self) -> str:
        return fingerprint(self.statements)


def fingerprint(statements: list[str] | tuple[str, ...]) -> str:
    """sha256 of the statements with all whitespace removed: the same for any split of the same
    text at the same semicolons, and for CRLF or re-indented copies."""
    return hashlib.sha256(re.sub(r"\s+", "", ";".join(statements)).encode()).hexdigest()


def split_statements(sql: str) -> list[str]:
    """Split SQL into statements at top-level ``;`` like the Supabase CLI: semicolons inside
    quotes, quoted identifiers, dollar-quoted bodies and comments do not split; each statement is
    trimmed and has no trailing ``;``; empty ones are dropped (a comment-only one is kept)."""
    out: list[str] = []
    start = i = 0
    n = len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        elif c == "'":
            escapes = i > 0 and sql[i - 1] in "eE" and (i < 2 or not (sql[i - 2].isalnum() or sql[i - 2] == "_"))
            i += 1
            while i < n:
                if escapes and sql[i] == "\\":
                    i += 2
                elif sql[i] == "'":
                    if sql.startswith("''", i):
                        i += 2
                    else:
                        i += 1
                        break
                else:
                    i += 1
        elif c == '"':
            j = i + 1
            while True:
                j = sql.find('"', j)
                if j < 0 or not sql.startswith('""', j):
                    break
                j += 2
            i = n if j < 0 else j + 1
        elif c == "$":
            m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$", sql[i:])
            if m and not (i > 0 and (sql[i - 1].isalnum() or sql[i - 1] == "_")):
                tag = m.group(0)
                j = sql.find(tag, i + len(tag))
                i = n if j < 0 else j + len(tag)
            else:
                i += 1
        elif c == ";":
            out.append(sql[start:i])
            i += 1
            start = i
        else:
            i += 1
    out.append(sql[start:])
    return [s.strip() for s in out if s.strip()]


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
        text = path.read_bytes().replace(b"\r\n", b"\n").decode("utf-8")
        migrations.append(Migration(version=version, name=path.name, path=path, sql=text,
                                    statements=tuple(split_statements(text))))
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


def _value(row: Any, key: str) -> Any:
    return row[key] if isinstance(row, dict) else row[0]


def _ensure_history(conn: psycopg.Connection[Any]) -> None:
    """The Supabase CLI's history table (created as the CLI creates it), and the legacy lorafiles
    history moved into it. Reads the catalog first: nothing is altered when all is in place."""
    exists = _value(conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (HISTORY_TABLE,)).fetchone(), "ok")
    if not exists:
        created_schema = not _value(conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s) AS ok", (HISTORY_SCHEMA,)).fetchone(), "ok")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {HISTORY_SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (version text NOT NULL PRIMARY KEY)")
        # Private: nothing for PUBLIC (anon, authenticated, ...), whatever default privileges say.
        conn.execute(f"REVOKE ALL ON TABLE {HISTORY_TABLE} FROM PUBLIC")
        for role in ("anon", "authenticated"):
            if _value(conn.execute("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s) AS ok",
                                   (role,)).fetchone(), "ok"):
                conn.execute(f"REVOKE ALL ON TABLE {HISTORY_TABLE} FROM {role}")
                if created_schema:
                    conn.execute(f"REVOKE ALL ON SCHEMA {HISTORY_SCHEMA} FROM {role}")
    columns = {_value(r, "attname") for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (HISTORY_TABLE,)).fetchall()}
    for column, sql_type in (("statements", "text[]"), ("name", "text")):
        if column not in columns:
            conn.execute(f"ALTER TABLE {HISTORY_TABLE} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    if _value(conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (LEGACY_TABLE,)).fetchone(), "ok"):
        # Older lorafiles history: versions and names move over; its checksums (of the old file
        # texts) do not, so those rows are not checked (like rows written by `migration repair`).
        conn.execute(f"""
            INSERT INTO {HISTORY_TABLE} (version, name)
            SELECT version, regexp_replace(regexp_replace(name, '\\.sql$', ''), '^[0-9]+_', '')
            FROM {LEGACY_TABLE}
            ON CONFLICT (version) DO NOTHING""")
        conn.execute(f"DROP TABLE {LEGACY_TABLE}")


def _locked(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
    _ensure_history(conn)


def _applied(conn: psycopg.Connection[Any]) -> dict[str, dict[str, Any]]:
    cur = conn.execute(f"SELECT version, name, statements FROM {HISTORY_TABLE}")
    cols = [d.name for d in cur.description or []]
    return {rec["version"]: rec for rec in (r if isinstance(r, dict) else dict(zip(cols, r)) for r in cur.fetchall())}


def _check_unchanged(migrations: list[Migration], applied: dict[str, dict[str, Any]]) -> None:
    for mig in migrations:
        rec = applied.get(mig.version)
        if rec is None or not rec["statements"]:
            continue
        recorded = fingerprint(rec["statements"])
        if recorded != mig.checksum:
            raise MigrationError(
                f"migration {mig.name} was changed after it was applied "
                f"(applied as {mig.version}_{rec['name']} with fingerprint {recorded[:12]}..., "
                f"file now {mig.checksum[:12]}...). Never edit an applied migration: add a new one.")


def applied_migrations(url_or_conn: str | psycopg.Connection[Any],
                       migrations_dir: Path | None = None) -> list[str]:
    """File names of the applied migrations, in version order (empty if none). A version applied
    without a local file (another project's history) is reported as ``<version>_<name>.sql``."""
    with _connection(url_or_conn) as conn:
        with conn.transaction():
            ok = _value(conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (HISTORY_TABLE,)).fetchone(), "ok")
            legacy = _value(conn.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (LEGACY_TABLE,)).fetchone(), "ok")
            applied = _applied(conn) if ok else {}
            if legacy:
                for r in conn.execute(f"SELECT version, name FROM {LEGACY_TABLE}").fetchall():
                    rec = r if isinstance(r, dict) else {"version": r[0], "name": r[1]}
                    applied.setdefault(rec["version"], {"name": Path(rec["name"]).stem.split("_", 1)[-1]})
    try:
        files = {m.version: m.name for m in discover(migrations_dir)}
    except MigrationError:
        files = {}
    return [files.get(v) or f"{v}_{applied[v]['name'] or 'unknown'}.sql" for v in sorted(applied)]


def apply_migrations(url_or_conn: str | psycopg.Connection[Any], migrations_dir: Path | None = None,
                     *, upto: str | None = None) -> list[str]:
    """Apply the pending migrations; return the names of the files applied (in order).

    ``url_or_conn``: a database URL or an idle psycopg connection (its transactions are
    committed). ``migrations_dir`` defaults to :func:`default_migrations_dir`. ``upto``
    stops after the named file (name or version prefix), e.g. to seed data between
    migrations in tests. Data back-fills are separate (:mod:`lorafiles.db.backfill`).
    """
    migrations = discover(migrations_dir, upto)
    done: list[str] = []
    with _connection(url_or_conn) as conn:
        # Refuse before changing anything if an applied file was edited.
        with conn.transaction():
            _locked(conn)
            _check_unchanged(migrations, _applied(conn))
        for mig in migrations:
            with conn.transaction():
                _locked(conn)
                applied = _applied(conn)
                if mig.version in applied:
                    _check_unchanged([mig], applied)
                    continue
                for number, statement in enumerate(mig.statements, 1):
                    try:
                        conn.execute(statement)  # type: ignore[arg-type] # no parameters: sent as is
                    except psycopg.Error as exc:
                        raise MigrationError(f"migration {mig.name} failed at statement {number}: {exc}") from exc
                conn.execute(f"INSERT INTO {HISTORY_TABLE} (version, name, statements) VALUES (%s, %s, %s)",
                             (mig.version, mig.label, list(mig.statements)))
            done.append(mig.name)
    return done
