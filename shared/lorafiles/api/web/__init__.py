"""The "LoRA Training JSON Files" page: static files served by `lorafiles serve` (local_server.py).

    /                    index.html
    /web/<file>          the page's CSS and ES modules (this folder; no build step)
    /local/config.json   local mode only: the server's dev token, to loopback callers

The page calls nothing but the public HTTP API (docs/API.md) with a bearer token, so the app's
Next.js page can do all it does. In local mode it offers the server's dev token, which it reads
from `/local/config.json`: an endpoint of the local server only (never of the Lambda function),
that hands the token out only to a caller on a loopback address asking for a loopback host name
(no other machine, and no DNS-rebound site, gets it), and sends no CORS headers (no other origin's
page can read it).
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import jwt

ROOT = Path(__file__).resolve().parent
CONFIG_PATH = "/local/config.json"
PREFIX = "/web/"
TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml", ".txt": "text/plain; charset=utf-8"}
HEADERS = {  # the page uses no inline script or style, and no other origin
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
                               "form-action 'none'",
}
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_page_path(path: str) -> bool:
    return path in ("/", "/index.html", CONFIG_PATH) or path.startswith(PREFIX)


def static_file(path: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a page file, or None (unknown, outside this folder, not a page type)."""
    rel = "index.html" if path in ("/", "/index.html") else path[len(PREFIX):]
    if not rel or "\\" in rel or "\x00" in rel or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    file = (ROOT / rel).resolve()
    if ROOT not in file.parents or file.suffix not in TYPES or not file.is_file():
        return None
    return file.read_bytes(), TYPES[file.suffix]


def _loopback_ip(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.split("%")[0]).is_loopback
    except ValueError:
        return False


def _loopback_host(host: str | None) -> bool:
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOOPBACK_NAMES


def local_config(dev_token: str | None, *, client_ip: str, host: str | None, server_url: str) -> dict[str, Any]:
    """What the page learns in local mode. `dev_token` is null unless the caller is on this machine."""
    offered = bool(dev_token) and _loopback_ip(client_ip) and _loopback_host(host)
    claims = jwt.decode(dev_token, options={"verify_signature": False}) if offered else {}
    return {
        "mode": "local",
        "api_base": "",  # the API is this server: same origin
        "server": server_url,
        "dev_token": dev_token if offered else None,
        "dev_token_owner": claims.get("sub"),
        "dev_token_expires_at": claims.get("exp"),
        "why_no_token": None if offered else (
            "this server was started without a dev token" if not dev_token else
            "the dev token is only offered to a browser on the server's machine at a loopback address"),
    }
