"""HMAC-SHA256 signed download URLs of the local server (what presigned S3 / Supabase URLs are in
production). A URL is `<base>/downloads/<payload>.<signature>`: payload = base64url JSON of
bucket, key, expiry (unix seconds) and download name; signature = base64url HMAC-SHA256 of the
payload. Tampering with any part, or using it after the expiry, is refused (403), and a link
can only ever name a training-file artifact: its bucket and key are checked against the one
artifact key form (no `..`, absolute paths, NUL or other objects such as fragments)."""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import orjson

from .errors import DownloadExpired, DownloadInvalid

PREFIX = "/downloads/"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SignedObject:
    bucket: str
    key: str
    expires_at: int
    download_name: str | None


class UrlSigner:
    """`LocalObjectStore(url_signer=...)` callable: (bucket, key, expires_in, download_name) -> url."""

    def __init__(self, secret: bytes, base_url: str, clock: Callable[[], float] = time.time) -> None:
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 bytes")
        self._secret, self.base_url, self._clock = secret, base_url.rstrip("/"), clock

    def __call__(self, bucket: str, key: str, expires_in: int, download_name: str | None = None) -> str:
        if not _grantable(bucket, key):
            raise ValueError(f"only training-file artifacts can be signed, not {bucket}/{key!r}")
        payload = _b64(orjson.dumps({"b": bucket, "k": key, "e": int(self._clock()) + int(expires_in),
                                     "n": download_name}))
        return f"{self.base_url}{PREFIX}{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> SignedObject:
        """The object a token grants; DownloadInvalid (tampered) or DownloadExpired, both 403."""
        payload, _, signature = token.partition(".")
        if not payload or not signature or not hmac.compare_digest(signature, self._sign(payload)):
            raise DownloadInvalid("this download link is not valid (bad signature)")
        try:
            data = orjson.loads(_unb64(payload))
            obj = SignedObject(data["b"], data["k"], int(data["e"]), data.get("n"))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
            raise DownloadInvalid("this download link is not valid") from None
        if not _grantable(obj.bucket, obj.key) or not isinstance(obj.download_name, (str, type(None))):
            # even a correctly signed link (a leaked or misused secret) reaches nothing but an artifact
            raise DownloadInvalid("this download link does not name a training file")
        if obj.expires_at <= self._clock():
            raise DownloadExpired("this download link has expired; ask the API for a new one")
        return obj


def _grantable(bucket: object, key: object) -> bool:
    """A link can only name a training-file artifact (`training-files/<owner>/<file>/v<N>/<artifact>`, one of the ARTIFACTS)."""
    from ..usecases.common import OUTPUT_BUCKET, is_artifact_key

    return bucket == OUTPUT_BUCKET and is_artifact_key(key)


def signing_secret(home: Path) -> bytes:
    """`LORAFILES_LOCAL_SIGNING_SECRET`, else a random secret kept in `<LORAFILES_HOME>/local-signing.key`."""
    if os.environ.get("LORAFILES_LOCAL_SIGNING_SECRET"):
        return os.environ["LORAFILES_LOCAL_SIGNING_SECRET"].encode()
    return _home_secret(home / "local-signing.key")


def _home_secret(path: Path) -> bytes:
    if path.is_file():
        return path.read_text().strip().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # created concurrently
        return path.read_text().strip().encode()
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value.encode()


def dev_jwt_secret(home: Path) -> str:
    """The local server's default HS256 secret: `<LORAFILES_HOME>/dev-jwt-secret` (created once)."""
    return _home_secret(home / "dev-jwt-secret").decode()
