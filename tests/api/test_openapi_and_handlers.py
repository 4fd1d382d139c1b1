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
    assert len(operations) == 9
    for path, method, op in operations:
        assert op["tags"] and op["operationId"] and op["summary"]
        for status in ("401", "422"):
            assert op["responses"][status]["content"]["application/json"]["schema"] == error_ref, (path, status)
        if "{" in path:
            assert "404" in op["responses"], path
        assert op["responses"]["503"]["content"]["application/json"]["schema"] == error_ref, path  # `transient`
    assert "409" in doc["paths"]["/training-files/{file_id}/conversations"]["post"]["responses"]
    diff = doc["paths"]["/training-files/{file_id}/diff"]["get"]
    assert diff["responses"]["500"]["content"]["application/json"]["schema"] == error_ref  # stored_data_invalid
    assert {p["name"]: p["required"] for p in diff["parameters"]} == {"file_id": True, "from_version": True,
                                                                      "to_version": True}
    for path in ("/training-files", "/training-files/{file_id}/conversations"):
        accepted = doc["paths"][path]["post"]["responses"]["202"]
        assert accepted["headers"]["Location"]["schema"]["type"] == "string", path
        assert accepted["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/JobAccepted"}
    listing = doc["paths"]["/training-files"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {"limit", "offset", "cursor"}
    page = doc["components"]["schemas"]["TrainingFileList"]["properties"]
    assert set(page) == set(doc["components"]["schemas"]["ConversationPage"]["properties"]) - {"training_files"}


def test_the_202_location_header_is_sent_and_exposed_by_cors(api: Api) -> None:
    client = api.client(OWNER_A)
    reply = client.post("/training-files", {"name": "loc", "conversation_ids": api.seed(OWNER_A, 1)})
    assert reply.status == 202 and reply.headers["location"] == reply.json()["links"]["job"]
    assert "Location" in (REPO / "serverless.yml").read_text().split("exposedResponseHeaders:")[1].split("\n")[0]
    api.wait_job(client, reply.json()["job_id"])


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
    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}
    event = to_event("GET", "/jobs/" + str(uuid.uuid4()), [], b"", "1.2.3.4", "api.example")
    result = handler(event, LambdaContext(function_name="api"))
    assert result["statusCode"] == 401 and json.loads(result["body"])["error"]["code"] == "unauthorized"
