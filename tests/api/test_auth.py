"""Authentication over real HTTP: every route needs a valid Supabase user JWT (401 otherwise),
for asymmetric (ES256/RS256 via the JWKS and supabase-py's get_claims) and legacy HS256 tokens.
Plus the verifier's JWKS fetching and caching, without HTTP."""
from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from apikit import HS_SECRET, ISSUER, OWNER_A, Api, Client, make_jwt
from lorafiles.api.auth import AuthConfig, TokenVerifier
from lorafiles.api.errors import Unauthorized
from lorafiles.errors import TransientError

ROUTES = [  # (method, path, body): every operation of the API
    ("POST", "/selections/validate", {"conversation_ids": ["x"], "name": "n"}),
    ("POST", "/training-files", {"name": "n", "conversation_ids": ["x"]}),
    ("POST", "/training-files/00000000-0000-4000-8000-000000000001/conversations", {"conversation_ids": ["x"]}),
    ("GET", "/training-files", None),
    ("GET", "/training-files/00000000-0000-4000-8000-000000000001", None),
    ("GET", "/training-files/00000000-0000-4000-8000-000000000001/download?format=json", None),
    ("GET", "/training-files/00000000-0000-4000-8000-000000000001/diff?from_version=1&to_version=2", None),
    ("GET", "/jobs/00000000-0000-4000-8000-000000000001", None),
    ("GET", "/conversations", None),
]


def bad_tokens(api: Api) -> dict[str, tuple[str | None, str]]:
    """name -> (Authorization header value or None, expected details.reason)."""
    k = api.keys
    past = int(time.time()) - 60
    other_ec = ec.generate_private_key(ec.SECP256R1())
    bearer = "Bearer "
    return {
        "no token": (None, "missing_token"),
        "empty": ("", "missing_token"),
        "not bearer": ("Basic dXNlcjpwYXNz", "malformed"),
        "bearer without token": ("Bearer ", "malformed"),
        "garbage": (bearer + "not-a-jwt", "malformed"),
        "two parts": (bearer + "abc.def", "malformed"),
        "bad base64 payload": (bearer + make_jwt(k).split(".")[0] + ".%%%." + make_jwt(k).split(".")[2], "malformed"),
        "ES256 expired": (bearer + make_jwt(k, alg="ES256", exp=past), "expired"),
        "RS256 expired": (bearer + make_jwt(k, alg="RS256", exp=past), "expired"),
        "HS256 expired": (bearer + make_jwt(k, alg="HS256", exp=past), "expired"),
        "ES256 wrong audience": (bearer + make_jwt(k, alg="ES256", aud="anon"), "bad_audience"),
        "HS256 wrong audience": (bearer + make_jwt(k, alg="HS256", aud="service"), "bad_audience"),
        "ES256 no audience": (bearer + make_jwt(k, alg="ES256", aud=None), "bad_audience"),
        "ES256 wrong issuer": (bearer + make_jwt(k, alg="ES256", iss="https://other.supabase.co/auth/v1"),
                               "bad_issuer"),
        "HS256 wrong issuer": (bearer + make_jwt(k, alg="HS256", iss="supabase"), "bad_issuer"),
        "ES256 bad signature": (bearer + make_jwt(k, alg="ES256", key=other_ec), "bad_signature"),
        "ES256 tampered payload": (bearer + _tamper(make_jwt(k, alg="ES256")), "bad_signature"),
        "RS256 tampered payload": (bearer + _tamper(make_jwt(k, alg="RS256")), "bad_signature"),
        "HS256 bad signature": (bearer + make_jwt(k, alg="HS256", key="another-secret-another-secret-xx"),
                                "bad_signature"),
        "ES256 unknown kid": (bearer + make_jwt(k, alg="ES256", kid="rotated-away"), "unknown_key"),
        "ES256 no kid": (bearer + make_jwt(k, alg="ES256", kid=None), "unknown_key"),
        "ES256 signed, RSA kid": (bearer + make_jwt(k, alg="ES256", kid=k.rsa_kid), "bad_signature"),
        "alg none": (bearer + jwt.encode({"sub": OWNER_A, "aud": "authenticated", "iss": ISSUER,
                                          "exp": int(time.time()) + 60}, None, algorithm="none"),
                     "unsupported_algorithm"),
        "HS512": (bearer + jwt.encode({"sub": OWNER_A, "aud": "authenticated", "iss": ISSUER,
                                       "exp": int(time.time()) + 60}, HS_SECRET, algorithm="HS512"),
                  "unsupported_algorithm"),
        "not a user id": (bearer + make_jwt(k, "service-account"), "bad_subject"),
        "no subject": (bearer + make_jwt(k, sub=None), "bad_subject"),
        "not yet valid": (bearer + make_jwt(k, nbf=int(time.time()) + 600), "not_yet_valid"),
    }


