"""Jobs whose execution ended without the state machine compensating them (issue 9).

The state machine compensates every failure it can catch. It cannot catch everything: a payload
over 256 KiB (`States.DataLimitExceeded`), `States.Runtime`, the machine's own timeout, an
abort, or a failure of the Compensate task itself end the execution with the job still
`running` and its file held. Step Functions then emits an "Execution Status Change" event:

* in AWS an EventBridge rule (serverless.yml, `ExecutionEndedRule`) sends FAILED, TIMED_OUT and
  ABORTED ones to functions/execution-ended;
* locally the runner (pipeline/local.py) hands the same event to the same handler.

Both end here: the job named by the execution is compensated (idempotent: a job already
compensated or finished is left alone). The reaper (maintenance.py) covers a lost event.
Also here: what the CLI says about a job whose local process was killed.
"""
from __future__ import annotations

import re
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Field

from .db.repository import ACTIVE_JOB, Repository
from .domain.bounds import clip
from .observability import logger, metrics

ENDED = ("FAILED", "TIMED_OUT", "ABORTED")
EXECUTION_NAME_RE = re.compile(
    r"^lorafiles-(create|add|regenerate)-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


class ExecutionStatusDetail(BaseModel):
    """`detail` of a Step Functions "Execution Status Change" event (the fields used here)."""

    model_config = ConfigDict(extra="ignore")

    executionArn: str = Field(min_length=1, max_length=2048)
    stateMachineArn: str | None = Field(default=None, max_length=2048)
    name: str = Field(min_length=1, max_length=80)
    status: str = Field(min_length=1, max_length=32)
    error: str | None = None
    cause: str | None = None


class ExecutionStatusChange(EventBridgeModel):
    detail: ExecutionStatusDetail  # type: ignore[assignment]


def job_id_of(execution_name: str) -> str | None:
    m = EXECUTION_NAME_RE.match(execution_name)
    return m.group(2) if m else None


def handle_execution_ended(change: ExecutionStatusChange, service: Any) -> dict[str, Any]:
    """Compensate the job of an execution that ended FAILED, TIMED_OUT or ABORTED. Returns
    {action: compensated | unchanged | ignored, job_id, reason}."""
    d = change.detail
    base = {"execution": d.name, "status": d.status, "job_id": None, "reason": None}
    job_id = job_id_of(d.name)
    expected = service.settings.state_machine_arn
    if d.status not in ENDED:
        return {**base, "action": "ignored", "reason": f"status {d.status}"}
    if job_id is None:
        return {**base, "action": "ignored", "reason": "not a training-file job execution"}
    if expected and d.stateMachineArn and d.stateMachineArn != expected:
        return {**base, "action": "ignored", "reason": "another state machine"}
    base["job_id"] = job_id
    with service.db.connection() as conn:
        job = Repository(conn).job(job_id)
    if job is None:
        return {**base, "action": "ignored", "reason": "no such job"}
    if job["execution_arn"] and job["execution_arn"] != d.executionArn:
        return {**base, "action": "ignored", "reason": "the job runs another execution"}
    if job["status"] not in ACTIVE_JOB:
        return {**base, "action": "unchanged", "reason": f"job already {job['status']}"}
    cause = d.cause or f"execution {d.name} ended {d.status} before the state machine compensated the job"
    result = service.steps.compensate(job_id, {"Error": d.error or d.status, "Cause": clip(cause, 4000)})
    action = "compensated" if result.get("compensated") else "unchanged"
    if action == "compensated":
        metrics.add_metric(name="JobsCompensatedAfterExecutionEnded", unit=MetricUnit.Count, value=1)
    logger.warning("execution ended without compensating: job compensated",
                   extra={**base, "action": action, "error": d.error})
    return {**base, "action": action}


# ------------------------------------------------------------------ after a killed local run
def interrupted_jobs(service: Any) -> list[dict[str, Any]]:
    """Active jobs whose execution will never finish because the local process running it is
    gone (killed, crashed, the machine rebooted)."""
    from .maintenance import execution_status_of

    status_of = execution_status_of(service.starter)
    with service.db.connection() as conn:
        active = Repository(conn).active_jobs()
    out = []
    for job in active:
        status = status_of(job["execution_arn"]) if job["execution_arn"] else None
        if status is not None and status[0] == "GONE":
            out.append({**job, "why": status[1]})
    return out


def interrupted_notice(job: dict[str, Any]) -> str:
    what = f"{job['kind']} of '{job['file_name']}'" if job.get("file_name") else f"{job['kind']} of file {job['file_id']}"
    return (f"note: job {job['id']} ({what}) was interrupted at {job['step'] or job['status']}: {job['why']}. "
            "Nothing was published and the training file is as it was; run `lorafiles reap` to release it "
            "(then start the job again)")
