"""`lorafiles serve`: the Lambda HTTP API on localhost, for the frontend team and the tests.

Each HTTP request becomes an API Gateway HTTP API (payload v2) event and is handed to the Lambda
function itself (functions/api/handler.py, i.e. the resolver of lorafiles.api.app with the
Powertools logger/tracer/metrics around it), so the local server exposes exactly the Lambda
routes, auth and errors. On top, like the AWS pieces around the function, it:

* sets the resolver's CORS origins (api/cors.py): `LORAFILES_CORS_ALLOWED_ORIGINS`, else its own
  origin; preflights go to the resolver like every other request;
* serves the signed download URLs it hands out, `GET /downloads/<token>` (S3/Supabase Storage
  do it in AWS): HMAC-SHA256 signed with an expiry, `Content-Disposition: attachment`;
* serves the training-files page at `/` (lorafiles/api/web/, static files that call the API
  above) and, to loopback callers only, `GET /local/config.json` offering its dev token.

Jobs started through the API run in the local Step Functions runner (moto) of `open_context`.
"""
from __future__ import annotations

import base64
import os
import re
import signal
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

from ..domain.rules import content_disposition
from ..errors import LorafilesError
from ..ports import ObjectNotFound
from ..storage.content_types import resolve_content_type
from ..runtime import use_service
from ..storage.local import LocalObjectStore
from . import web
from .auth import AuthConfig, TokenVerifier, make_token, use_verifier
from .cors import cors, origins_from_env
from .errors import error_body
from .signing import PREFIX, UrlSigner, dev_jwt_secret, signing_secret

LOCAL_ISSUER = "http://127.0.0.1:54321/auth/v1"  # what `supabase start` (Supabase CLI) issues
CHUNK = 1 << 20
MAX_BODY = 10 * 1024 * 1024  # API Gateway's payload limit


