"""Item 9 of issue 10: an end-to-end deployment rehearsal that runs here.

After `serverless package`, every handler is loaded from the packaged zip alone (CPython 3.13,
`-I -S`: no site-packages; sys.path as Lambda builds it from the template's PYTHONPATH), one
process per function like a Lambda container, with the function's environment from the
generated template. Each is invoked with real event shapes: API Gateway HTTP API v2 from a
browser (after the CORS preflight the API answers from the template's CorsConfiguration), Step
Functions task payloads (the ASL's Parameters), the Supabase Database Webhook, EventBridge
through SQS, and the schedule. They run against PostgreSQL (the database URL is read from SSM as
in AWS) and moto's S3 / SSM / Step Functions over HTTP.

The package is built for x86_64 (`--param architecture=x86_64`) so its native wheels run on
this machine; the deployed arm64 package differs only in those wheels (checked below: same files
otherwise). Every AWS call the handlers make is recorded and checked against the function's own
IAM role in the template, both ways.
"""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("rehearsal_driver.py")


def _python313() -> str | None:
    """A CPython 3.13 interpreter itself (not a pyenv shim: the functions run with a minimal PATH)."""
    candidates = [os.environ.get("LORAFILES_PYTHON313"), shutil.which("python3.13"), "/usr/bin/python3.13",
                  *sorted(str(p) for p in Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")).glob(
                      "versions/3.13*/bin/python3.13"))]
    for candidate in filter(None, candidates):
        try:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.executable)"], capture_output=True,
                                 text=True, timeout=30)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return None


PY313 = _python313()
OUT = ".serverless-x86_64"
REGION, ACCOUNT = "us-east-1", "123456789012"
ISSUER = "https://rehearsal.supabase.co/auth/v1"
OWNER = "0c0c0c0c-0000-4000-8000-0000000000c1"
ORIGIN = "https://app.example.com"
WEBHOOK_SECRET = "rehearsal-webhook-secret"

pytestmark = [
    pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (CI installs it)"),
    pytest.mark.skipif(PY313 is None, reason="no python3.13 on PATH: the Lambda runtime's Python is needed"),
]


# ---------------------------------------------------------------------------- the package
@dataclass
class Package:
    zip_path: Path
    bundle: Path
    template: dict[str, Any]

    @property
    def resources(self) -> dict[str, Any]:
        return self.template["Resources"]

    def functions(self) -> dict[str, dict[str, Any]]:
        """{function name (functions/<name>): its AWS::Lambda::Function resource (with its logical id)}."""
        return {r["Properties"]["Handler"].split("/")[1]: {"id": rid, **r}
                for rid, r in self.resources.items() if r["Type"] == "AWS::Lambda::Function"}


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Package:
    zip_path = ROOT / OUT / "lorafiles.zip"
    if not (os.environ.get("LORAFILES_REHEARSAL_REUSE") and zip_path.exists()):  # (reuse: while developing)
        env = {**os.environ, "CHECK_ARCH": "x86_64", "CHECK_OUT": OUT, "CHECK_LINT": "0"}
        result = subprocess.run(["bash", "infra/check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                                timeout=1200)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    bundle = tmp_path_factory.mktemp("var-task")
    with zipfile.ZipFile(zip_path) as z:
        z.extractall(bundle)
    template = json.loads((ROOT / OUT / "cloudformation-template-update-stack.json").read_text())
    return Package(zip_path, bundle, template)


# ---------------------------------------------------------------------------- AWS (moto over HTTP)
@pytest.fixture(scope="module")
def aws_endpoint() -> str:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{server._server.server_port}"
    finally:
        server.stop()


def client(service: str, endpoint: str):
    return boto3.client(service, endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


# ---------------------------------------------------------------------------- containers
@dataclass
class Container:
    name: str
    process: subprocess.Popen
    ready: dict[str, Any]

    def read(self) -> dict[str, Any]:
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise AssertionError(f"{self.name} exited: {self.process.wait()}")
            if line.startswith("\x1e"):
                return json.loads(line[1:])

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(event and {"event": event}) + "\n")
        self.process.stdin.flush()
        return self.read()


@dataclass
class World:
    package: Package
    endpoint: str
    db_url: str
    state_machine_arn: str
    keys: Any
    service: Any
    tmp: Path
    containers: dict[str, Container] = field(default_factory=dict)
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def environment(self, fn: dict[str, Any]) -> dict[str, str]:
        env: dict[str, str] = {}
        for key, value in fn["Properties"]["Environment"]["Variables"].items():
            if isinstance(value, str):
                env[key] = value
            elif value == {"Ref": "TrainingFileJobStateMachine"}:
                env[key] = self.state_machine_arn
            else:
                raise AssertionError(f"unexpected environment value {key}={value}")
        jwks = {"keys": [{**ECAlgorithm.to_jwk(self.keys.public_key(), as_dict=True), "kid": "k1", "alg": "ES256"}]}
        env.update({
            # what the deploy parameters would set (supabaseJwtIssuer / supabaseJwksUrl)
            "LORAFILES_JWT_ISSUER": ISSUER, "LORAFILES_SUPABASE_JWKS": json.dumps(jwks),
            # the Lambda environment
            "AWS_LAMBDA_FUNCTION_NAME": fn["Properties"]["FunctionName"], "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_ENDPOINT_URL": self.endpoint, "LAMBDA_TASK_ROOT": str(self.package.bundle),
            "POWERTOOLS_TRACE_DISABLED": "true",  # no X-Ray daemon here
            "HOME": str(self.tmp), "LANG": "C.UTF-8", "PATH": "/usr/bin:/bin",
        })
        return env

    def container(self, name: str) -> Container:
        if name not in self.containers:
            fn = self.package.functions()[name]
            log = open(self.tmp / f"{name}.stderr", "w")
            process = subprocess.Popen([PY313, "-I", "-S", str(DRIVER), str(self.package.bundle), fn["Properties"]["Handler"]],
                                       env=self.environment(fn), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, text=True, cwd=self.package.bundle)
            c = Container(name, process, {})
            c.ready = c.read()
            self.containers[name] = c
        return self.containers[name]

    def invoke(self, name: str, event: dict[str, Any]) -> Any:
        reply = self.container(name).invoke(event)
        self.calls.setdefault(name, []).extend(reply["calls"])
        if "error" in reply:
            raise AssertionError(f"{name} failed: {reply['error']['errorType']}: {reply['error']['trace']}")
        return reply["result"]

    def token(self) -> str:
        now = int(time.time())
        return jwt.encode({"sub": OWNER, "aud": "authenticated", "iss": ISSUER, "role": "authenticated",
                           "iat": now, "exp": now + 600}, self.keys, algorithm="ES256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def world(package, aws_endpoint, module_db_url, tmp_path_factory) -> World:
    from lorafiles.config import Settings
    from lorafiles.db.connect import Database
    from lorafiles.domain.samples import write_sample_dir
    from lorafiles.service import TrainingFileService
    from lorafiles.storage import S3ObjectStore

    tmp = tmp_path_factory.mktemp("rehearsal")
    s3, ssm, sfn = (client(s, aws_endpoint) for s in ("s3", "ssm", "stepfunctions"))
    for bucket in ("conversation-files", "training-files"):
        s3.create_bucket(Bucket=bucket)
    ssm.put_parameter(Name="/lorafiles/ci/database-url", Value=module_db_url, Type="SecureString")
    ssm.put_parameter(Name="/lorafiles/ci/webhook-secret", Value=WEBHOOK_SECRET, Type="SecureString")
    sm = package.resources["TrainingFileJobStateMachine"]["Properties"]
    definition = sm["DefinitionString"]
    for placeholder in sm["DefinitionSubstitutions"]:
        definition = definition.replace("${%s}" % placeholder, f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{placeholder}")
    arn = sfn.create_state_machine(name=sm["StateMachineName"], definition=definition,
                                   roleArn=f"arn:aws:iam::{ACCOUNT}:role/rehearsal")["stateMachineArn"]
    # seed: the app's conversations, their enriched files in conversation-files
    db = Database(module_db_url)
    service = TrainingFileService(db, S3ObjectStore(client=s3), Settings(storage="s3"))
    service.importing.import_files(OWNER, write_sample_dir(tmp / "corpus", 12, seed=3))
    w = World(package, aws_endpoint, module_db_url, arn, ec.generate_private_key(ec.SECP256R1()), service, tmp)
    yield w
    for c in w.containers.values():
        c.process.stdin.close()
        c.process.wait(timeout=30)
    db.close()


# ---------------------------------------------------------------------------- event shapes
def http_v2(method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
            query: str = "", route: str | None = None, path_parameters: dict[str, str] | None = None) -> dict:
    """API Gateway HTTP API (payload format 2.0) event of a browser request."""
    hdrs = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "origin": ORIGIN, "accept": "application/json",
            "user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0", "x-forwarded-proto": "https",
            "x-forwarded-for": "203.0.113.9", "sec-fetch-mode": "cors", **(headers or {})}
    if body is not None:
        hdrs["content-type"] = "application/json"
    event = {
        "version": "2.0", "routeKey": route or f"{method} {path}", "rawPath": path, "rawQueryString": query,
        "headers": hdrs,
        "requestContext": {"accountId": ACCOUNT, "apiId": "abc123", "domainName": hdrs["host"], "domainPrefix": "abc123",
                           "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9",
                                    "userAgent": hdrs["user-agent"]},
                           "requestId": uuid.uuid4().hex[:16], "routeKey": route or f"{method} {path}",
                           "stage": "$default", "time": "02/Dec/2026:10:00:00 +0000", "timeEpoch": 1796205600000},
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(p.split("=", 1) for p in query.split("&"))
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def preflight_allowed(template: dict[str, Any], method: str, headers: list[str]) -> dict[str, Any]:
    """What API Gateway answers to the browser's OPTIONS preflight, from the API's CorsConfiguration."""
    cors = next(r for r in template["Resources"].values() if r["Type"] == "AWS::ApiGatewayV2::Api")["Properties"]["CorsConfiguration"]
    origin_ok = "*" in cors["AllowOrigins"] or ORIGIN in cors["AllowOrigins"]
    allowed_headers = {h.lower() for h in cors["AllowHeaders"]}
    return {"allowed": origin_ok and method in cors["AllowMethods"] and all(h.lower() in allowed_headers for h in headers),
            "expose": {h.lower() for h in cors.get("ExposeHeaders", [])}}


def schedule_event() -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": ACCOUNT, "time": "2026-12-02T10:15:00Z", "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:{ACCOUNT}:rule/lorafiles-ci-scheduled-maintenance"], "detail": {}}


def sqs_of_eventbridge(detail: dict) -> dict:
    body = json.dumps({"version": "0", "id": str(uuid.uuid4()), "detail-type": "EnrichmentCompleted",
                       "source": "brightrun.enrichment", "account": ACCOUNT, "time": "2026-12-02T10:00:00Z",
                       "region": REGION, "resources": [], "detail": detail})
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": "AQEB" + uuid.uuid4().hex, "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1796205600000",
                       "SenderId": "AROAEVENTBRIDGE", "ApproximateFirstReceiveTimestamp": "1796205600010"},
        "messageAttributes": {}, "md5OfBody": hashlib.md5(body.encode()).hexdigest(), "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:lorafiles-ci-enrichment-events", "awsRegion": REGION}]}


