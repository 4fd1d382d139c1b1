"""S3 adapter (AWS S3, moto, or Supabase Storage's S3-compatible endpoint)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lorafiles.domain.rules import content_disposition
from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage.content_types import resolve_content_type

if TYPE_CHECKING:
    from botocore.response import StreamingBody

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})


class S3ObjectStore:
    """``ObjectStore`` on S3 through boto3.

    ``bucket_map`` maps logical bucket names (``conversation-files``, ``training-files``)
    to real bucket names; unmapped names are used as-is. Pass a ready ``client`` or let
    the store build one: with ``endpoint_url`` (e.g. Supabase's
    ``https://<ref>.supabase.co/storage/v1/s3``) it uses path-style addressing and SigV4,
    which that endpoint requires.
    """

    def __init__(
        self,
        bucket_map: dict[str, str] | None = None,
        client: Any | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        addressing_style: str | None = None,
    ) -> None:
        self._bucket_map = dict(bucket_map or {})
        if client is None:
            import boto3
            from botocore.config import Config

            style = addressing_style or ("path" if endpoint_url else "auto")
            client = boto3.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=Config(signature_version="s3v4", s3={"addressing_style": style}),
            )
        self.client = client

    def _bucket(self, bucket: str) -> str:
        return self._bucket_map.get(bucket, bucket)

    def get(self, bucket: str, key: str) -> bytes:
        with self.open_stream(bucket, key) as body, _errors("reading", bucket, key):
            return body.read()

    def put(
        self, bucket: str, key: str, data: bytes, content_type: str | None = None
    ) -> None:
        with _errors("writing", bucket, key):
            self.client.put_object(
                Bucket=self._bucket(bucket), Key=key, Body=data,
                ContentType=resolve_content_type(key, content_type),
            )

    def put_file(
        self,
        bucket: str,
        key: str,
        path: str | os.PathLike[str],
        content_type: str | None = None,
    ) -> None:
        """Streamed upload; multipart above boto3's threshold (8 MB by default)."""
        with _errors("uploading", bucket, key):
            self.client.upload_file(
                os.fspath(path), self._bucket(bucket), key, ExtraArgs={"ContentType": resolve_content_type(key, content_type)}
            )

    @contextmanager
    def open_stream(self, bucket: str, key: str) -> Iterator[StreamingBody]:
        with _errors("reading", bucket, key):
            body = self.client.get_object(Bucket=self._bucket(bucket), Key=key)["Body"]
        with body:
            yield body

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with _errors("checking", bucket, key):
                self.client.head_object(Bucket=self._bucket(bucket), Key=key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, bucket: str, key: str) -> None:
        with _errors("deleting", bucket, key):
            self.client.delete_object(Bucket=self._bucket(bucket), Key=key)

    def list(self, bucket: str, prefix: str) -> list[str]:
        keys: list[str] = []
        with _errors("listing", bucket, prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket(bucket), Prefix=prefix
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", ()))
        return sorted(keys)

    def signed_url(
        self, bucket: str, key: str, expires_in: int, download_name: str | None = None
    ) -> str:
        params = {"Bucket": self._bucket(bucket), "Key": key}
        if download_name:
            params["ResponseContentDisposition"] = content_disposition(download_name)
        with _errors("signing", bucket, key):
            return self.client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires_in
            )


@contextmanager
def _errors(action: str, bucket: str, key: str) -> Iterator[None]:
    """Translate botocore/boto3 failures into ``ObjectNotFound`` / ``StorageError``."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in _NOT_FOUND_CODES:
            raise ObjectNotFound(bucket, key) from exc
        raise StorageError(f"{action} {bucket}/{key} failed: {exc}") from exc
    except (BotoCoreError, Boto3Error) as exc:
        raise StorageError(f"{action} {bucket}/{key} failed: {exc}") from exc