def to_event(method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str,
             host: str) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 event for one request."""
    parts = urlsplit(target)
    path = unquote(parts.path) or "/"
    merged: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    query: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    now = datetime.now(timezone.utc)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": parts.query,
        "headers": merged,
        "requestContext": {
            "accountId": "local", "apiId": "local", "domainName": host, "domainPrefix": host.split(".")[0],
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": source_ip,
                     "userAgent": merged.get("user-agent", "")},
            "requestId": merged.get("x-request-id") or str(uuid.uuid4()), "routeKey": "$default",
            "stage": "$default", "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if "cookie" in merged:
        event["cookies"] = [c.strip() for c in merged["cookie"].split(";") if c.strip()]
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    return event


_DIGITS = re.compile(r"[0-9]{1,18}")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_MAX_LINE = 4096
_MAX_TRAILERS = 32


class _BadFraming(Exception):
    """The request's body framing is unusable: answered with `status`, connection closed."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LocalApiServer:
    """The API on a ThreadingHTTPServer. `port=0` picks a free port (tests); see `base_url`.

    It makes the process's handlers use `service` and `verifier` (runtime.use_service,
    auth.use_verifier), and gives a local store a `url_signer` pointing at this server."""

    def __init__(self, service: Any, *, verifier: TokenVerifier, signing_key: bytes, host: str = "127.0.0.1",
                 port: int = 8787, quiet: bool = False, cors_origins: list[str] | None = None,
                 dev_token: str | None = None) -> None:
        from ..pipeline.local import load_handler

        self.handler = load_handler("api")  # functions/api/handler.py, as deployed
        self.service, self.verifier, self.quiet = service, verifier, quiet
        self.dev_token = dev_token  # offered to the page on loopback (web.local_config); None: not offered
        self.httpd = ThreadingHTTPServer((host, port), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.api = self  # type: ignore[attr-defined]
        bound_host, bound_port = self.httpd.server_address[:2]
        self.base_url = f"http://{bound_host}:{bound_port}"
        self.signer = UrlSigner(signing_key, self.base_url)
        self.cors_origins = cors_origins or origins_from_env() or [self.base_url]
        cors.set(self.cors_origins)
        if isinstance(service.store, LocalObjectStore):  # signed URLs that point at this server
            service.store = LocalObjectStore(service.store.root, url_signer=self.signer)
        self._resolve_lock = threading.Lock()  # one resolver instance: it keeps per-request state (like a
        # Lambda container, which serves one request at a time)
        self._thread: threading.Thread | None = None
        use_service(service)
        use_verifier(verifier)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "LocalApiServer":
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="lorafiles-api", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        use_verifier(None)
        cors.set(origins_from_env() or ())

    def __enter__(self) -> "LocalApiServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ requests
    def resolve(self, event: dict[str, Any]) -> dict[str, Any]:
        from ..pipeline.local import LambdaContext

        with self._resolve_lock:
            return self.handler(event, LambdaContext(function_name="api"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lorafiles-local"

    @property
    def api(self) -> LocalApiServer:
        return self.server.api  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if not self.api.quiet:
            sys.stderr.write(f"{self.address_string()} - {format % args}\n")

    # every method goes to the resolver, which answers 404/405 like in AWS
    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path.startswith(PREFIX):
            self._download()
        elif web.is_page_path(path):
            self._page(path)
        else:
            self._api()

    def _page(self, path: str) -> None:
        """The training-files page (static) and its local config: no token, never the resolver."""
        if path == web.CONFIG_PATH:
            config = web.local_config(self.api.dev_token, client_ip=self.client_address[0],
                                      host=self.headers.get("Host"), server_url=self.api.base_url)
            self._send(200, orjson.dumps(config), {"Content-Type": "application/json", **web.HEADERS})
            return
        found = web.static_file(path)
        if found is None:
            self._json(404, error_body("route_not_found", f"no page file {path}"))
            return
        data, content_type = found
        self._send(200, data, {"Content-Type": content_type, **web.HEADERS})

    def __getattr__(self, name: str) -> Any:
        # any other method (POST, HEAD, TRACE, ...) goes to the resolver too, as through API Gateway
        if name.startswith("do_"):
            return self._api
        raise AttributeError(name)

    def _body(self) -> bytes:
        """The request body, framed strictly (RFC 9112): one Content-Length of ASCII digits, or
        `Transfer-Encoding: chunked` alone, never both; at most MAX_BODY bytes either way."""
        codings = [c.strip().lower() for v in self.headers.get_all("Transfer-Encoding") or [] for c in v.split(",")]
        lengths = [v.strip() for v in self.headers.get_all("Content-Length") or []]
        if codings:
            if codings != ["chunked"]:
                raise _BadFraming(400, "bad_request", "only Transfer-Encoding: chunked is supported")
            if lengths:
                raise _BadFraming(400, "bad_request", "send Content-Length or Transfer-Encoding, not both")
            return self._chunked()
        if not lengths:
            return b""
        if len(set(lengths)) != 1 or not _DIGITS.fullmatch(lengths[0]):
            raise _BadFraming(400, "bad_request", "Content-Length must be one non-negative decimal number")
        length = int(lengths[0])
        if length > MAX_BODY:
            raise _BadFraming(413, "payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
        data = self.rfile.read(length)
        if len(data) < length:
            raise _BadFraming(400, "bad_request", "the body is shorter than its Content-Length")
        return data

    def _chunked(self) -> bytes:
        data = bytearray()
        while True:
            line = self.rfile.readline(_MAX_LINE + 1)
            size_text = line.split(b";", 1)[0].strip()
            if len(line) > _MAX_LINE or not line.endswith(b"\n") or not _HEX.fullmatch(size_text):
                raise _BadFraming(400, "bad_request", "malformed chunk size line")
            size = int(size_text, 16)
            if size == 0:
                for _ in range(_MAX_TRAILERS):
                    trailer = self.rfile.readline(_MAX_LINE + 1)
                    if trailer in (b"\r\n", b"\n"):
                        return bytes(data)
                    if len(trailer) > _MAX_LINE or not trailer.endswith(b"\n"):
                        break
                raise _BadFraming(400, "bad_request", "malformed chunked trailer")
            if len(data) + size > MAX_BODY:
                raise _BadFraming(413, "payload_too_large", f"request bodies are limited to {MAX_BODY} bytes")
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(3) not in (b"\r\n", b"\n"):
                raise _BadFraming(400, "bad_request", "malformed chunk")
            data += chunk

    def _api(self) -> None:
        try:
            body = self._body()
        except _BadFraming as exc:
            self.close_connection = True  # what follows on the connection cannot be trusted
            self._json(exc.status, error_body(exc.code, exc.message))
            return
        event = to_event(self.command, self.path, list(self.headers.items()), body, self.client_address[0],
                         self.headers.get("Host") or "localhost")
        result = self.api.resolve(event)
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode("utf-8")
        headers = dict(result.get("headers") or {})
        self._send(int(result["statusCode"]), data, headers, cookies=result.get("cookies") or [])

    def _download(self) -> None:
        token = unquote(urlsplit(self.path).path[len(PREFIX):])
        try:
            self._body()  # read (and ignore) a body, so that the next request on the connection is framed right
        except _BadFraming as exc:
            self.close_connection = True
            self._json(exc.status, error_body(exc.code, exc.message))
            return
        try:
            obj = self.api.signer.verify(token)
            with self.api.service.store.open_stream(obj.bucket, obj.key) as stream:
                stream.seek(0, os.SEEK_END)
                size = stream.tell()
                stream.seek(0)
                headers = {"Content-Type": resolve_content_type(obj.key),
                           "Cache-Control": "private, no-store"}
                if obj.download_name:
                    headers["Content-Disposition"] = content_disposition(obj.download_name)
                origin = self.headers.get("Origin")
                if cors.allows(origin):  # like a bucket's CORS rule: the page may fetch report.json
                    headers["Access-Control-Allow-Origin"] = origin
                    headers["Vary"] = "Origin"
                self._send_head(200, size, headers)
                while chunk := stream.read(CHUNK):
                    self.wfile.write(chunk)
        except LorafilesError as exc:
            self._json(exc.status, error_body(exc.code, exc.message, exc.details))
        except ObjectNotFound:
            self._json(404, error_body("not_found", "the file of this link no longer exists"))

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self._send(status, orjson.dumps(body), {"Content-Type": "application/json"})

    def _send_head(self, status: int, length: int, headers: dict[str, Any], cookies: list[str] = ()) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, ", ".join(value) if isinstance(value, list) else str(value))
        for cookie in cookies:
            self.send_header("Set-Cookie", cookie)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, data: bytes, headers: dict[str, Any], cookies: list[str] = ()) -> None:
        self._send_head(status, len(data), headers, cookies)
        if self.command != "HEAD":
            self.wfile.write(data)


# ---------------------------------------------------------------------- `lorafiles serve`
def local_verifier(home: Any, jwt_secret: str | None) -> tuple[TokenVerifier, str, str]:
    """The local server's verifier: HS256 with `jwt_secret`, else env LORAFILES_SUPABASE_JWT_SECRET,
    else a dev secret kept under LORAFILES_HOME; plus the JWKS settings of the environment, if any.
    Returns (verifier, secret, where the secret came from)."""
    env = dict(os.environ)
    env.setdefault("LORAFILES_JWT_ISSUER", LOCAL_ISSUER)
    if jwt_secret:
        secret, source = jwt_secret, "--jwt-secret"
    elif env.get("LORAFILES_SUPABASE_JWT_SECRET"):
        secret, source = env["LORAFILES_SUPABASE_JWT_SECRET"], "LORAFILES_SUPABASE_JWT_SECRET"
    else:
        secret, source = dev_jwt_secret(home), f"dev secret in {home / 'dev-jwt-secret'}"
    env["LORAFILES_SUPABASE_JWT_SECRET"] = secret
    return TokenVerifier(AuthConfig.from_env(env)), secret, source


def serve(ctx: Any, *, host: str, port: int, jwt_secret: str | None, sample_conversations: int = 0) -> int:
    settings = ctx.service.settings
    verifier, secret, source = local_verifier(settings.home, jwt_secret)
    if sample_conversations:
        _import_samples(ctx, sample_conversations)
    token = make_token(secret, ctx.owner, issuer=verifier.config.issuer, audience=verifier.config.audience,
                       ttl=7 * 24 * 3600, email="dev@lorafiles.local")
    try:
        server = LocalApiServer(ctx.service, verifier=verifier, signing_key=signing_secret(settings.home),
                                host=host, port=port, dev_token=token)
    except (OSError, OverflowError) as exc:  # address in use, unknown host, port out of range
        raise LorafilesError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    print(f"lorafiles API on {server.base_url}  (Swagger UI {server.base_url}/docs, "
          f"OpenAPI {server.base_url}/openapi.json)\n"
          f"training-files page: {server.base_url}/  (CORS origins: {', '.join(server.cors_origins)})\n"
          f"auth: HS256 secret from {source}; iss {verifier.config.issuer!r}; aud {verifier.config.audience!r}\n"
          f"dev token for owner {ctx.owner} (valid 7 days):\n"
          f"  export LORAFILES_TOKEN={token}\n"
          f"  curl -H \"Authorization: Bearer $LORAFILES_TOKEN\" {server.base_url}/conversations\n"
          f"Ctrl-C stops.", flush=True)
    if threading.current_thread() is threading.main_thread():  # SIGTERM stops cleanly, like Ctrl-C
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()
        use_verifier(None)
    return 0


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _import_samples(ctx: Any, count: int) -> None:
    import tempfile
    from pathlib import Path

    from ..domain.samples import write_sample_dir

    with tempfile.TemporaryDirectory(prefix="lorafiles-samples-") as tmp:
        paths = write_sample_dir(Path(tmp), count, seed=int(time.time()) % 100_000, target_bytes=20_000)
        batch = str(uuid.uuid4())
        result = ctx.service.importing.import_files(ctx.owner, paths, batch_id=batch)
    print(f"imported {len(result['imported'])} sample conversation(s) in batch {batch}", flush=True)
