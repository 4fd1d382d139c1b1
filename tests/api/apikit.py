"""Helpers of the HTTP API tests (imported by conftest.py and the test modules): JWTs, a small
HTTP client, and the `Api` handle on a running local server."""
from __future__ import annotations

import http.client
import json
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from lorafiles.api.auth import AuthConfig, TokenVerifier
from lorafiles.api.local_server import LocalApiServer
from lorafiles.domain.samples import write_sample_dir
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.service import TrainingFileService

ISSUER = "https://testref.supabase.co/auth/v1"
HS_SECRET = "legacy-jwt-secret-with-at-least-32-characters"
OWNER_A = "0a0a0a0a-0000-4000-8000-00000000000a"
OWNER_B = "0b0b0b0b-0000-4000-8000-00000000000b"


@dataclass(frozen=True)
class Keys:
    ec: Any
    rsa: Any
    ec_kid: str = "ec-key-1"
    rsa_kid: str = "rsa-key-1"

    @property
    def jwks(self) -> dict[str, Any]:
        ec_jwk = {**ECAlgorithm.to_jwk(self.ec.public_key(), as_dict=True), "kid": self.ec_kid, "alg": "ES256",
                  "use": "sig"}
        rsa_jwk = {**RSAAlgorithm.to_jwk(self.rsa.public_key(), as_dict=True), "kid": self.rsa_kid, "alg": "RS256",
                   "use": "sig"}
        return {"keys": [ec_jwk, rsa_jwk]}


def claims(owner: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"sub": owner, "aud": "authenticated", "iss": ISSUER, "role": "authenticated", "iat": now,
            "exp": now + 600, "session_id": str(uuid.uuid4()), "aal": "aal1", "email": "user@example.com"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def make_jwt(keys: Keys, owner: str = OWNER_A, alg: str = "ES256", *, key: Any = None, kid: str | None = "default",
             **over: Any) -> str:
    payload = claims(owner, **over)
    if alg == "HS256":
        headers = {} if kid == "default" else ({"kid": kid} if kid else {})
        return jwt.encode(payload, key or HS_SECRET, algorithm="HS256", headers=headers)
    signing = key or (keys.ec if alg == "ES256" else keys.rsa)
    kid = (keys.ec_kid if alg == "ES256" else keys.rsa_kid) if kid == "default" else kid
    return jwt.encode(payload, signing, algorithm=alg, headers={"kid": kid} if kid else {})


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        return self.json()["error"]


def http_request(url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


@dataclass
class Client:
    base_url: str
    token: str | None

    def request(self, method: str, path: str, *, json_body: Any = None, query: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, token: str | None = "inherit",
                raw: bytes | None = None) -> Reply:
        hdrs = dict(headers or {})
        token = self.token if token == "inherit" else token
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        body = raw
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        url = self.base_url + path + (f"?{urlencode(query)}" if query else "")
        return http_request(url, method, body, hdrs)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, json_body=body, **kw)


@dataclass
class Api:
    base_url: str
    server: LocalApiServer
    service: TrainingFileService
    machine: LocalStateMachine
    keys: Keys
    tmp: Path
    _seeds: int = field(default=0)

    def token(self, owner: str = OWNER_A, alg: str = "ES256", **over: Any) -> str:
        return make_jwt(self.keys, owner, alg, **over)

    def client(self, owner: str = OWNER_A, alg: str = "ES256") -> Client:
        return Client(self.base_url, self.token(owner, alg))

    @property
    def anonymous(self) -> Client:
        return Client(self.base_url, None)

    def seed(self, owner: str = OWNER_A, count: int = 3, batch_id: str | None = None, **kw: Any) -> list[str]:
        """Import `count` generated conversations for `owner`; their conversation ids."""
        self._seeds += 1
        directory = self.tmp / f"samples-{self._seeds}"
        paths = write_sample_dir(directory, count, seed=f"{owner}-{self._seeds}", target_bytes=20_000, **kw)
        result = self.service.importing.import_files(owner, paths, batch_id=batch_id)
        assert not result["refused"], result["refused"]
        return [i["conversation_id"] for i in result["imported"]]

    def sql(self, query: str, params: Any = ()) -> list[dict[str, Any]]:
        with self.service.db.connection() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def wait_job(self, client: Client, job_id: str, timeout: float = 90) -> dict[str, Any]:
        """Poll GET /jobs/{id} over HTTP until the job is finished."""
        deadline = time.monotonic() + timeout
        while True:
            reply = client.get(f"/jobs/{job_id}")
            assert reply.status == 200, reply.body
            job = reply.json()
            if job["status"] in ("succeeded", "failed"):
                return job
            assert time.monotonic() < deadline, f"job {job_id} still {job['status']} at {job['step']}"
            time.sleep(0.1)


def make_verifier(keys: Keys, **over: Any) -> TokenVerifier:
    config = AuthConfig(issuer=ISSUER, jwks=keys.jwks, hs256_secret=HS_SECRET, **over)
    return TokenVerifier(config)


