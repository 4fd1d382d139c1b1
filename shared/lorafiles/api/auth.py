"""Supabase user JWTs, verified in the function. The ONE place that authenticates a request.

* Asymmetric tokens (ES256 / RS256, with a `kid`): the key comes from the project's JWKS
  (`LORAFILES_SUPABASE_JWKS` JSON, or fetched from `LORAFILES_SUPABASE_JWKS_URL` and cached), the
  signature and `exp` are checked by supabase-py's `auth.get_claims(jwt, jwks=...)`. We only ever
  hand it a JWKS that contains the token's key, so it never calls the Auth server (given an
  unknown kid or an HS256 token it would: see `supabase_auth/_sync/gotrue_client.py`).
* Legacy HS256 tokens: verified locally with PyJWT against `LORAFILES_SUPABASE_JWT_SECRET` (or
  the Secrets Manager secret named by `LORAFILES_SUPABASE_JWT_SECRET_NAME`); refused when no
  secret is configured. (get_claims would call the Auth server's /user for them.)
* Then, for both: `exp` (and `nbf`; `exp`, `nbf` and `iat` must be numbers), `aud` ==
  `LORAFILES_JWT_AUDIENCE` (default `authenticated`; get_claims does not check it), `iss` ==
  `LORAFILES_JWT_ISSUER` (default `$SUPABASE_URL/auth/v1`), `role` == `authenticated` (the anon
  and service_role keys, and tokens of other database roles, are not users), and `sub` a UUID:
  the owner.

Every failure is `Unauthorized` (401) with `details.reason` one of: missing_token, malformed,
unsupported_algorithm, unknown_key, bad_signature, expired, not_yet_valid, bad_audience,
bad_issuer, bad_role, bad_subject.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import jwt

from ..errors import TransientError
from .errors import Unauthorized

ASYMMETRIC = {"ES256": "EC", "RS256": "RSA"}  # alg -> JWK key type
DEFAULT_AUDIENCE = "authenticated"
USER_ROLE = "authenticated"  # Supabase's role claim of a signed-in user's access token


@dataclass(frozen=True)
class Principal:
    owner_id: str
    claims: dict[str, Any]


@dataclass
class AuthConfig:
    issuer: str
    audience: str = DEFAULT_AUDIENCE
    jwks: dict[str, Any] | None = None  # static JWKS (local, tests)
    jwks_url: str | None = None  # fetched and cached
    hs256_secret: str | None = None  # legacy projects
    jwks_ttl: float = 600.0
    jwks_min_refresh: float = 30.0  # an unknown kid refetches at most this often
    leeway: float = 0.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "AuthConfig":
        env = dict(os.environ if env is None else env)
        issuer = env.get("LORAFILES_JWT_ISSUER") or (
            env["SUPABASE_URL"].rstrip("/") + "/auth/v1" if env.get("SUPABASE_URL") else "")
        if not issuer:
            raise RuntimeError("set LORAFILES_JWT_ISSUER (https://<ref>.supabase.co/auth/v1) or SUPABASE_URL")
        jwks = json.loads(env["LORAFILES_SUPABASE_JWKS"]) if env.get("LORAFILES_SUPABASE_JWKS") else None
        jwks_url = env.get("LORAFILES_SUPABASE_JWKS_URL") or None
        if jwks is None and jwks_url is None and issuer.startswith("https://"):
            jwks_url = issuer.rstrip("/") + "/.well-known/jwks.json"
        secret = env.get("LORAFILES_SUPABASE_JWT_SECRET") or None
        if secret is None and env.get("LORAFILES_SUPABASE_JWT_SECRET_NAME"):
            secret = _secret_from_secrets_manager(env["LORAFILES_SUPABASE_JWT_SECRET_NAME"])
        return cls(issuer=issuer, audience=env.get("LORAFILES_JWT_AUDIENCE") or DEFAULT_AUDIENCE, jwks=jwks,
                   jwks_url=jwks_url, hs256_secret=secret)


def _secret_from_secrets_manager(name: str) -> str | None:
    """The legacy secret; when it cannot be read, HS256 tokens are refused (logged) while
    asymmetric tokens keep working: a project without a legacy secret must not lose all auth."""
    from aws_lambda_powertools.utilities import parameters

    from ..observability import logger

    try:
        return str(parameters.get_secret(name))  # cache: POWERTOOLS_PARAMETERS_MAX_AGE
    except Exception as exc:  # noqa: BLE001 - missing secret, no permission, network
        logger.error("legacy JWT secret unreadable; HS256 tokens will be refused",
                     extra={"secret_name": name, "error": str(exc)})
        return None


def _fetch_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - configured https URL
        return json.loads(resp.read())


@dataclass
class _KeyCache:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float = 0.0


class TokenVerifier:
    def __init__(self, config: AuthConfig, *, fetch: Callable[[str], dict[str, Any]] = _fetch_json,
                 clock: Callable[[], float] = time.time) -> None:
        from supabase_auth import SyncGoTrueClient

        self.config, self._fetch, self._clock = config, fetch, clock
        self._static = {k["kid"]: k for k in (config.jwks or {}).get("keys", []) if k.get("kid")}
        self._cache = _KeyCache()
        self._lock = threading.Lock()
        # supabase-py's Auth client: only its offline get_claims path is used (see module doc).
        self._gotrue = SyncGoTrueClient(url=config.issuer, auto_refresh_token=False, persist_session=False)

    # ------------------------------------------------------------------ entry point
    def authenticate(self, authorization: str | None) -> Principal:
        token = _bearer(authorization)
        try:
            header = jwt.get_unverified_header(token)
            jwt.decode(token, options={"verify_signature": False})  # structure and JSON payload
        except jwt.PyJWTError:
            raise _fail("malformed", "the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg == "HS256":
            claims = self._verify_hs256(token)
        elif alg in ASYMMETRIC:
            claims = self._verify_asymmetric(token, header)
        else:
            raise _fail("unsupported_algorithm", f"tokens signed with {alg!r} are not accepted")
        return Principal(owner_id=self._check_claims(claims), claims=claims)

    # ------------------------------------------------------------------ signatures
    def _verify_hs256(self, token: str) -> dict[str, Any]:
        if not self.config.hs256_secret:
            raise _fail("unsupported_algorithm", "HS256 tokens are not accepted (no JWT secret configured)")
        try:
            return jwt.decode(token, self.config.hs256_secret, algorithms=["HS256"],
                              options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                                       "verify_aud": False, "verify_iss": False})
        except jwt.InvalidSignatureError:
            raise _fail("bad_signature", "the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise _fail("malformed", "the bearer token is not a well-formed JWT") from None

    def _verify_asymmetric(self, token: str, header: dict[str, Any]) -> dict[str, Any]:
        from supabase_auth.errors import AuthError

        alg, kid = header["alg"], header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _fail("unknown_key", "the token has no key id (kid)")
        jwk = self._key(kid)
        if jwk is None:
            raise _fail("unknown_key", "the token's key id is not in the project's JWKS")
        if jwk.get("kty") != ASYMMETRIC[alg] or jwk.get("alg") not in (None, alg) or jwk.get("use") not in (None, "sig"):
            raise _fail("bad_signature", f"key {kid} cannot verify {alg} signatures")
        try:
            result = self._gotrue.get_claims(jwt=token, jwks={"keys": [jwk]})
        except AuthError as exc:  # AuthInvalidJwtError: "JWT has expired", "Invalid JWT signature", structure
            text = str(exc).lower()
            if "expir" in text:
                raise _fail("expired", "the token has expired") from None
            if "signature" in text:
                raise _fail("bad_signature", "the token's signature does not verify") from None
            raise _fail("malformed", "the bearer token is not a well-formed Supabase JWT") from None
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            raise _fail("bad_signature", "the token's signature does not verify") from None
        if not result:
            raise _fail("bad_signature", "the token's signature does not verify")
        return dict(result["claims"])

    def _key(self, kid: str) -> dict[str, Any] | None:
        if kid in self._static:
            return self._static[kid]
        url = self.config.jwks_url
        if not url:
            return None
        with self._lock:
            now = self._clock()
            age = now - self._cache.fetched_at
            fresh = age < self.config.jwks_ttl
            if kid in self._cache.keys and fresh:
                return self._cache.keys[kid]
            if fresh and age < self.config.jwks_min_refresh:
                return None  # unknown kid, keys just fetched: do not let forged kids hammer the endpoint
            try:
                keys = self._fetch(url).get("keys", [])
            except Exception as exc:  # noqa: BLE001 - network, HTTP or JSON: we cannot verify now
                raise TransientError("the signing keys could not be fetched; try again") from exc
            self._cache = _KeyCache({k["kid"]: k for k in keys if isinstance(k, dict) and k.get("kid")}, now)
            return self._cache.keys.get(kid)

    # ------------------------------------------------------------------ claims
    def _check_claims(self, claims: dict[str, Any]) -> str:
        now, leeway = self._clock(), self.config.leeway
        exp = claims.get("exp")
        if not _is_time(exp):
            raise _fail("malformed", "the token has no expiry (exp) that is a number")
        for name in ("nbf", "iat"):
            if name in claims and not _is_time(claims[name]):
                raise _fail("malformed", f"the token's {name} is not a number")
        if exp <= now - leeway:
            raise _fail("expired", "the token has expired")
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + leeway:
            raise _fail("not_yet_valid", "the token is not valid yet")
        aud = claims.get("aud")
        audiences = aud if isinstance(aud, list) else [aud]
        if self.config.audience not in audiences:
            raise _fail("bad_audience", f"the token's audience is not {self.config.audience!r}")
        if claims.get("iss") != self.config.issuer:
            raise _fail("bad_issuer", "the token was not issued by this project's Auth server")
        if claims.get("role") != USER_ROLE:  # anon / service_role keys and other roles are not users
            raise _fail("bad_role", f"the token's role is not {USER_ROLE!r}")
        sub = claims.get("sub")
        try:
            return str(uuid.UUID(sub)) if isinstance(sub, str) else _bad_subject()
        except ValueError:
            return _bad_subject()


def _is_time(value: Any) -> bool:
    """A NumericDate: an int or float (not a bool, a string, NaN or infinite)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _bad_subject() -> str:
    raise _fail("bad_subject", "the token's subject (sub) is not a user id")


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.strip():
        raise _fail("missing_token", "an Authorization: Bearer <Supabase access token> header is required")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _fail("malformed", "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _fail(reason: str, message: str) -> Unauthorized:
    return Unauthorized(message, details={"reason": reason})


# ---------------------------------------------------------------------- process-wide verifier
_verifier: TokenVerifier | None = None
_verifier_lock = threading.Lock()


def get_verifier() -> TokenVerifier:
    """The verifier of this process: built from the environment once (a Lambda container)."""
    global _verifier
    with _verifier_lock:
        if _verifier is None:
            _verifier = TokenVerifier(AuthConfig.from_env())
        return _verifier


def use_verifier(verifier: TokenVerifier | None) -> None:
    """Make the API use `verifier` (local server, tests); None: back to the environment's."""
    global _verifier
    with _verifier_lock:
        _verifier = verifier


def make_token(secret: str, owner_id: str, *, issuer: str, audience: str = DEFAULT_AUDIENCE,
               ttl: int = 3600, **extra: Any) -> str:
    """An HS256 user token as Supabase issues them (local server's dev token, tests)."""
    now = int(time.time())
    claims = {"sub": owner_id, "aud": audience, "iss": issuer, "role": "authenticated", "iat": now,
              "exp": now + ttl, **extra}
    return jwt.encode(claims, secret, algorithm="HS256")