def run_pipeline(world: World, job_id: str) -> dict[str, Any]:
    """The state machine's happy path, each task invoked with its ASL Parameters payload."""
    world.invoke("validate-selection", {"job_id": job_id})
    plan = world.invoke("create-file", {"job_id": job_id})
    for batch_index in plan["batches"]:  # the Map's ItemSelector: the job id and the item, a batch number
        world.invoke("append-batch", {"job_id": job_id, "batch_index": batch_index})
    return world.invoke("generate-jsonl", {"job_id": job_id})


# ---------------------------------------------------------------------------- tests
def test_every_handler_loads_from_the_zip_alone(world: World, package: Package):
    for name in sorted(package.functions()):
        ready = world.container(name).ready
        assert ready["python"].startswith("3.13")
        assert ready["modules_outside"] == [], (name, ready["modules_outside"])


def test_arm64_package_has_the_same_files_but_native_ones(package: Package):
    arm = ROOT / ".serverless" / "lorafiles.zip"
    if not arm.exists():
        pytest.skip("no arm64 package: run `make check-infra` (tests/infra/test_offline_check.py does, before this module)")
    native = (".so", ".so.")
    def comparable(path: Path) -> set[str]:
        names = zipfile.ZipFile(path).namelist()
        return {n for n in names if not any(x in n for x in native) and ".libs/" not in n and "dist-info/" not in n}
    assert comparable(arm) == comparable(package.zip_path)


