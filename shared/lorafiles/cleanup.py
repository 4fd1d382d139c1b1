"""What a crash leaves behind, and how it is found again (issue 9, item 6).

* Scratch directories: `generate` assembles artifacts in `lorafiles-scratch-<pid>-*` under the
  temp dir. A process killed meanwhile (a SIGKILLed CLI, a Lambda timeout, which restarts the
  runtime but keeps /tmp) leaves one. A directory is left over when its process is gone, or when
  it is this process's but not in use (a Lambda runtime restarted with the same pid).
* The local store's temp files (`.lorafiles-tmp-<pid>-*`, storage/local.py), likewise.
* Fragments written by a job but never staged (a crash between the two), and the artifacts of a
  version that was never published: found by `leftover_objects` when the job is compensated.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCRATCH_PREFIX = "lorafiles-scratch-"
_SCRATCH_RE = re.compile(rf"^{SCRATCH_PREFIX}(\d+)-")
_FRAGMENT_RE = re.compile(r"^[0-9a-f]{20}\.(?:json|jsonl|exports)$")  # <sha256[:20]>.json|.jsonl|.exports, as staging names them
_live: set[str] = set()
_lock = threading.Lock()


def pid_alive(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - no such process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


@contextmanager
def scratch_dir(base: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """A temporary directory named after this process, removed on exit (and by the sweep if the
    process dies first). Sweeps first: in Lambda only the function's own container sees its /tmp,
    and a timed-out invocation leaves its directory there for the next one to remove."""
    sweep_scratch_dirs(base)
    with _lock:
        path = tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base)
        _live.add(path)
    try:
        yield path
    finally:
        with _lock:
            _live.discard(path)
        shutil.rmtree(path, ignore_errors=True)


def sweep_scratch_dirs(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove scratch directories of processes that are gone; returns what was removed."""
    root = Path(base or tempfile.gettempdir())
    removed: list[str] = []
    try:
        entries = list(root.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = _SCRATCH_RE.match(entry.name)
        if not m or not entry.is_dir():
            continue
        pid = int(m.group(1))
        with _lock:
            stale = str(entry) not in _live if pid == os.getpid() else not pid_alive(pid)
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(str(entry))
    return removed


def leftover_objects(store: Any, bucket: str, repo: Any, job: dict[str, Any], file_row: dict[str, Any] | None,
                     *, file_deleted: bool) -> list[str]:
    """Objects of a job being compensated that nothing will ever reference: under its file,
    everything when the file is deleted with it; otherwise the fragments of the job's
    conversations that no row names (written, then the job crashed before staging them) and
    the directory of the version it would have published."""
    if not job.get("file_id"):
        return []
    prefix = f"{job['owner_id']}/{job['file_id']}/"
    if file_deleted:
        return store.list(bucket, prefix)
    if file_row is None:
        return []
    ids = set(job.get("requested_ids") or [])
    fragments = f"{prefix}fragments/"
    keep = repo.referenced_object_keys(str(job["file_id"]), prefix, str(job["id"]))
    out = []
    for key in store.list(bucket, fragments):
        cid, _, name = key[len(fragments):].partition("/")
        if cid in ids and _FRAGMENT_RE.match(name) and key not in keep:
            out.append(key)
    base = job.get("base_version")
    if base is not None and file_row["current_version"] <= base:
        out += [k for k in store.list(bucket, f"{prefix}v{base + 1}/") if k not in keep]
    return out
