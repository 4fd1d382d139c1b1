"""Supabase Storage adapter over supabase-py (storage3 REST client)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage.content_types import resolve_content_type

if TYPE_CHECKING:
    from storage3._sync.file_api import SyncBucketProxy

_LIST_PAGE = 100
"""Entries per ``list`` request (the Storage API's default limit)."""


class SupabaseObjectStore:
    """``ObjectStore`` on Supabase Storage's REST API.

    Buckets must already exist. Uploads are upserts. Caveats of storage3:

    * ``open_stream`` downloads the whole object (storage3 has no streaming download)
      and yields an in-memory stream; use the S3 adapter against Supabase's S3
      endpoint for large reads.
    * ``put_file`` hands the path to storage3, which sends the open file as a
      multipart body (httpx reads it in chunks, so it is not loaded whole).
    * storage3 URL-unquotes keys and rejects ``.``/``..`` segments (``ValueError``),
      so keys must not contain ``%``.
    * The folder-based list endpoint is not recursive: ``list`` walks sub-folders.
    """

    def __init__(self, url: str, key: str, client: Any | None = None) -> None:
        if client is None:
            from supabase import create_client

            client = create_client(url, key)
        self.client = client

    def _api(self, bucket: str) -> SyncBucketProxy:
        return self.client.storage.from_(bucket)

    def get(self, bucket: str, key: str) -> bytes:
        with _errors("reading", bucket, key):
            return self._api(bucket).download(key)

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str | None = None
    ) -> None:
        self._upload(bucket, key, data, content_type)

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        content_type: str | None = None,
    ) -> None:
        self._upload(bucket, key, Path(path), content_type)

    def _upload(self, bucket: str, key: str, body: bytes | Path, content_type: str | None) -> None:
        content_type = resolve_content_type(key, content_type)
        with _errors("writing", bucket, key):
            self._api(bucket).upload(key, body, {"content-type": content_type, "upsert": "true"})

    @contextmanager
    def open_stream(self, bucket: str, key: str) -> Iterator[io.BytesIO]:
        with io.BytesIO(self.get(bucket, key)) as stream:
            yield stream

    def exists(self, bucket: str, key: str) -> bool:
        with _errors("checking", bucket, key):
            return self._api(bucket).exists(key)

    def delete(self, bucket: str, key: str) -> None:
        with _errors("deleting", bucket, key):
            self._api(bucket).remove([key])

    def list(self, bucket: str, prefix: str) -> list[str]:
        folder, _, stem = prefix.rpartition("/")
        keys: list[str] = []
        with _errors("listing", bucket, prefix):
            self._walk(self._api(bucket), folder, stem, keys)
        return sorted(keys)

    def _walk(self, api: SyncBucketProxy, folder: str, stem: str, out: list[str]) -> None:
        """Collect keys in ``folder`` whose name starts with ``stem``, recursing into folders."""
        offset = 0
        while True:
            page = api.list(folder, {"limit": _LIST_PAGE, "offset": offset, "search": stem})
            for entry in page:
                name = entry["name"]
                if not name.startswith(stem):  # the server's search is case-insensitive
                    continue
                path = f"{folder}/{name}" if folder else name
                if entry.get("id") is None:  # folders have no id
                    self._walk(api, path, "", out)
                else:
                    out.append(path)
            if len(page) < _LIST_PAGE:
                return
            offset += _LIST_PAGE

    def signed_url(
        self, bucket: str, key: str, expires_in: int, download_name: str | None = None
    ) -> str:
        options = {"download": download_name} if download_name else None
        with _errors("signing", bucket, key):
            url = self._api(bucket).create_signed_url(key, expires_in, options)["signedURL"]
        if not url:
            raise StorageError(f"signing {bucket}/{key} failed: no signedURL in the response")
        return url


@contextmanager
def _errors(action: str, bucket: str, key: str) -> Iterator[None]:
    """Translate storage3/httpx failures into ``ObjectNotFound`` / ``StorageError``.

    The Storage API answers a missing object with HTTP 400 and a body whose
    ``statusCode`` is ``"404"``; storage3 puts that body value in ``exc.status``.
    A missing *bucket* is reported the same way and stays a ``StorageError``.
    """
    from httpx import HTTPError
    from storage3.exceptions import StorageApiError

    try:
        yield
    except StorageApiError as exc:
        if str(exc.status) == "404" and "bucket" not in f"{exc.code} {exc.message}".lower():
            raise ObjectNotFound(bucket, key) from exc
        raise StorageError(f"{action} {bucket}/{key} failed: {exc}") from exc
    except HTTPError as exc:
        raise StorageError(f"{action} {bucket}/{key} failed: {exc!r}") from exc