def test_browser_creates_a_file_and_downloads_it(world: World):
    cors = preflight_allowed(world.package.template, "POST", ["authorization", "content-type", "idempotency-key"])
    assert cors["allowed"] and "location" in cors["expose"]
    ids = _conversation_ids(world)
    auth = {"authorization": f"Bearer {world.token()}"}
    reply = world.invoke("api", http_v2("POST", "/training-files", body={"name": "Rehearsal", "conversation_ids": ids[:11]},
                                        headers={**auth, "idempotency-key": "rehearsal-1"}))
    assert reply["statusCode"] == 202, reply
    accepted = json.loads(reply["body"])
    assert reply["headers"]["Location"] == accepted["links"]["job"]
    # the API started the execution in Step Functions
    executions = client("stepfunctions", world.endpoint).list_executions(stateMachineArn=world.state_machine_arn)["executions"]
    assert len(executions) == 1

    run_pipeline(world, accepted["job_id"])
    job_id = accepted["job_id"]
    job = json.loads(world.invoke("api", http_v2("GET", f"/jobs/{job_id}", headers=auth, route="GET /jobs/{job_id}",
                                                 path_parameters={"job_id": job_id}))["body"])
    assert job["status"] == "succeeded", job
    file_id = job["file_id"]
    listing = json.loads(world.invoke("api", http_v2("GET", "/training-files", headers=auth, query="limit=5"))["body"])
    assert listing["total"] == 1 and listing["items"][0]["id"] == file_id

    link = world.invoke("api", http_v2("GET", f"/training-files/{file_id}/download", headers=auth, query="format=jsonl",
                                       route="GET /training-files/{file_id}/download", path_parameters={"file_id": file_id}))
    assert link["statusCode"] == 200, link
    link = json.loads(link["body"])
    with urllib.request.urlopen(link["url"], timeout=30) as resp:  # the presigned URL, from moto S3
        data = resp.read()
    assert hashlib.sha256(data).hexdigest() == link["sha256"] and data.count(b"\n") > 11
    # the version diff reads the manifest from S3 with the api function's own role
    diff = world.invoke("api", http_v2("GET", f"/training-files/{file_id}/diff", headers=auth,
                                       query="from_version=1&to_version=1", route="GET /training-files/{file_id}/diff",
                                       path_parameters={"file_id": file_id}))
    assert diff["statusCode"] == 200, diff
    assert json.loads(diff["body"])["conversations"]["counts"]["unchanged"] == 11


def _conversation_ids(world: World) -> list[str]:
    with world.service.db.connection() as conn:
        return [r["conversation_id"] for r in conn.execute(
            "select conversation_id from conversations where created_by = %s order by conversation_id", (OWNER,))]


