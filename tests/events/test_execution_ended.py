"""Issue 9 item 2, in AWS: an EventBridge rule on Step Functions "Execution Status Change"
(FAILED / TIMED_OUT / ABORTED) invokes `execution-ended`, which compensates the job named by the
execution when the state machine did not (States.DataLimitExceeded, States.Runtime, a machine
timeout, an abort). The event below is the documented shape of that notification."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

import orjson
import pytest

from eventkit import OWNER, Gate, World, invoke

from lorafiles.service import OUTPUT_BUCKET

ROOT = Path(__file__).resolve().parents[2]
SM_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:lorafiles-dev-training-file-job"


def status_change(execution_name: str, status: str, *, error: str | None = None, cause: str | None = None,
                  execution_arn: str | None = None, job_id: str | None = None) -> dict:
    execution_arn = execution_arn or SM_ARN.replace(":stateMachine:", ":execution:") + ":" + execution_name
    state_machine_arn = execution_arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": "123456789012", "time": "2026-12-02T10:00:00Z", "region": "us-east-1",
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn, "stateMachineArn": state_machine_arn, "name": execution_name,
            "status": status, "startDate": 1764669600000, "stopDate": 1764669660000,
            "input": orjson.dumps({"job_id": job_id}).decode() if job_id else None,
            "output": None, "inputDetails": {"included": True}, "outputDetails": None,
            "error": error, "cause": cause,
        },
    }


def _items(world: World, job_id: str) -> list[dict]:
    with world.service.db.connection() as conn:
        return conn.execute("select * from lora_training_job_items where job_id = %s", (job_id,)).fetchall()


@pytest.mark.parametrize("status,error", [("FAILED", "States.DataLimitExceeded"), ("FAILED", "States.Runtime"),
                                          ("TIMED_OUT", None), ("ABORTED", None)])
def test_an_execution_that_ended_uncompensated_is_compensated(world: World, faults, status, error):
    c0, c1, c2, c3 = world.conversations(4)
    a = world.create("Target", [c0, c1])
    fragments_before = set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/"))
    gate = Gate()
    faults.hooks["generate-jsonl"] = gate  # the execution is stuck after staging, as after a lost task
    job = world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c2, c3], file_id=a)
    job_id = str(job["id"])
    assert gate.entered.wait(60)
    assert _items(world, job_id)
    name = job["execution_name"]

    cause = "The state/task 'AppendBatches' returned a result with a size exceeding the maximum number of bytes " \
            "service limit." if error == "States.DataLimitExceeded" else None
    arn = job["execution_arn"]
    result = invoke("execution-ended", status_change(name, status, error=error, cause=cause, job_id=job_id,
                                                     execution_arn=arn))
    assert result["action"] == "compensated" and result["job_id"] == job_id

    done = world.service.reading.get_job(OWNER, job_id)
    assert done["status"] == "failed" and done["step"] == "compensated"
    assert done["error"]["code"] == (error or status)
    assert _items(world, job_id) == []
    assert set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/")) == fragments_before
    f = world.file(a)
    assert f["current_version"] == 1 and f["status"] == "ready"
    # a duplicate delivery changes nothing
    again = status_change(name, status, error=error, job_id=job_id, execution_arn=arn)
    assert invoke("execution-ended", again)["action"] == "unchanged"
    gate.released.set()
    world.machine.wait(job["execution_arn"], timeout=60)
    assert world.file(a)["current_version"] == 1


def test_succeeded_unknown_and_foreign_executions_are_ignored(world: World):
    c0, c1 = world.conversations(2)
    a = world.create("Done", [c0])
    job = world.jobs(a)[0]
    arn = job["execution_arn"]
    assert invoke("execution-ended", status_change(job["execution_name"], "SUCCEEDED", execution_arn=arn))[
        "action"] == "ignored"
    assert invoke("execution-ended", status_change("someone-elses-execution", "FAILED"))["action"] == "ignored"
    missing = f"lorafiles-add-{uuid.uuid4()}"
    assert invoke("execution-ended", status_change(missing, "FAILED"))["action"] == "ignored"
    # a finished job is never reopened by a late or forged notification
    assert invoke("execution-ended", status_change(job["execution_name"], "ABORTED", execution_arn=arn))[
        "action"] == "unchanged"
    # an execution of that name in another state machine is not this job's
    assert invoke("execution-ended", status_change(job["execution_name"], "FAILED"))["action"] == "ignored"
    assert world.service.reading.get_job(OWNER, str(job["id"]))["status"] == "succeeded"


def test_a_malformed_event_is_refused_without_a_traceback(world: World):
    with pytest.raises(Exception) as info:
        invoke("execution-ended", {"detail-type": "Step Functions Execution Status Change", "detail": {}})
    assert type(info.value).__name__ in ("ValidationError", "InvalidRequest")


def test_serverless_wires_the_rule_to_the_function():
    text = (ROOT / "serverless.yml").read_text()
    block = re.search(r"^  execution-ended:\n((?:    .*\n|\n)+)", text, re.M)
    assert block and "functions/execution-ended/handler.handler" in block.group(1)
    assert (ROOT / "functions" / "execution-ended" / "handler.py").is_file()
    rule = re.search(r"^    ExecutionEndedRule:\n((?:      .*\n|\n)+)", text, re.M)
    assert rule, "an AWS::Events::Rule for the state machine's status changes"
    body = rule.group(1)
    assert "aws.states" in body and "Step Functions Execution Status Change" in body
    for status in ("FAILED", "TIMED_OUT", "ABORTED"):
        assert status in body
    assert "SUCCEEDED" not in body
    assert "TrainingFileJobStateMachine" in body  # only our state machine's executions
    assert "AWS::Lambda::Permission" in text and "ExecutionDashendedLambdaFunction" in text
