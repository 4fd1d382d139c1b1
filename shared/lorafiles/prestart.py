"""The `lorafiles` command's entry point: the embedded PostgreSQL starts while the command line loads.

Every command opens the database. With `$DATABASE_URL` unset that means starting the embedded
server (`pg_ctl -w start`, 0.3-0.5 s, a child process), and the command line's own imports take
about as long in this process. `main` starts the server in a background thread first, then
imports the command line; `lorafiles.db.connect.embedded_server` takes the started server over
(`take`) and stops it on exit as usual. A server that nothing took (a usage error, `--help`) is
stopped by `release`, which the command line calls before its fast exit. A failure here is
forgotten: `embedded_server` starts the server itself and reports what is wrong.

Only the standard library at import time: this module runs before anything else is loaded.
"""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

_NO_DATABASE = {"-h", "--help"}
_guard = threading.Lock()
_state: dict[str, Any] = {}  # thread, data_dir, server (once started), taken


def main() -> int:
    argv = sys.argv[1:]
    if argv and not _NO_DATABASE.intersection(argv):
        start()
    from .cli import main as cli_main

    try:
        return cli_main()
    finally:
        release()  # (cli_main's fast exit calls it too; a second call does nothing)


def start(data_dir: Path | None = None) -> None:
    """Start the embedded server of `data_dir` in a background thread (default: the one the
    command would open, `lorafiles.db.connect.embedded_data_dir`; none when `$DATABASE_URL` is set)."""
    with _guard:
        if "thread" in _state:
            return

        def run() -> None:
            try:
                from .db.connect import embedded_data_dir, open_embedded

                chosen = data_dir or embedded_data_dir()
                if chosen is None:
                    return
                where = Path(chosen).expanduser().resolve()
                _state["data_dir"] = where
                _state["server"] = open_embedded(where, cleanup_mode="stop")
            except Exception:  # noqa: BLE001 - embedded_server starts it again and says why
                _state.pop("server", None)

        _state["thread"] = thread = threading.Thread(target=run, name="lorafiles-prestart", daemon=True)
        thread.start()


def take(data_dir: Path) -> Any | None:
    """The server started for `data_dir`, once it is up (None: not started here, or it failed).
    The caller owns it from then on."""
    with _guard:
        thread = _state.get("thread")
    if thread is None:
        return None
    thread.join()
    with _guard:
        if _state.get("taken") or _state.get("data_dir") != data_dir or "server" not in _state:
            return None
        _state["taken"] = True
        return _state["server"]


def release() -> None:
    """Stop a started server that nothing took (this process's handle on it)."""
    with _guard:
        thread = _state.get("thread")
    if thread is None:
        return
    thread.join()
    with _guard:
        server = _state.get("server")
        if server is None or _state.get("taken"):
            return
        _state["taken"] = True
    server.cleanup()