def test_webhook_events_and_schedule(world: World):
    ids = _conversation_ids(world)
    with world.service.db.connection() as conn:
        row = conn.execute("select * from conversations where conversation_id = %s", (ids[0],)).fetchone()
    record = {k: (str(v) if v is not None and not isinstance(v, (int, float, bool, dict, list)) else v)
              for k, v in row.items()}
    webhook = {"x-lorafiles-webhook-secret": WEBHOOK_SECRET, "user-agent": "pg_net/0.10.0"}
    # a batch_id-only update (the back-fill): ignored at once
    update = {"type": "UPDATE", "table": "conversations", "schema": "public",
              "record": {**record, "batch_id": str(uuid.uuid4())}, "old_record": record}
    reply = world.invoke("enrichment-webhook", http_v2("POST", "/webhooks/enrichment", body=update, headers=webhook))
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["reason"] == "no_relevant_change"

    # the conversation is enriched again: new file content, then the EventBridge event through SQS
    path = record["enriched_file_path"]
    s3 = client("s3", world.endpoint)
    doc = json.loads(s3.get_object(Bucket="conversation-files", Key=path)["Body"].read())
    doc.setdefault("_meta", {})["rehearsal"] = "re-enriched"
    blob = json.dumps(doc).encode()
    s3.put_object(Bucket="conversation-files", Key=path, Body=blob, ContentType="application/json")
    result = world.invoke("enrichment-events", sqs_of_eventbridge(
        {"conversation_id": ids[0], "enriched_file_path": path, "sha256": hashlib.sha256(blob).hexdigest()}))
    assert result == {"batchItemFailures": []}
    # the same change through the webhook: already stale
    changed = {**update, "record": {**record, "enriched_at": "2026-12-02T10:00:01+00:00"}}
    reply = world.invoke("enrichment-webhook", http_v2("POST", "/webhooks/enrichment", body=changed, headers=webhook))
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["action"] == "already_stale"

    # the schedule regenerates the stale file through the state machine
    counts = world.invoke("scheduled-maintenance", schedule_event())
    assert counts["regenerations_started"] == 1, counts
    [started] = counts["started_jobs"]
    run_pipeline(world, started["job_id"])
    with world.service.db.connection() as conn:
        f = conn.execute("select status, current_version from lora_training_files where id = %s",
                         (started["file_id"],)).fetchone()
    assert (f["status"], f["current_version"]) == ("ready", 2)


def test_a_failed_job_is_compensated(world: World):
    ids = _conversation_ids(world)
    auth = {"authorization": f"Bearer {world.token()}"}
    reply = world.invoke("api", http_v2("POST", "/training-files", body={"name": "Doomed", "conversation_ids": ids[11:]},
                                        headers=auth))
    job_id = json.loads(reply["body"])["job_id"]
    world.invoke("validate-selection", {"job_id": job_id})
    plan = world.invoke("create-file", {"job_id": job_id})
    world.invoke("append-batch", {"job_id": job_id, "batch_index": plan["batches"][0]})
    error = {"Error": "States.Timeout", "Cause": "rehearsal: the generate step timed out"}
    result = world.invoke("compensate-job", {"job_id": job_id, "error": error})
    assert result["compensated"] is True
    assert not [k for k in _keys(world, "training-files") if f"/{plan['file_id']}/" in k]


