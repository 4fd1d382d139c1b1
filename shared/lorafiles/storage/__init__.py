"""Storage adapters for the ``ObjectStore`` port, a factory and a bounded parallel reader.

Importing this package is cheap: boto3 and supabase are imported only when an
adapter is constructed.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

from lorafiles.ports import ObjectStore
from lorafiles.storage.local import LocalObjectStore
from lorafiles.storage.s3 import S3ObjectStore
from lorafiles.storage.supabase import SupabaseObjectStore

__all__ = [
    "LocalObjectStore",
    "S3ObjectStore",
    "SupabaseObjectStore",
    "get_many",
    "make_store",
    "put_files",
    "put_many",
]


def make_store(kind: str, **opts: Any) -> ObjectStore:
    """Build an adapter by kind.

    * ``"local"``: ``root`` (and optional ``url_signer``)
    * ``"s3"``: ``endpoint_url``, ``region``, ``access_key``, ``secret_key``,
      ``bucket_map``, ``addressing_style`` (all optional; path-style when
      ``endpoint_url`` is given)
    * ``"supabase"``: ``url``, ``key``
    """
    match kind:
        case "local":
            return LocalObjectStore(**opts)
        case "s3":
            return S3ObjectStore(**opts)
        case "supabase":
            return SupabaseObjectStore(**opts)
    raise ValueError(f"unknown object store kind {kind!r} (expected local, s3 or supabase)")


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
POOL_THREADS = int(os.environ.get("LORAFILES_IO_THREADS", "64"))


def io_pool() -> ThreadPoolExecutor:
    """The process's one bounded pool for object I/O (built on first use, kept for the life of
    the process or Lambda container): no pool is created per call. Tasks on it never wait on
    other tasks of it, so sharing it cannot deadlock."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="lorafiles-io")
    return _POOL


def _forget_pool_in_child() -> None:
    """A forked child inherits the pool object but none of its threads (a fork copies only the
    calling thread): work submitted to it would wait forever. The child builds its own on first use."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def bounded_map(fn: Callable[[Any], Any], items: list[Any], max_workers: int) -> Iterator[Any]:
    """`fn` over `items` on the shared pool, results in order, at most `max_workers` in flight."""
    pool, pending = io_pool(), deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= max(1, max_workers):
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def get_many(
    store: ObjectStore, bucket: str, keys: Iterable[str], max_workers: int = 8
) -> dict[str, bytes | Exception]:
    """Read ``keys`` with at most ``max_workers`` concurrent ``get`` calls (on the shared pool).

    Returns ``{key: content}`` in input order (duplicates read once); a failed read
    maps its key to the exception instead of raising.
    """
    unique = list(dict.fromkeys(keys))
    if not unique:
        return {}

    def read(key: str) -> bytes | Exception:
        try:
            return store.get(bucket, key)
        except Exception as exc:  # captured per key by contract
            return exc

    return dict(zip(unique, bounded_map(read, unique, max_workers)))


def _all_then_first_failure(fn: Callable[[Any], None], items: list[Any], max_workers: int) -> None:
    """`fn` over `items` on the shared pool; the first failure is raised once every call has finished."""

    def run(item: Any) -> BaseException | None:
        try:
            fn(item)
        except Exception as exc:  # noqa: BLE001 - raised below, after the others finished
            return exc
        return None

    failures = [e for e in bounded_map(run, items, max_workers) if e is not None]
    if failures:
        raise failures[0]


def put_many(store: ObjectStore, bucket: str, objects: Mapping[str, bytes], max_workers: int = 8) -> None:
    """Write ``objects`` ({key: bytes}) with at most ``max_workers`` concurrent ``put`` calls;
    the first failure is raised once every write has finished."""
    if objects:
        _all_then_first_failure(lambda item: store.put(bucket, item[0], item[1]), list(objects.items()),
                                max_workers)


def put_files(store: ObjectStore, bucket: str, files: Iterable[tuple[str, Any, str | None]],
              max_workers: int = 8) -> None:
    """Upload ``files`` ((key, local path, content type) each) with at most ``max_workers``
    concurrent ``put_file`` calls; the first failure is raised once every upload has finished."""
    items = list(files)
    if items:
        _all_then_first_failure(lambda f: store.put_file(bucket, f[0], f[1], content_type=f[2]), items,
                                max_workers)
