"""Issue 9 item 8: the API's edges answer 4xx, never 5xx, over real HTTP (and raw sockets where
http.client would refuse to send the request): tampered cursors, tokens of the wrong role or
with non-numeric times, request framing and media types on the local server, and signed links
that name anything but a training-file artifact."""
from __future__ import annotations

import base64
import json
import socket
import time
from urllib.parse import urlsplit

import jwt
import orjson
import pytest

from apikit import HS_SECRET, ISSUER, OWNER_A, Api, http_request, make_jwt

from lorafiles.api.local_server import MAX_BODY

from test_isolation_and_errors import make_file


def _cursor(data) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


ROW = "3f6e2d1c-0000-4000-8000-000000000001"
GOOD = {"s": "created_at", "o": "desc", "v": "2026-11-01T00:00:00+00:00", "id": ROW}
TAMPERED = {
    # values Python's parsers accept and PostgreSQL rejects
    "ISO week date": {**GOOD, "v": "2026-W01-1"},
    "before year 1 in UTC": {**GOOD, "v": "0001-01-01T00:00:00+14:00"},
    "after year 9999 in UTC": {**GOOD, "v": "9999-12-31T23:59:59-14:00"},
    "basic format": {**GOOD, "v": "20261101T000000+0000"},
    "date only": {**GOOD, "v": "2026-11-01"},
    "no offset": {**GOOD, "v": "2026-11-01T00:00:00"},
    "arabic digits": {**GOOD, "v": "٢٠٢٦-11-01T00:00:00+00:00"},
    "urn id": {**GOOD, "id": "urn:uuid:" + ROW},
    "braced id": {**GOOD, "id": "{" + ROW + "}"},
    "bare hex id": {**GOOD, "id": ROW.replace("-", "")},
    "id not a uuid": {**GOOD, "id": "42"},
    "urn batch": {**GOOD, "s": "batch_id", "v": "urn:uuid:" + ROW},
    "batch not a uuid": {**GOOD, "s": "batch_id", "v": "zzzzzzzz-0000-4000-8000-000000000001"},
    "NUL in text": {**GOOD, "s": "persona_key", "v": "anxious\u0000planner"},
    # types and shapes
    "huge int value": {**GOOD, "v": 10**30},
    "int64 value": {**GOOD, "v": 2**63 - 1},
    "huge int id": {**GOOD, "id": 2**64 - 1},
    "bool value": {**GOOD, "v": True},
    "list value": {**GOOD, "v": ["2026-11-01T00:00:00+00:00"]},
    "object value": {**GOOD, "v": {"$gt": ""}},
    "list sort": {**GOOD, "s": ["created_at"]},
    "int order": {**GOOD, "o": 1},
    "null id": {**GOOD, "id": None},
    "missing value": {k: v for k, v in GOOD.items() if k != "v"},
    "extra key": {**GOOD, "x": 1},
    "a list": [GOOD],
    "a string": "created_at",
    "a number": 12,
}
RAW = {
    "not JSON": b"created_at|desc",
    "invalid UTF-8": b'{"s": "created_at", "o": "desc", "v": "\xff", "id": "x"}',
    "lone surrogate": b'{"s": "created_at", "o": "desc", "v": "\\ud800", "id": "' + ROW.encode() + b'"}',
    "infinite number": b'{"s": "created_at", "o": "desc", "v": 1e400, "id": "' + ROW.encode() + b'"}',
}


def test_tampered_cursors_are_422_invalid_cursor(api: Api) -> None:
    alice = api.client()
    api.seed(OWNER_A, 3)
    sorts = {"created_at": "desc", "batch_id": "desc", "persona_key": "desc"}
    cases = {name: _cursor(data) for name, data in {**TAMPERED, **RAW}.items()}
    cases |= {"not base64": "!!!!", "non-ASCII": "é" * 8, "padding only": "===="}
    for name, cursor in cases.items():
        for sort, order in sorts.items():
            reply = alice.get("/conversations", query={"sort": sort, "order": order, "cursor": cursor, "limit": 2})
            assert reply.status == 422, (name, sort, reply.status, reply.body)
            assert reply.error["code"] == "invalid_cursor", (name, sort, reply.error)
            assert reply.error["details"][0]["field"] == "query.cursor"
    # a genuine cursor still walks on, and a well-formed forged one is simply a position
    first = alice.get("/conversations", query={"limit": 2}).json()
    assert first["next_cursor"]
    assert alice.get("/conversations", query={"limit": 2, "cursor": first["next_cursor"]}).status == 200
    assert alice.get("/conversations", query={"limit": 2, "cursor": _cursor(GOOD)}).status == 200
    assert alice.get("/conversations", query={"limit": 2, "cursor": _cursor({**GOOD, "v": None})}).status == 200


