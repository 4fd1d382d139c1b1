"""Filesystem adapter: objects live at ``root/<bucket>/<key>``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage.content_types import resolve_content_type

UrlSigner = Callable[[str, str, int, str | None], str]
"""``(bucket, key, expires_in, download_name) -> url``."""

_TMP_PREFIX = ".lorafiles-tmp-"  # followed by the writer's pid: ".lorafiles-tmp-<pid>-<random>"
_TMP_PID = re.compile(rf"^{re.escape(_TMP_PREFIX)}(\d+)-")
_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class LocalObjectStore:
    """``ObjectStore`` on a local directory (dev, tests, single-host demo).

    Writes are atomic: content goes to a temp file in the target directory and is
    moved into place with ``os.replace``, so readers see the old or the new object,
    never a partial one.

    ``signed_url`` delegates to ``url_signer`` when given (the HTTP server injects one
    producing HMAC-signed ``http`` URLs it serves itself); without one it returns the
    object's ``file://`` URL, which neither expires nor carries the download name.
    """

    def __init__(self, root: str | os.PathLike[str], url_signer: UrlSigner | None = None) -> None:
        self.root = Path(root).resolve()
        self._url_signer = url_signer

    def _path(self, bucket: str, key: str) -> Path:
        _check_name("bucket", bucket, allow_slash=False)
        _check_name("key", key, allow_slash=True)
        return self.root / bucket / key

    def get(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        try:
            return path.read_bytes()
        except _MISSING as exc:
            raise ObjectNotFound(bucket, key) from exc
        except OSError as exc:
            raise StorageError(f"reading {bucket}/{key} failed: {exc}") from exc

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str | None = None
    ) -> None:
        resolve_content_type(key, content_type)  # not stored locally, but checked like the others
        with self._atomic_writer(bucket, key, durable=False) as out:  # fragments: see sync()
            out.write(data)

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        content_type: str | None = None,
    ) -> None:
        resolve_content_type(key, content_type)
        with open(path, "rb") as src, self._atomic_writer(bucket, key, durable=True) as out:
            shutil.copyfileobj(src, out)

    @contextmanager
    def open_stream(self, bucket: str, key: str) -> Iterator[BinaryIO]:
        path = self._path(bucket, key)
        try:
            stream = path.open("rb")
        except _MISSING as exc:
            raise ObjectNotFound(bucket, key) from exc
        except OSError as exc:
            raise StorageError(f"opening {bucket}/{key} failed: {exc}") from exc
        with stream:
            yield stream

    def exists(self, bucket: str, key: str) -> bool:
        return self._path(bucket, key).is_file()

    def delete(self, bucket: str, key: str) -> None:
        try:
            self._path(bucket, key).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"deleting {bucket}/{key} failed: {exc}") from exc

    def list(self, bucket: str, prefix: str) -> list[str]:
        """Keys under ``prefix``; in-flight temp files of concurrent writes are skipped."""
        _check_name("bucket", bucket, allow_slash=False)
        base = self.root / bucket
        # Only walk the deepest directory the prefix pins down.
        folder = prefix.rpartition("/")[0]
        if folder:
            _check_name("prefix", folder, allow_slash=True)
        start = base / folder if folder else base
        keys = []
        for dirpath, _dirs, files in os.walk(start):
            rel = Path(dirpath).relative_to(base).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix) and not name.startswith(_TMP_PREFIX):
                    keys.append(key)
        return sorted(keys)

    def signed_url(
        self, bucket: str, key: str, expires_in: int, download_name: str | None = None
    ) -> str:
        path = self._path(bucket, key)
        if self._url_signer is not None:
            return self._url_signer(bucket, key, expires_in, download_name)
        return path.as_uri()

    def sweep_temp(self, max_age: float = 3600.0) -> list[str]:
        """Remove temp files a crashed writer left: its process is gone, or the file is older than
        `max_age` seconds (no write takes that long). Returns the removed paths."""
        from lorafiles.cleanup import pid_alive

        removed: list[str] = []
        now = time.time()
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if not name.startswith(_TMP_PREFIX):
                    continue
                path = Path(dirpath) / name
                m = _TMP_PID.match(name)
                try:
                    old = now - path.stat().st_mtime > max_age
                except OSError:
                    continue
                if old or (m is not None and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1)))):
                    path.unlink(missing_ok=True)
                    removed.append(str(path))
        return removed

    def sync(self) -> None:
        """Make every object written so far durable: one syncfs(2) of the store's file system
        (os.sync() where syncfs is unavailable). `put` does not fsync each object (a fragment is
        small and there are many); `PipelineSteps.generate` calls this once before it points the
        database at a new version, so what a published version and its members' fragments rely
        on is on disk before the database says so. `put_file` (the published artifacts) fsyncs
        the file and its directory itself."""
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _syncfs is None or _syncfs(fd) != 0:
                os.sync()
        finally:
            os.close(fd)

    @contextmanager
    def _atomic_writer(self, bucket: str, key: str, *, durable: bool) -> Iterator[BinaryIO]:
        """Yield a temp file next to the target; move it into place on success (fsynced, with
        its directory, when `durable`)."""
        target = self._path(bucket, key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=target.parent)
        except OSError as exc:
            raise StorageError(f"writing {bucket}/{key} failed: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                if durable:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, target)
            if durable:
                _fsync_dir(target.parent)
        except BaseException as exc:
            Path(tmp).unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageError(f"writing {bucket}/{key} failed: {exc}") from exc
            raise


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.syncfs
    except (OSError, AttributeError):
        return None


_syncfs = _load_syncfs() if os.name == "posix" else None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_name(kind: str, name: str, *, allow_slash: bool) -> None:
    """Reject empty, absolute and ``.``/``..``-segment names (no escaping the root)."""
    parts = name.split("/")
    if (
        not name
        or os.path.isabs(name)
        or "\\" in name
        or (not allow_slash and len(parts) > 1)
        or any(part in ("", ".", "..") for part in parts)
    ):
        raise ValueError(
            f"invalid object {kind} {name!r}: must be relative, without '.' or '..' segments"
        )
