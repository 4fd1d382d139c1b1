"""`lorafiles serve` as a user runs it: a subprocess that prints a dev token which works."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jwt

from apikit import http_request

from lorafiles.config import LOCAL_OWNER


def test_lorafiles_serve_prints_a_working_dev_token(db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "LORAFILES_HOME": str(tmp_path / "home"),
           "PYTHONUNBUFFERED": "1"}
    for name in ("LORAFILES_SUPABASE_JWT_SECRET", "LORAFILES_JWT_ISSUER", "LORAFILES_SUPABASE_JWKS",
                 "LORAFILES_SUPABASE_JWKS_URL", "LORAFILES_STORAGE", "LORAFILES_STORAGE_ROOT",
                 "LORAFILES_CORS_ALLOWED_ORIGINS"):
        env.pop(name, None)
    cli = Path(sys.executable).with_name("lorafiles")
    proc = subprocess.Popen([str(cli), "serve", "--port", "0", "--sample-conversations", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, base, token = [], None, None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"serve exited: {proc.poll()} {proc.stderr.read()}"
            out.append(line)
            if m := re.search(r"lorafiles API on (http://\S+)", line):
                base = m.group(1)
            if m := re.search(r"export LORAFILES_TOKEN=(\S+)", line):
                token = m.group(1)
        assert base and token, "".join(out)
        reply = http_request(f"{base}/conversations", headers={"Authorization": f"Bearer {token}"})
        assert reply.status == 200, reply.body
        page = json.loads(reply.body)
        assert page["total"] == 2 and all(c["eligible"] for c in page["items"])
        assert http_request(f"{base}/conversations").status == 401
        assert http_request(f"{base}/docs").status == 200
        # the dev secret is kept in LORAFILES_HOME, so the token survives a restart
        assert (tmp_path / "home" / "dev-jwt-secret").is_file()
        # CORS: by default the server's own origin only (LORAFILES_CORS_ALLOWED_ORIGINS unset)
        pre = http_request(f"{base}/training-files", "OPTIONS", headers={
            "Origin": base, "Access-Control-Request-Method": "POST"})
        assert pre.status == 204 and "Idempotency-Key" in pre.headers["access-control-allow-headers"]
        assert pre.headers["access-control-allow-origin"] == base
        other = http_request(f"{base}/training-files", "OPTIONS", headers={
            "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST"})
        assert other.status == 403 and "access-control-allow-origin" not in other.headers
        got = http_request(f"{base}/training-files", headers={"Authorization": f"Bearer {token}", "Origin": base})
        assert got.status == 200 and got.headers["access-control-allow-origin"] == base
        assert json.loads(got.body) == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}
        # the page, and its local config offering this very token (to a loopback caller)
        assert http_request(f"{base}/").status == 200
        assert json.loads(http_request(f"{base}/local/config.json").body)["dev_token"] == token
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["sub"] == LOCAL_OWNER and claims["aud"] == "authenticated"  # default --owner
    finally:
        proc.terminate()
        proc.wait(timeout=30)