# ------------------------------------------------------------------------------ tokens

def _hs(**claims) -> str:
    now = int(time.time())
    base = {"sub": OWNER_A, "aud": "authenticated", "iss": ISSUER, "role": "authenticated", "iat": now,
            "exp": now + 600}
    base.update(claims)
    return jwt.encode({k: v for k, v in base.items() if v is not None}, HS_SECRET, algorithm="HS256")


@pytest.mark.parametrize("alg", ["ES256", "RS256", "HS256"])
def test_tokens_of_other_roles_and_with_non_numeric_times_are_401(api: Api, alg: str) -> None:
    now = int(time.time())
    bad = {
        "anon role": ({"role": "anon"}, "bad_role"),
        "service_role": ({"role": "service_role"}, "bad_role"),
        "no role": ({"role": None}, "bad_role"),
        "role list": ({"role": ["authenticated"]}, "bad_role"),
        "role case": ({"role": "Authenticated"}, "bad_role"),
        "postgres role": ({"role": "postgres"}, "bad_role"),
        "nbf string": ({"nbf": str(now - 10)}, "malformed"),
        "nbf bool": ({"nbf": False}, "malformed"),
        "nbf list": ({"nbf": [now - 10]}, "malformed"),
        "iat string": ({"iat": "now"}, "malformed"),
        "iat object": ({"iat": {"t": now}}, "malformed"),
        "iat null": ({"iat": None, "exp": now + 600}, None),  # absent iat is fine
    }
    for name, (claims, reason) in bad.items():
        if claims.get("iat", 0) is None:
            token = _hs(**claims) if alg == "HS256" else make_jwt(api.keys, alg=alg, **claims)
        else:
            token = make_jwt(api.keys, alg=alg, **claims) if alg != "HS256" else _hs(**claims)
        reply = api.anonymous.get("/training-files", headers={"Authorization": f"Bearer {token}"})
        if reason is None:
            assert reply.status == 200, (name, reply.body)
            continue
        assert reply.status == 401, (name, reply.status, reply.body)
        # supabase-py's get_claims (ES256/RS256) refuses some wrongly typed claims itself: malformed
        allowed = {reason} if alg == "HS256" else {reason, "malformed"}
        assert reply.error["details"]["reason"] in allowed, (name, reply.error)
    for exp in (float("inf"), float("nan"), "9999999999", True):
        token = jwt.encode({"sub": OWNER_A, "aud": "authenticated", "iss": ISSUER, "role": "authenticated",
                            "exp": exp}, HS_SECRET, algorithm="HS256")
        reply = api.anonymous.get("/training-files", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 401 and reply.error["details"]["reason"] in ("malformed", "expired"), (exp, reply.body)


# ------------------------------------------------------------------------------ framing and media types

def _raw(api: Api, request: bytes, timeout: float = 30) -> tuple[int, bytes]:
    """Send raw bytes; (status, body) of the response (0 when the server answered nothing)."""
    parts = urlsplit(api.base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < _expected(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    if not data.startswith(b"HTTP/1."):
        return 0, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def _expected(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + len(sep) + int(value.strip())
    return len(data)


def _post(api: Api, headers: list[str], body: bytes = b"") -> tuple[int, bytes]:
    token = make_jwt(api.keys)
    lines = ["POST /training-files HTTP/1.1", "Host: localhost", f"Authorization: Bearer {token}",
             "Connection: close", *headers]
    return _raw(api, ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body)


BODY = json.dumps({"name": "framing", "conversation_ids": ["nope"]}).encode()


def test_bad_content_length_is_400_and_chunked_bodies_are_bounded(api: Api) -> None:
    ok_json = ["Content-Type: application/json"]
    status, body = _post(api, ok_json + [f"Content-Length: {len(BODY)}"], BODY)
    assert status == 422 and b"selection_blocked" in body  # the control: a well-framed request
    for value in ("abc", "-1", "+27", "2_7", "٢٧", "27 27", "0x1b", "", "1e2", "27,27", "99999999999999999999999"):
        status, body = _post(api, ok_json + [f"Content-Length: {value}"], BODY)
        assert status == 400, (value, status, body)
        assert json.loads(body)["error"]["code"] == "bad_request"
    status, _ = _post(api, ok_json + ["Content-Length: 27", "Content-Length: 28"], BODY)
    assert status == 400
    status, _ = _post(api, ok_json + [f"Content-Length: {len(BODY)}", "Transfer-Encoding: chunked"], BODY)
    assert status == 400
    status, _ = _post(api, ok_json + ["Transfer-Encoding: gzip, chunked"], BODY)
    assert status == 400
    status, _ = _post(api, ok_json + [f"Content-Length: {MAX_BODY + 1}"], b"")
    assert status == 413

    def chunked(*chunks: bytes, sizes: list[bytes] | None = None) -> bytes:
        out = b""
        for i, c in enumerate(chunks):
            out += (sizes[i] if sizes else f"{len(c):x}".encode()) + b"\r\n" + c + b"\r\n"
        return out + b"0\r\n\r\n"

    te = ok_json + ["Transfer-Encoding: chunked"]
    status, body = _post(api, te, chunked(BODY[:10], BODY[10:]))
    assert status == 422 and b"selection_blocked" in body  # chunked bodies work
    status, _ = _post(api, te, f"{MAX_BODY + 1:x}\r\n".encode() + b"x" * 1024)  # announced too big
    assert status == 413
    mb = b" " * (1 << 20)
    status, _ = _post(api, te, b"".join(f"{len(mb):x}\r\n".encode() + mb + b"\r\n" for _ in range(11)))
    assert status == 413  # many chunks adding up past the limit
    for size in (b"-5", b"0x10", b"zz", b"1_0", b" ", b"1" * 40):
        status, _ = _post(api, te, chunked(BODY, sizes=[size]))
        assert status == 400, size


def test_content_types_are_matched_exactly(api: Api) -> None:
    for value in ("application/jsonfoo", "application/json-patch+json", "application/jsonl", "text/json",
                  "application/x-www-form-urlencoded", "application/json, text/plain", "multipart/form-data"):
        status, body = _post(api, [f"Content-Type: {value}", f"Content-Length: {len(BODY)}"], BODY)
        assert status == 415, (value, status, body)
        assert json.loads(body)["error"]["code"] == "unsupported_media_type"
    for value in ("application/json", "application/json; charset=utf-8", "Application/JSON",
                  "application/json;charset=UTF-8"):
        status, body = _post(api, [f"Content-Type: {value}", f"Content-Length: {len(BODY)}"], BODY)
        assert status == 422 and b"selection_blocked" in body, (value, status, body)


# ------------------------------------------------------------------------------ signed links

def test_a_signed_link_can_only_name_a_training_file_artifact(api: Api) -> None:
    alice = api.client()
    [cid] = api.seed(OWNER_A, 1)
    job = make_file(api, alice, [cid])
    link = alice.get(f"/training-files/{job['file_id']}/download").json()
    assert http_request(link["url"]).status == 200
    base, _, token = link["url"].rpartition("/")
    payload = json.loads(base64.urlsafe_b64decode(token.partition(".")[0] + "=="))
    enriched = api.sql("select enriched_file_path from conversations where conversation_id = %s",
                       (cid,))[0]["enriched_file_path"]
    fragment = api.sql("select jsonl_fragment_key from lora_training_file_members")[0]["jsonl_fragment_key"]
    key = payload["k"]
    forged = {
        "input bucket": {"b": "conversation-files", "k": enriched},
        "fragment": {"k": fragment},
        "dot-dot": {"k": f"{key.split('/')[0]}/../../../../etc/passwd"},
        "dot-dot artifact": {"k": key.replace("/v1/", "/v1/../v1/")},
        "absolute": {"k": "/etc/passwd"},
        "NUL": {"k": key + "\u0000.txt"},
        "backslash": {"k": key.replace("/", "\\")},
        "bucket dot-dot": {"b": "training-files/.."},
        "bucket not text": {"b": ["training-files"]},
        "key not text": {"k": {"path": key}},
        "name not text": {"n": {"x": 1}},
        "version 0": {"k": key.replace("/v1/", "/v0/")},
    }
    signer = api.server.signer
    for name, change in forged.items():
        data = {**payload, **change}
        body = base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")
        url = f"{base}/{body}.{signer._sign(body)}"  # correctly signed: the secret leaked or was misused
        reply = http_request(url)
        assert reply.status == 403, (name, reply.status, reply.body)
        assert json.loads(reply.body)["error"]["code"] == "download_invalid", name
    with pytest.raises(ValueError):
        signer("conversation-files", enriched, 60, None)
    with pytest.raises(ValueError):
        signer("training-files", "../x", 60, None)
