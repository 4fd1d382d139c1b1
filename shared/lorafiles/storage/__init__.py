"""Storage adapters for the ``ObjectStore`` port, a factory and a bounded parallel reader.

Importing this package is cheap: boto3 and supabase are imported only when an
adapter is constructed.
"""

from __future__ import annotations

from collections.abc import Iterable
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


def get_many(
    store: ObjectStore, bucket: str, keys: Iterable[str], max_workers: int = 8
) -> dict[str, bytes | Exception]:
    """Read ``keys`` with at most ``max_workers`` concurrent ``get`` calls.

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

    with ThreadPoolExecutor(max_workers=min(max_workers, len(unique))) as pool:
        return dict(zip(unique, pool.map(read, unique)))


def put_many(store: ObjectStore, bucket: str, objects: Mapping[str, bytes], max_workers: int = 8) -> None:
    """Write ``objects`` ({key: bytes}) with at most ``max_workers`` concurrent ``put`` calls;
    the first failure is raised once every write has finished."""
    if not objects:
        return
    with ThreadPoolExecutor(max_workers=min(max_workers, len(objects))) as pool:
        for future in [pool.submit(store.put, bucket, key, data) for key, data in objects.items()]:
            future.result()
