"""The OpenAPI document (committed, served, honest) and the thin Lambda handlers."""
from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

from apikit import OWNER_A, OWNER_B, Api

from lorafiles.api import openapi
from lorafiles.api.app import PUBLIC_PATHS, app
from lorafiles.api.local_server import to_event
from lorafiles.pipeline.local import LambdaContext, load_handler

REPO = Path(__file__).resolve().parents[2]


def test_committed_openapi_is_current() -> None:
    committed = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert committed == openapi.document(), "docs/openapi.json is stale: run python -m lorafiles.api.openapi"
    assert openapi.main(["--check"]) == 0


def test_served_openapi_is_the_committed_one(api: Api) -> None:
    assert api.anonymous.get("/openapi.json").json() == openapi.document()


def test_every_operation_is_secured_and_declares_its_errors() -> None:
    doc = openapi.document()
    assert doc["info"]["title"] == "lorafiles API" and doc["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) == 8
    for path, method, op in operations:
        assert op["tags"] and op["operationId"] and op["summary"]
        for status in ("401", "422"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == error_ref, (path, status)
        if "{" in path:
            assert "404" in op["responses"], path
    assert "409" in doc["paths"]["/training-files/{file_id}/conversations"]["post"]["responses"]
    assert "202" in doc["paths"]["/training-files"]["post"]["responses"]


def test_serverless_routes_match_the_resolver() -> None:
    """Each httpApi event of the `api` function in serverless.yml is a route of the resolver."""
    text = (REPO / "serverless.yml").read_text()
    declared = set(re.findall(r"-\s*httpApi:\s*'(GET|POST|PUT|PATCH|DELETE) (/[^']*)'", text))
    declared = {(m, p) for m, p in declared if not p.startswith("/webhooks/")}
    routes = {(r.method, r.path.replace("<", "{").replace(">", "}")) for r in app._static_routes + app._dynamic_routes}
    routes = {(m, p) for m, p in routes if p not in PUBLIC_PATHS or p == "/openapi.json"}
    assert declared == routes


def test_lambda_api_handler_resolves_v2_events(api: Api) -> None:
    handler = load_handler("api")
    token = api.token(OWNER_A)
    event = to_event("GET", "/training-files", [("Authorization", f"Bearer {token}")], b"", "1.2.3.4", "api.example")
    result = handler(event, LambdaContext(function_name="api"))
    assert result["statusCode"] == 200 and json.loads(result["body"]) == {"items": []}
    event = to_event("GET", "/jobs/" + str(uuid.uuid4()), [], b"", "1.2.3.4", "api.example")
    result = handler(event, LambdaContext(function_name="api"))
    assert result["statusCode"] == 401 and json.loads(result["body"])["error"]["code"] == "unauthorized"


def test_presign_download_handler(api: Api) -> None:
    client = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 1)
    job = api.wait_job(client, client.post("/training-files", {"name": "p", "conversation_ids": ids}).json()["job_id"])
    handler = load_handler("presign-download")
    result = handler({"owner_id": OWNER_A, "file_id": job["file_id"], "format": "jsonl"},
                     LambdaContext(function_name="presign-download"))
    assert result["filename"] == "p.jsonl" and result["version"] == 1 and result["url"].startswith(api.base_url)
    try:
        handler({"owner_id": OWNER_B, "file_id": job["file_id"], "format": "json"},
                LambdaContext(function_name="presign-download"))
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "NotFound"
    else:
        raise AssertionError("another owner's file was presigned")