def _tamper(token: str) -> str:
    header, payload, sig = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["sub"] = "0b0b0b0b-0000-4000-8000-00000000000b"
    forged = jwt.utils.base64url_encode(jwt.api_jws.json.dumps(claims).encode()).decode()
    return f"{header}.{forged}.{sig}"


def call(api: Api, method: str, path: str, body: Any, authorization: str | None) -> Any:
    client = Client(api.base_url, None)
    headers = {} if authorization is None else {"Authorization": authorization}
    return client.request(method, path, json_body=body, headers=headers, token=None)


def test_the_auth_matrix_is_401_on_every_route(api: Api) -> None:
    cases = bad_tokens(api)
    for method, path, body in ROUTES:
        for name, (authorization, reason) in cases.items():
            reply = call(api, method, path, body, authorization)
            assert reply.status == 401, (name, method, path, reply.body)
            assert reply.error["code"] == "unauthorized", name
            assert reply.error["details"] == {"reason": reason}, (name, reply.error)
            assert reply.headers["www-authenticate"].startswith("Bearer"), name


@pytest.mark.parametrize("alg", ["ES256", "RS256", "HS256"])
def test_valid_tokens_are_accepted(api: Api, alg: str) -> None:
    reply = api.client(OWNER_A, alg).get("/training-files")
    assert reply.status == 200, reply.body
    assert reply.json() == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}


def test_audience_may_be_a_list(api: Api) -> None:
    token = make_jwt(api.keys, aud=["authenticated", "other"])
    reply = Client(api.base_url, token).get("/training-files")
    assert reply.status == 200 and reply.json() == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}
    # and the caller is the token's subject: a file it creates is listed as its own
    with api.service.db.connection() as conn:
        conn.execute("insert into lora_training_files (owner_id, name, target_model, status) "
                     "values (%s, 'mine', 'm', 'ready'), (%s, 'theirs', 'm', 'ready')",
                     (OWNER_A, "0b0b0b0b-0000-4000-8000-00000000000b"))
    names = [f["name"] for f in Client(api.base_url, token).get("/training-files").json()["items"]]
    assert names == ["mine"]


def test_authentication_comes_before_request_validation(api: Api) -> None:
    # an unauthenticated caller learns nothing about the request shape: the same 401 body as any
    # other bad token, no validation details, and nothing is created
    for method, path, body, authorization, reason in [
            ("POST", "/training-files", {"bogus": True}, None, "missing_token"),
            ("GET", "/conversations?limit=100000", None, "Bearer nope", "malformed"),
            ("GET", "/jobs/not-a-uuid", None, None, "missing_token")]:
        reply = call(api, method, path, body, authorization)
        assert reply.status == 401, (path, reply.body)
        assert reply.error["code"] == "unauthorized" and reply.error["details"] == {"reason": reason}, reply.error
        assert "bogus" not in reply.body.decode() and "limit" not in reply.body.decode()
    with api.service.db.connection() as conn:
        assert conn.execute("select count(*) as n from lora_training_jobs").fetchone()["n"] == 0
        assert conn.execute("select count(*) as n from lora_training_files").fetchone()["n"] == 0


def test_openapi_and_swagger_ui_are_public(api: Api) -> None:
    spec = api.anonymous.get("/openapi.json")
    assert spec.status == 200 and spec.json()["info"]["title"] == "lorafiles API"
    ui = api.anonymous.get("/docs")
    assert ui.status == 200 and ui.headers["content-type"].startswith("text/html")
    assert b"swagger" in ui.body.lower()


def test_unknown_route_needs_auth_then_is_404(api: Api) -> None:
    anonymous = api.anonymous.get("/nowhere")
    assert anonymous.status == 401 and anonymous.error["code"] == "unauthorized"
    assert anonymous.error["details"] == {"reason": "missing_token"}
    reply = api.client().get("/nowhere")
    assert reply.status == 404 and reply.error["code"] == "route_not_found"


# ---------------------------------------------------------------------------- the verifier, without HTTP
class FakeJwks:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks, self.calls = jwks, 0
        self.fail = False

    def __call__(self, url: str) -> dict[str, Any]:
        assert url == "https://testref.supabase.co/auth/v1/.well-known/jwks.json"
        self.calls += 1
        if self.fail:
            raise OSError("network down")
        return self.jwks


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_jwks_is_fetched_from_the_issuer_and_cached(keys) -> None:
    fetch, clock = FakeJwks(keys.jwks), Clock()
    verifier = TokenVerifier(AuthConfig.from_env({"LORAFILES_JWT_ISSUER": ISSUER}), fetch=fetch, clock=clock)
    assert verifier.config.jwks_url == ISSUER + "/.well-known/jwks.json"
    assert verifier.config.hs256_secret is None
    for _ in range(3):
        assert verifier.authenticate("Bearer " + make_jwt(keys)).owner_id == OWNER_A
    assert fetch.calls == 1
    # an unknown kid right after a fetch does not refetch (forged kids cannot hammer the endpoint)
    with pytest.raises(Unauthorized) as err:
        verifier.authenticate("Bearer " + make_jwt(keys, kid="new-key"))
    assert err.value.details == {"reason": "unknown_key"} and fetch.calls == 1
    # later, a rotated-in key is picked up by one refetch
    rotated = ec.generate_private_key(ec.SECP256R1())
    fetch.jwks = {"keys": keys.jwks["keys"] + [{**jwt.algorithms.ECAlgorithm.to_jwk(rotated.public_key(), as_dict=True),
                                                "kid": "new-key", "alg": "ES256"}]}
    clock.now += 31
    assert verifier.authenticate("Bearer " + make_jwt(keys, key=rotated, kid="new-key")).owner_id == OWNER_A
    assert fetch.calls == 2
    # after the TTL the set is refreshed; when the endpoint is down we cannot verify: 503, not 401
    clock.now += 601
    fetch.fail = True
    with pytest.raises(TransientError):
        verifier.authenticate("Bearer " + make_jwt(keys, exp=int(clock.now) + 60))


def test_hs256_is_refused_without_a_secret_and_never_goes_to_the_auth_server(keys) -> None:
    verifier = TokenVerifier(AuthConfig(issuer=ISSUER, jwks=keys.jwks))
    with pytest.raises(Unauthorized) as err:
        verifier.authenticate("Bearer " + make_jwt(keys, alg="HS256"))
    assert err.value.details == {"reason": "unsupported_algorithm"}


def test_config_from_env() -> None:
    config = AuthConfig.from_env({"SUPABASE_URL": "https://abc.supabase.co/", "LORAFILES_JWT_AUDIENCE": "aud2",
                                  "LORAFILES_SUPABASE_JWT_SECRET": "s" * 32,
                                  "LORAFILES_SUPABASE_JWKS": '{"keys": []}'})
    assert config.issuer == "https://abc.supabase.co/auth/v1"
    assert config.audience == "aud2" and config.hs256_secret == "s" * 32
    assert config.jwks == {"keys": []} and config.jwks_url is None
    with pytest.raises(RuntimeError):
        AuthConfig.from_env({})


def test_asymmetric_signatures_go_through_supabase_get_claims(keys) -> None:
    verifier = TokenVerifier(AuthConfig(issuer=ISSUER, jwks=keys.jwks))
    real, seen = verifier._gotrue.get_claims, []

    def spy(jwt: str, jwks: dict) -> Any:
        seen.append([k["kid"] for k in jwks["keys"]])
        return real(jwt=jwt, jwks=jwks)

    verifier._gotrue.get_claims = spy
    verifier.authenticate("Bearer " + make_jwt(keys, alg="ES256"))
    verifier.authenticate("Bearer " + make_jwt(keys, alg="RS256"))
    assert seen == [[keys.ec_kid], [keys.rsa_kid]]  # only ever the token's own key: no network lookup


def test_unreadable_legacy_secret_keeps_asymmetric_auth_working(keys, monkeypatch) -> None:
    from aws_lambda_powertools.utilities import parameters

    def missing(name: str, **kw: Any) -> str:
        raise RuntimeError(f"secret {name} not found")

    monkeypatch.setattr(parameters, "get_secret", missing)
    config = AuthConfig.from_env({"LORAFILES_JWT_ISSUER": ISSUER, "LORAFILES_SUPABASE_JWT_SECRET_NAME": "lorafiles/x",
                                  "LORAFILES_SUPABASE_JWKS": json.dumps(keys.jwks)})
    assert config.hs256_secret is None
    verifier = TokenVerifier(config)
    assert verifier.authenticate("Bearer " + make_jwt(keys)).owner_id == OWNER_A
    with pytest.raises(Unauthorized):
        verifier.authenticate("Bearer " + make_jwt(keys, alg="HS256"))