def test_an_execution_that_ends_uncompensated_is_compensated(world: World):
    """The schedule asks Step Functions whether an active job's execution still runs (it does:
    nothing reaped); the execution is then aborted, and the EventBridge "Execution Status Change"
    event it sends makes execution-ended compensate the job."""
    ids = _conversation_ids(world)
    auth = {"authorization": f"Bearer {world.token()}"}
    reply = world.invoke("api", http_v2("POST", "/training-files", body={"name": "Aborted", "conversation_ids": ids[:3]},
                                        headers=auth))
    assert reply["statusCode"] == 202, reply
    job_id = json.loads(reply["body"])["job_id"]
    world.invoke("validate-selection", {"job_id": job_id})
    plan = world.invoke("create-file", {"job_id": job_id})
    world.invoke("append-batch", {"job_id": job_id, "batch_index": plan["batches"][0]})
    assert [k for k in _keys(world, "training-files") if f"/{plan['file_id']}/" in k]  # staged fragments

    counts = world.invoke("scheduled-maintenance", schedule_event())
    assert any(c["operation"] == "DescribeExecution" for c in world.calls["scheduled-maintenance"])
    with world.service.db.connection() as conn:
        job = conn.execute("select status, execution_arn from lora_training_jobs where id = %s", (job_id,)).fetchone()
    assert job["status"] == "running", counts  # its execution still runs: not reaped

    sfn = client("stepfunctions", world.endpoint)
    sfn.stop_execution(executionArn=job["execution_arn"], error="States.Aborted", cause="rehearsal: aborted by hand")
    desc = sfn.describe_execution(executionArn=job["execution_arn"])
    assert desc["status"] == "ABORTED"
    event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
             "source": "aws.states", "account": ACCOUNT, "time": "2026-12-02T10:20:00Z", "region": REGION,
             "resources": [job["execution_arn"]],
             "detail": {"executionArn": job["execution_arn"], "stateMachineArn": world.state_machine_arn,
                        "name": desc["name"], "status": "ABORTED", "startDate": 1796205600000,
                        "stopDate": 1796206800000, "input": desc.get("input"), "output": None,
                        "inputDetails": {"included": True}, "outputDetails": None, "error": "States.Aborted",
                        "cause": "rehearsal: aborted by hand"}}
    result = world.invoke("execution-ended", event)
    assert (result["action"], result["job_id"]) == ("compensated", job_id), result
    with world.service.db.connection() as conn:
        job = conn.execute("select status from lora_training_jobs where id = %s", (job_id,)).fetchone()
        gone = conn.execute("select count(*) as n from lora_training_files where id = %s", (plan["file_id"],)).fetchone()
    assert job["status"] == "failed" and gone["n"] == 0
    assert not [k for k in _keys(world, "training-files") if f"/{plan['file_id']}/" in k]
    # the same event delivered again (EventBridge retries): nothing more happens
    assert world.invoke("execution-ended", event)["action"] != "compensated"


def _keys(world: World, bucket: str) -> list[str]:
    listing = client("s3", world.endpoint).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listing.get("Contents", [])]


# ---------------------------------------------------------------------------- IAM, both ways
ACTIONS = {
    ("s3", "GetObject"): "s3:GetObject", ("s3", "HeadObject"): "s3:GetObject",
    ("s3", "PutObject"): "s3:PutObject", ("s3", "CreateMultipartUpload"): "s3:PutObject",
    ("s3", "UploadPart"): "s3:PutObject", ("s3", "CompleteMultipartUpload"): "s3:PutObject",
    ("s3", "AbortMultipartUpload"): "s3:AbortMultipartUpload", ("s3", "DeleteObject"): "s3:DeleteObject",
    ("s3", "ListObjectsV2"): "s3:ListBucket", ("ssm", "GetParameter"): "ssm:GetParameter",
    ("stepfunctions", "StartExecution"): "states:StartExecution", ("stepfunctions", "StopExecution"): "states:StopExecution",
    ("stepfunctions", "DescribeExecution"): "states:DescribeExecution",
    ("secretsmanager", "GetSecretValue"): "secretsmanager:GetSecretValue",
}
# Granted but not exercised by the rehearsal, each for a path it does not take.
UNUSED_OK = {
    ("*", "s3:ListBucket"): "turns a missing object's 403 into 404 (ObjectNotFound): error paths only",
    ("*", "s3:AbortMultipartUpload"): "boto3 aborts a failed multipart upload (artifacts over 8 MB)",
    ("*", "ssm:GetParameter", "supabase-service-role-key"): "read only with storage=supabase",
    ("*", "ssm:GetParameter", "s3-access-key-id"): "read only with an S3-compatible endpoint (Supabase Storage)",
    ("*", "ssm:GetParameter", "s3-secret-access-key"): "read only with an S3-compatible endpoint (Supabase Storage)",
    ("scheduled-maintenance", "states:StopExecution"): "reaping a job stuck past the timeout",
    ("scheduled-maintenance", "s3:DeleteObject"): "compensating a reaped job",
    ("scheduled-maintenance", "sqs:SendMessage"): "Lambda itself sends a failed run to the failure destination",
    ("append-batch", "s3:DeleteObject"): "an in-flight batch whose job failed meanwhile removes its fragments",
}


