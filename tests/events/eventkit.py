"""Helpers for the event/schedule trigger tests: data builders and realistic Lambda events."""
from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.pipeline.local import LambdaContext, LocalStateMachine, load_handler
from lorafiles.service import INPUT_BUCKET, TrainingFileService

OWNER = "11111111-1111-4111-8111-111111111111"


class Faults:
    """`LocalStateMachine(fault=...)`: tests switch failure modes per function at run time."""

    def __init__(self) -> None:
        self.hooks: dict[str, Callable[[dict], None]] = {}

    def __call__(self, function: str, payload: dict) -> None:
        hook = self.hooks.get(function)
        if hook is not None:
            hook(payload)


class World:
    """Builds data through the service: enriched files, conversations, training files."""

    def __init__(self, service: TrainingFileService, machine: LocalStateMachine, tmp: Path) -> None:
        self.service, self.machine, self.tmp = service, machine, tmp
        self.docs: dict[str, dict] = {}
        self.n = 0

    def conversations(self, count: int, owner: str = OWNER) -> list[str]:
        paths = []
        for _ in range(count):
            self.n += 1
            doc = generate_conversation(f"events-{self.n}", turns=3)
            path = self.tmp / f"in-{self.n}.json"
            path.write_bytes(dumps_enriched(doc))
            paths.append(path)
        result = self.service.importing.import_files(owner, paths)
        assert not result["refused"], result["refused"]
        ids = [i["conversation_id"] for i in result["imported"]]
        for cid, path in zip(ids, paths):
            self.docs[cid] = json.loads(path.read_bytes())
        return ids

    def reenrich(self, cid: str, marker: str, owner: str = OWNER) -> str:
        """What the enrichment service does: overwrite the enriched file, update the row.
        Returns the new file's sha256."""
        doc = json.loads(json.dumps(self.docs[cid]))
        pair = next(p for p in doc["training_pairs"] if isinstance(p.get("target_response"), str))
        pair["target_response"] += f" {marker}"
        self.n += 1
        path = self.tmp / f"re-{self.n}.json"
        blob = dumps_enriched(doc)
        path.write_bytes(blob)
        assert not self.service.importing.import_files(owner, [path])["refused"]
        assert self.service.store.get(INPUT_BUCKET, f"{owner}/{cid}/enriched.json") == blob
        return hashlib.sha256(blob).hexdigest()

    def wait(self, job: dict[str, Any]) -> dict[str, Any]:
        desc = self.machine.wait(job["execution_arn"], timeout=120)
        assert desc["status"] == "SUCCEEDED", desc
        return self.service.reading.get_job(str(job["owner_id"]), str(job["id"]))

    def create(self, name: str, ids: list[str], owner: str = OWNER) -> str:
        job = self.service.jobs.start_job(owner, kind="create", conversation_ids=ids, name=name)
        return str(self.wait(job)["file_id"])

    def file(self, file_id: str) -> dict[str, Any]:
        with self.service.db.connection() as conn:
            return conn.execute("select * from lora_training_files where id = %s", (file_id,)).fetchone()

    def artifact_bytes(self, file_id: str, fmt: str, version: int | None = None, owner: str = OWNER) -> bytes:
        a = self.service.reading.artifact(owner, file_id, fmt, version)
        return self.service.store.get(a["bucket"], a["key"])

    def jobs(self, file_id: str) -> list[dict[str, Any]]:
        with self.service.db.connection() as conn:
            return conn.execute("select * from lora_training_jobs where file_id = %s order by created_at",
                                (file_id,)).fetchall()


# ---------------------------------------------------------------------------- realistic events
def lambda_context(function: str) -> LambdaContext:
    return LambdaContext(function_name=function)


def invoke(function: str, event: dict) -> Any:
    """Call the real handler in functions/<function>/handler.py like Lambda does."""
    return load_handler(function)(event, lambda_context(function))


def eventbridge_event(detail: dict, *, event_id: str | None = None, time: str = "2026-01-01T10:00:00Z",
                      detail_type: str = "EnrichmentCompleted") -> dict:
    return {"version": "0", "id": event_id or str(uuid.uuid4()), "detail-type": detail_type,
            "source": "brightrun.enrichment", "account": "123456789012", "time": time, "region": "us-east-1",
            "resources": [], "detail": detail}


def sqs_record(body: str, message_id: str | None = None) -> dict:
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a" + uuid.uuid4().hex,
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1767261600000",
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": "1767261600010"},
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:lorafiles-dev-enrichment-events",
        "awsRegion": "us-east-1",
    }


def sqs_event(*records: dict) -> dict:
    return {"Records": list(records)}


def http_event(body: str | None, headers: dict[str, str] | None = None, path: str = "/webhooks/enrichment") -> dict:
    """API Gateway HTTP API (payload format 2.0) request, as Lambda receives it."""
    return {
        "version": "2.0", "routeKey": f"POST {path}", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc123.execute-api.us-east-1.amazonaws.com",
                    "user-agent": "pg_net/0.10.0", "x-forwarded-proto": "https", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc123", "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7",
                     "userAgent": "pg_net/0.10.0"},
            "requestId": "Jw3kDg0LoAMEV7g=", "routeKey": f"POST {path}", "stage": "$default",
            "time": "01/Jan/2026:10:00:00 +0000", "timeEpoch": 1767261600000,
        },
        "body": body, "isBase64Encoded": False,
    }


def scheduled_event() -> dict:
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "123456789012", "time": "2026-01-01T10:15:00Z", "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/lorafiles-dev-ScheduledMaintenance"],
            "detail": {}}


class Gate:
    """Blocks a Lambda dispatch until released (a hung invocation)."""

    def __init__(self) -> None:
        self.entered, self.released = threading.Event(), threading.Event()

    def __call__(self, payload: dict) -> None:
        self.entered.set()
        if not self.released.wait(60):
            raise TimeoutError("gate never released")
        raise RuntimeError("the hung invocation died")


def run_cli(args: list[str], *, home: Path, database_url: str, timeout: float = 180) -> tuple[int, str, str]:
    """The real `lorafiles` console script in a subprocess (LORAFILES_HOME=home, DATABASE_URL)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items()
           if k not in ("LORAFILES_STORAGE", "LORAFILES_STORAGE_ROOT", "LORAFILES_OWNER", "LORAFILES_STATE_MACHINE_ARN")}
    env.update(LORAFILES_HOME=str(home), DATABASE_URL=database_url)
    proc = subprocess.run([str(Path(sys.executable).parent / "lorafiles"), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr
