"""Schema-driven fuzzing (schemathesis) of the live local server, from the committed
docs/openapi.json (test_openapi_and_handlers.py checks it is what the server serves): no 5xx, and
every response (errors included) conforms to the document. Bounded: 25 examples per
operation, positive and negative data, with a valid token and some data in place (a file, a job,
conversations), so that generated requests also reach the 2xx paths of reads."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from apikit import OWNER_A, Api

MAX_EXAMPLES = int(os.environ.get("LORAFILES_FUZZ_EXAMPLES", "25"))  # more for a deeper local run


@pytest.fixture
def fuzz_target(api: Api) -> Api:
    client = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 4)
    job = client.post("/training-files", {"name": "fuzz", "conversation_ids": ids[:2]}).json()
    api.wait_job(client, job["job_id"])
    return api


# Loaded at collection (one test per operation); the base URL is the live server's, per call.
# (schemathesis.pytest.from_fixture would load it from the server, but its lazy loader does not
# work with pytest 9.2: it sets the removed `Function._nodeid`.)
schema = schemathesis.openapi.from_path(str(Path(__file__).resolve().parents[2] / "docs" / "openapi.json"))


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_api_conforms_to_its_openapi(case, fuzz_target: Api) -> None:
    case.call_and_validate(base_url=fuzz_target.base_url,
                           headers={"Authorization": f"Bearer {fuzz_target.token(OWNER_A)}"},
                           checks=[not_a_server_error, response_schema_conformance])