def _resolve(value: Any, world: World, package: Package) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        return (value["Fn::Sub"].replace("${AWS::Partition}", "aws").replace("${AWS::Region}", REGION)
                .replace("${AWS::AccountId}", ACCOUNT))
    if value == {"Ref": "TrainingFileJobStateMachine"}:
        return world.state_machine_arn
    if "Fn::GetAtt" in value and value["Fn::GetAtt"][1] == "Arn":
        queue = package.resources[value["Fn::GetAtt"][0]]
        assert queue["Type"] == "AWS::SQS::Queue"
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue['Properties']['QueueName']}"
    raise AssertionError(f"cannot resolve {value}")


def _grants(fn: dict[str, Any], world: World, package: Package) -> list[tuple[str, str]]:
    role = package.resources[fn["Properties"]["Role"]["Fn::GetAtt"][0]]
    out = []
    for policy in role["Properties"]["Policies"]:
        for st in policy["PolicyDocument"]["Statement"]:
            assert st["Effect"] == "Allow"
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            out += [(a, _resolve(r, world, package)) for a in actions for r in resources]
    return out


def _needed(call: dict[str, Any]) -> tuple[str, str]:
    assert (call["service"], call["operation"]) in ACTIONS, f"an AWS call this test does not know: {call}"
    action = ACTIONS[(call["service"], call["operation"])]
    if call["service"] == "s3":
        arn = f"arn:aws:s3:::{call['Bucket']}" + ("" if action == "s3:ListBucket" else f"/{call['Key']}")
    elif call["service"] == "ssm":
        arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{call['Name']}"
    elif call["service"] == "secretsmanager":  # a name: IAM sees the secret's ARN, name + "-" + 6 characters
        arn = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{call['SecretId']}-AbC123"
    elif call["operation"] == "StartExecution":
        arn = call["stateMachineArn"]
    else:
        arn = call["executionArn"]
    assert arn, f"no resource in {call}"
    return action, arn


def test_each_role_allows_exactly_what_its_handler_called(world: World, package: Package):
    functions = package.functions()
    missing = sorted(set(functions) - set(world.calls))
    assert not missing, f"no rehearsal invoked {missing}: add their real event shape to this module"
    for name, fn in functions.items():
        grants = _grants(fn, world, package)
        used: set[tuple[str, str]] = set()
        for call in world.calls[name]:
            needed = _needed(call)
            match = [g for g in grants if fnmatch.fnmatchcase(needed[0], g[0]) and fnmatch.fnmatchcase(needed[1], g[1])]
            assert match, f"{name} called {needed} without a grant in its role"
            used.update(match)
        for action, resource in grants:
            if action.startswith(("logs:", "xray:", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")):
                continue  # the runtime and the event source mapping use these, not the code
            if (action, resource) in used:
                continue
            reason = (UNUSED_OK.get((name, action)) or UNUSED_OK.get(("*", action))
                      or next((why for key, why in UNUSED_OK.items() if len(key) == 3 and key[1] == action
                               and key[0] in ("*", name) and resource.endswith(key[2])), None))
            assert reason, f"{name}: {action} on {resource} is granted but never used"
