"""CORS of the API: which browser origins may call it (Powertools' CORSConfig on the resolver).

* `LORAFILES_CORS_ALLOWED_ORIGINS`: comma-separated origins (`https://app.example.com`,
  `http://localhost:3000`), or `*` for any. Unset: none in the Lambda function, where API
  Gateway's `httpApi.cors` (serverless.yml) answers preflights before the function runs; the
  local server (`lorafiles serve`) then allows only its own origin.
* A preflight (`OPTIONS` with `Access-Control-Request-Method`) needs no token: from an allowed
  origin it is `204` with the `Access-Control-Allow-*` headers (Powertools' answer for OPTIONS);
  from any other origin it is `403 origin_not_allowed` without them, so the browser refuses.
* Every response to an allowed origin carries `Access-Control-Allow-Origin: <that origin>` and
  exposes `Location` and `X-Request-Id`; other origins get no CORS headers (the browser hides it).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler.api_gateway import CORSConfig

ENV = "LORAFILES_CORS_ALLOWED_ORIGINS"
ALLOW_HEADERS = ["Idempotency-Key", "X-Request-Id"]  # besides Powertools' Authorization, Content-Type, ...
EXPOSE_HEADERS = ["Location", "X-Request-Id"]
MAX_AGE = 3600


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` as browsers send it (lower case, no path, no trailing slash)."""
    text = origin.strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/") \
            or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"{ENV}: {origin!r} is not an origin (scheme://host[:port])")
    return f"{parts.scheme}://{parts.netloc}".lower()


def parse_origins(text: str | None) -> list[str]:
    return [normalize_origin(o) for o in (text or "").split(",") if o.strip()]


def origins_from_env(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The configured origins, or None when the variable is unset (or empty)."""
    value = (os.environ if env is None else env).get(ENV, "")
    return parse_origins(value) or None


class AllowedOrigins(CORSConfig):
    """Powertools' CORSConfig with the allowed origins settable at run time (the local server
    learns its own origin only once it has bound its port)."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        super().__init__(allow_headers=ALLOW_HEADERS, expose_headers=EXPOSE_HEADERS, max_age=MAX_AGE)
        self.set(origins)

    def set(self, origins: Iterable[str]) -> None:
        self._allowed_origins = [normalize_origin(o) for o in origins]

    @property
    def origins(self) -> list[str]:
        return list(self._allowed_origins)

    def allows(self, origin: str | None) -> bool:
        return bool(origin) and ("*" in self._allowed_origins or origin in self._allowed_origins)


cors = AllowedOrigins(origins_from_env() or ())


def is_preflight(method: str, headers: Mapping[str, str]) -> bool:
    return method.upper() == "OPTIONS" and bool(headers.get("access-control-request-method"))
