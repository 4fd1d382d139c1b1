"""Storage fixtures: one store per adapter, plus a fake Supabase Storage HTTP server.

``store`` is parametrized over the three adapters so the contract tests run once per
adapter. Every store reads/writes the logical bucket ``BUCKET``.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import boto3
import jwt
import pytest
from moto import mock_aws

from lorafiles.storage import LocalObjectStore, S3ObjectStore, SupabaseObjectStore

BUCKET = "training-files"
S3_BUCKET_MAP = {
    "conversation-files": "test-conversation-files",
    "training-files": "test-training-files",
}


class FakeSupabaseStorage:
    """In-memory Supabase Storage REST API (the endpoints storage3 calls) on 127.0.0.1.

    Mimics the real service's quirks that matter to the adapter: errors are HTTP 400
    with ``{"statusCode": "<code>", "error": ..., "message": ...}`` bodies, a missing
    object is ``statusCode "404"`` / ``not_found``, a missing bucket is
    ``statusCode "404"`` / ``Bucket not found``, and ``list`` is one folder level.
    """

    _secret = "fake-supabase-jwt-secret-for-tests-only"

    def __init__(self, buckets: list[str]) -> None:
        self.key = jwt.encode({"role": "service_role", "iss": "supabase"}, self._secret, "HS256")
        self.buckets: dict[str, dict[str, tuple[bytes, str]]] = {b: {} for b in buckets}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_StorageHandler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def __enter__(self) -> FakeSupabaseStorage:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def sign(self, bucket: str, key: str, expires_in: int) -> str:
        claims = {"url": f"{bucket}/{key}", "exp": int(time.time()) + expires_in}
        return jwt.encode(claims, self._secret, "HS256")

    def verify(self, token: str) -> str:
        return jwt.decode(token, self._secret, algorithms=["HS256"])["url"]


class _ApiError(Exception):
    def __init__(self, status_code: str, error: str, message: str) -> None:
        self.body = {"statusCode": status_code, "error": error, "message": message}


_NOT_FOUND = ("404", "not_found", "Object not found")


class _StorageHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes
    fake: FakeSupabaseStorage

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.fake.lock:
            self.fake.requests.append((method, url.path, dict(self.headers.items())))
        segments = [unquote(s) for s in url.path.split("/")]
        try:
            if segments[:4] != ["", "storage", "v1", "object"] or len(segments) < 5:
                raise _ApiError("404", "not_found", f"no route {method} {url.path}")
            route, query = segments[4:], parse_qs(url.query, keep_blank_values=True)
            if method == "GET" and route[0] == "sign":
                return self._signed_download(route[1], "/".join(route[2:]), query)
            self._check_auth()
            match method, route:
                case "GET", ["info", bucket, *key]:
                    self._json(self._info(bucket, "/".join(key)))
                case "GET", [bucket, *key]:
                    data, content_type = self._object(bucket, "/".join(key))
                    self._send(200, data, content_type)
                case "POST", ["list", bucket]:
                    self._json(self._list(bucket, json.loads(body)))
                case "POST", ["sign", bucket, *key]:
                    self._json(self._create_signed_url(bucket, "/".join(key), json.loads(body)))
                case "POST" | "PUT", [bucket, *key]:
                    self._json(self._upload(method, bucket, "/".join(key), body))
                case "DELETE", [bucket]:
                    self._json(self._remove(bucket, json.loads(body)["prefixes"]))
                case _:
                    raise _ApiError("404", "not_found", f"no route {method} {url.path}")
        except _ApiError as exc:
            self._send(400, json.dumps(exc.body).encode())

    # -- endpoints -------------------------------------------------------------------

    def _check_auth(self) -> None:
        key = self.fake.key
        bearer = self.headers.get("Authorization")
        if self.headers.get("apikey") != key or bearer != f"Bearer {key}":
            raise _ApiError("403", "Unauthorized", "Invalid Compact JWS")

    def _bucket(self, bucket: str) -> dict[str, tuple[bytes, str]]:
        if bucket not in self.fake.buckets:
            raise _ApiError("404", "Bucket not found", "Bucket not found")
        return self.fake.buckets[bucket]

    def _object(self, bucket: str, key: str) -> tuple[bytes, str]:
        objects = self._bucket(bucket)
        if key not in objects:
            raise _ApiError(*_NOT_FOUND)
        return objects[key]

    def _info(self, bucket: str, key: str) -> dict[str, Any]:
        data, content_type = self._object(bucket, key)
        return {
            "id": _object_id(bucket, key),
            "name": key,
            "size": len(data),
            "content_type": content_type,
        }

    def _upload(self, method: str, bucket: str, key: str, body: bytes) -> dict[str, str]:
        objects = self._bucket(bucket)
        data, content_type = _multipart_file(self.headers["Content-Type"], body)
        with self.fake.lock:
            if method == "POST" and key in objects and self.headers.get("x-upsert") != "true":
                raise _ApiError("409", "Duplicate", "The resource already exists")
            if method == "PUT" and key not in objects:
                raise _ApiError(*_NOT_FOUND)
            objects[key] = (data, content_type)
        return {"Key": f"{bucket}/{key}", "Id": _object_id(bucket, key)}

    def _remove(self, bucket: str, keys: list[str]) -> list[dict[str, Any]]:
        objects = self._bucket(bucket)
        with self.fake.lock:
            removed = [key for key in keys if objects.pop(key, None) is not None]
        return [
            {"name": key, "bucket_id": bucket, "id": _object_id(bucket, key)} for key in removed
        ]

    def _list(self, bucket: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        objects = self._bucket(bucket)
        prefix = body.get("prefix", "").strip("/")
        base = f"{prefix}/" if prefix else ""
        search = body.get("search", "").lower()
        entries: dict[str, dict[str, Any]] = {}
        with self.fake.lock:
            snapshot = dict(objects)
        for key, (data, content_type) in snapshot.items():
            if not key.startswith(base):
                continue
            name, is_folder, _ = key[len(base) :].partition("/")
            if not name.lower().startswith(search):
                continue
            entries[name] = (
                {"name": name, "id": None, "updated_at": None, "created_at": None, "metadata": None}
                if is_folder
                else {
                    "name": name,
                    "id": _object_id(bucket, key),
                    "updated_at": "2025-01-01T00:00:00Z",
                    "created_at": "2025-01-01T00:00:00Z",
                    "metadata": {"size": len(data), "mimetype": content_type},
                }
            )
        ordered = [entries[name] for name in sorted(entries)]
        offset, limit = int(body.get("offset", 0)), int(body.get("limit", 100))
        return ordered[offset : offset + limit]

    def _create_signed_url(self, bucket: str, key: str, body: dict[str, Any]) -> dict[str, str]:
        self._object(bucket, key)
        token = self.fake.sign(bucket, key, int(body["expiresIn"]))
        return {"signedURL": f"/object/sign/{quote(bucket)}/{quote(key)}?token={token}"}

    def _signed_download(self, bucket: str, key: str, query: dict[str, list[str]]) -> None:
        try:
            signed_for = self.fake.verify(query["token"][0])
        except (KeyError, jwt.InvalidTokenError) as exc:
            raise _ApiError("400", "InvalidJWT", str(exc)) from exc
        if signed_for != f"{bucket}/{key}":
            raise _ApiError("400", "InvalidSignature", "The url does not match the token")
        data, content_type = self._object(bucket, key)
        headers = {}
        if "download" in query:
            filename = query["download"][0] or key.rpartition("/")[2]
            headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        self._send(200, data, content_type, headers)

    # -- responses -------------------------------------------------------------------

    def _json(self, payload: Any) -> None:
        self._send(200, json.dumps(payload).encode())

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _object_id(bucket: str, key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{bucket}/{key}"))


def _multipart_file(content_type: str, body: bytes) -> tuple[bytes, str]:
    """The ``file`` part of a multipart/form-data body: (content, part content type)."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    for chunk in body.split(b"--" + boundary)[1:-1]:
        head, _, content = chunk.removeprefix(b"\r\n").removesuffix(b"\r\n").partition(b"\r\n\r\n")
        headers = email.message_from_bytes(head + b"\r\n\r\n", policy=email.policy.HTTP)
        if headers.get_param("name", header="content-disposition") == "file":
            return content, headers.get_content_type()
    raise _ApiError("400", "InvalidRequest", "multipart body has no file part")


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture
def local_store(tmp_path) -> LocalObjectStore:
    return LocalObjectStore(tmp_path / "objects")


@pytest.fixture
def aws_credentials(monkeypatch) -> None:
    """Fake credentials so boto3 never picks up real ones."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def s3_store(aws_credentials) -> Iterator[S3ObjectStore]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for real in S3_BUCKET_MAP.values():
            client.create_bucket(Bucket=real)
        yield S3ObjectStore(bucket_map=S3_BUCKET_MAP, region="us-east-1")


@pytest.fixture
def fake_supabase() -> Iterator[FakeSupabaseStorage]:
    with FakeSupabaseStorage(["conversation-files", "training-files"]) as fake:
        yield fake


@pytest.fixture
def supabase_store(fake_supabase) -> Iterator[SupabaseObjectStore]:
    store = SupabaseObjectStore(fake_supabase.url, fake_supabase.key)
    yield store
    store.client.storage.session.close()


@pytest.fixture(params=["local", "s3", "supabase"])
def store(request):
    """Each adapter in turn, ready to use ``BUCKET``."""
    return request.getfixturevalue(f"{request.param}_store")
