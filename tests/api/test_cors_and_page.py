"""CORS (api/cors.py: Powertools' CORSConfig, preflights through the resolver) and the page files
and local config of the local server (api/web/)."""
from __future__ import annotations

import json

import pytest

from apikit import Api, http_request, make_verifier
from lorafiles.api import web
from lorafiles.api.cors import AllowedOrigins, cors, normalize_origin, origins_from_env, parse_origins
from lorafiles.api.local_server import LocalApiServer

EVIL = "http://evil.example"


def preflight(base: str, origin: str, path: str = "/training-files", method: str = "POST"):
    return http_request(f"{base}{path}", "OPTIONS", headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type,idempotency-key"})


def test_preflight_from_the_page_origin_succeeds(api: Api) -> None:
    page_origin = api.base_url  # the page is served by this server: LORAFILES_CORS_ALLOWED_ORIGINS' default
    for path, method in (("/training-files", "POST"), ("/selections/validate", "POST"), ("/jobs/x", "GET"),
                         ("/conversations", "GET")):
        pre = preflight(api.base_url, page_origin, path, method)
        assert pre.status == 204, (path, pre.body)
        assert pre.headers["access-control-allow-origin"] == page_origin
        assert {"GET", "POST"} <= set(pre.headers["access-control-allow-methods"].split(","))
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key"} <= allowed
        assert pre.headers["access-control-max-age"] == "3600"
    # and the actual request gets the origin back, with Location readable by the page
    ids = api.seed(count=1)
    reply = api.client().post("/training-files", {"name": "cors", "conversation_ids": ids},
                              headers={"Origin": page_origin, "Idempotency-Key": "cors-1"})
    assert reply.status == 202
    assert reply.headers["access-control-allow-origin"] == page_origin
    assert "Location" in reply.headers["access-control-expose-headers"]
    api.wait_job(api.client(), reply.json()["job_id"])


def test_preflight_from_another_origin_is_refused(api: Api) -> None:
    for origin in (EVIL, "http://localhost:3000", api.base_url.replace("127.0.0.1", "localhost"), "null"):
        pre = preflight(api.base_url, origin)
        assert pre.status == 403, origin
        assert pre.json()["error"]["code"] == "origin_not_allowed"
        assert not any(h.startswith("access-control-allow") for h in pre.headers), pre.headers
    # a request from there is answered (the token is valid) but without CORS headers: the browser hides it
    got = api.client().get("/training-files", headers={"Origin": EVIL})
    assert got.status == 200 and "access-control-allow-origin" not in got.headers
    # a preflight needs no token, everything else still does
    assert http_request(f"{api.base_url}/training-files", "OPTIONS").status == 401


def test_allowed_origins_come_from_the_environment(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LORAFILES_CORS_ALLOWED_ORIGINS", "http://localhost:3000, https://App.Example.com/")
    second = LocalApiServer(api.service, verifier=make_verifier(api.keys), signing_key=b"test-signing-key-0123456789",
                            port=0, quiet=True)
    try:
        with second:
            assert second.cors_origins == ["http://localhost:3000", "https://app.example.com"]
            assert preflight(second.base_url, "http://localhost:3000").status == 204
            ok = preflight(second.base_url, "https://app.example.com")
            assert ok.status == 204 and ok.headers["access-control-allow-origin"] == "https://app.example.com"
            assert preflight(second.base_url, second.base_url).status == 403  # configured: its own origin is not added
            assert preflight(second.base_url, EVIL).status == 403
    finally:
        cors.set(api.server.cors_origins)  # the first server's origins again (one resolver per process)
    monkeypatch.setenv("LORAFILES_CORS_ALLOWED_ORIGINS", "*")
    assert origins_from_env() == ["*"] and AllowedOrigins(["*"]).allows(EVIL)


def test_origin_settings_are_checked() -> None:
    assert parse_origins(" http://a.example:8080/ ,https://B.example") == ["http://a.example:8080", "https://b.example"]
    assert origins_from_env({}) is None and origins_from_env({"LORAFILES_CORS_ALLOWED_ORIGINS": " "}) is None
    for bad in ("a.example", "ftp://a.example", "http://a.example/path", "http://user@a.example", "http://"):
        with pytest.raises(ValueError):
            normalize_origin(bad)
    rule = AllowedOrigins(["http://a.example"])
    assert rule.allows("http://a.example") and not rule.allows("http://b.example") and not rule.allows(None)


def test_downloads_carry_cors_for_allowed_origins(api: Api) -> None:
    client = api.client()
    ids = api.seed(count=1)
    job = api.wait_job(client, client.post("/training-files", {"name": "dl", "conversation_ids": ids}).json()["job_id"])
    link = client.get(f"/training-files/{job['file_id']}/download", query={"format": "report"}).json()
    mine = http_request(link["url"], headers={"Origin": api.base_url})
    assert mine.status == 200 and mine.headers["access-control-allow-origin"] == api.base_url
    assert json.loads(mine.body)["version"] == 1
    theirs = http_request(link["url"], headers={"Origin": EVIL})
    assert "access-control-allow-origin" not in theirs.headers


def test_the_page_is_served_without_a_token(api: Api) -> None:
    index = http_request(f"{api.base_url}/")
    assert index.status == 200 and index.headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="/web/js/main.js"></script>' in index.body
    assert "script-src 'self'" in index.headers["content-security-policy"]
    for name in ("js/main.js", "js/api.js", "js/conversations.js", "js/files.js", "js/charts.js", "js/dom.js",
                 "styles.css"):
        reply = http_request(f"{api.base_url}/web/{name}")
        assert reply.status == 200, name
        assert reply.headers["content-type"].split(";")[0] in ("text/javascript", "text/css")
        assert reply.headers["x-content-type-options"] == "nosniff"
    for path in ("/web/__init__.py", "/web/", "/web/js", "/web/%2e%2e/cors.py", "/web/js/../../cors.py",
                 "/web/missing.js", "/web/..%5ccors.py"):
        assert http_request(f"{api.base_url}{path}").status == 404, path


def test_local_config_offers_the_dev_token_only_on_loopback(api: Api) -> None:
    url = f"{api.base_url}{web.CONFIG_PATH}"
    assert json.loads(http_request(url).body)["dev_token"] is None  # this server was given none
    token = api.token()
    api.server.dev_token = token
    config = json.loads(http_request(url).body)
    assert config["mode"] == "local" and config["dev_token"] == token and config["api_base"] == ""
    assert api.client().get("/training-files").status == 200
    assert "access-control-allow-origin" not in http_request(url, headers={"Origin": api.base_url}).headers
    # a DNS-rebound name pointing at 127.0.0.1 does not get it
    rebound = json.loads(http_request(url, headers={"Host": "evil.example:80"}).body)
    assert rebound["dev_token"] is None and rebound["why_no_token"]
    # nor another machine
    remote = web.local_config(token, client_ip="192.0.2.7", host="127.0.0.1:8787", server_url=api.base_url)
    assert remote["dev_token"] is None
    assert web.local_config(token, client_ip="::1", host="[::1]:8787", server_url="")["dev_token"] == token
    assert web.local_config(token, client_ip="127.0.0.1", host="localhost", server_url="")["dev_token"] == token
