"""Issue 9 item 2: state payloads are bounded by construction, and an execution that ends without
compensating (data limit, States.Runtime, timeout) is compensated anyway by the runner.

moto's interpreter enforces Step Functions' 256 KiB limit like AWS: a task error over it ends the
execution with States.DataLimitExceeded, which no Catch (not even States.ALL) handles."""
from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import orjson
import pytest

from pipekit import OWNER, run
from lorafiles.domain.idempotency import canonical_request
from lorafiles.pipeline.local import LocalStateMachine, load_definition

LIMIT = 256 * 1024
ROOT = Path(__file__).resolve().parents[2]


def largest_history_value(machine, execution_arn: str) -> int:
    """The largest input/output/error/cause of any event of the execution (what AWS limits)."""
    best, kwargs = 0, {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = machine.client.get_execution_history(**kwargs)
        for event in page["events"]:
            for key, details in event.items():
                if key.endswith("EventDetails") and isinstance(details, dict):
                    for field in ("input", "output", "cause", "error"):
                        if isinstance(details.get(field), str):
                            best = max(best, len(details[field].encode()))
        if not page.get("nextToken"):
            return best
        kwargs["nextToken"] = page["nextToken"]


def many_errors(cid: str, pairs: int = 60) -> bytes:
    """Every pair an error quoting a 1,000-character pair id (issue 9: Causes of 600 KB to 2.4 MB)."""
    from lorafiles.domain.samples import generate_conversation

    doc = generate_conversation(cid, turns=2)
    template = doc["training_pairs"][1]
    del template["training_metadata"]["quality_score"]
    out = []
    for i in range(pairs):
        p = orjson.loads(orjson.dumps(template))
        p["id"], p["turn_number"] = f"{'x' * 1000}-{i}", pairs - i
        out.append(p)
    doc["training_pairs"] = out
    return orjson.dumps(doc)


def overwrite(service, ids: list[str], make) -> None:
    with service.db.connection() as conn:
        rows = conn.execute("select conversation_id, enriched_file_path from conversations "
                            "where conversation_id = any(%s)", (ids,)).fetchall()
    for r in rows:
        service.store.inner.put("conversation-files", r["enriched_file_path"], make(r["conversation_id"]))


def test_a_batch_of_files_full_of_errors_stays_small_and_is_compensated(service, machine, make_conversations):
    ids = make_conversations(10, turns=2)
    overwrite(service, ids, many_errors)
    job = run(service, machine, kind="create", conversation_ids=ids, name="Full of errors")
    assert job["status"] == "failed" and job["step"] == "compensated", (job["status"], job["step"])
    assert job["file_id"] is None and service.reading.list_files(OWNER) == []  # the name is free again
    assert largest_history_value(machine, job["execution_arn"]) < 32 * 1024
    # the state machine's own Catch -> Compensate -> Fail path ran (compensate's result is small too)
    desc = machine.client.describe_execution(executionArn=job["execution_arn"])
    assert desc["error"] == "ConversationsInvalid", desc.get("error")
    # full details in the database, capped, with what was left out counted
    error = job["error"]
    assert error["code"] == "conversations_invalid"
    assert len(orjson.dumps(error)) <= 64 * 1024
    assert {d["conversation_id"] for d in error["details"]} == set(ids)
    for d in error["details"]:
        assert d["errors"] and d["errors_omitted"] > 0
        assert len(d["errors"]) + d["errors_omitted"] >= 60


def test_a_selection_blocked_for_many_members_keeps_a_bounded_error(service, machine, make_conversations):
    holder = run(service, machine, kind="create", conversation_ids=make_conversations(2, turns=2), name="Holder")
    others = make_conversations(120, turns=2)
    service.settings.batch_size = 40
    # a regenerate naming 120 conversations the file does not hold: the validate step blocks all 120
    job = service.jobs._insert_job(OWNER, kind="regenerate", ids=others, file_id=str(holder["file_id"]), name=None,
                                   description=None, key="many-not-members",
                                   request=canonical_request(kind="regenerate", file_id=str(holder["file_id"]),
                                                             conversation_ids=others),
                                   policy=service.settings.default_policy())
    job = service.jobs._ensure_started(job)
    machine.wait(job["execution_arn"], timeout=120)
    job = service.reading.get_job(OWNER, str(job["id"]))
    assert job["status"] == "failed" and job["step"] == "compensated"
    error = job["error"]
    assert error["code"] == "selection_blocked"
    assert len(error["details"]) + error["details_omitted"] == 120 and error["details_omitted"] > 0
    assert len(error["message"]) <= 2_100
    assert largest_history_value(machine, job["execution_arn"]) < 16 * 1024


def test_task_errors_and_results_are_capped_whatever_the_exception(service):
    from lorafiles.domain.bounds import MAX_TASK_MESSAGE_CHARS
    from lorafiles.pipeline.steps import JobStep, pipeline_step
    from lorafiles.pipeline.local import LambdaContext

    @pipeline_step(JobStep)
    def boom(step):
        raise RuntimeError("y" * 1_000_000)

    with pytest.raises(Exception) as info:
        boom({"job_id": "3f0c2a5e-8d9b-4c3e-9a57-2b6e1f0d4c81"}, LambdaContext(function_name="boom"))
    assert type(info.value).__name__ == "RuntimeError"  # Retry/Catch match the class name
    assert len(str(info.value)) <= MAX_TASK_MESSAGE_CHARS

    @pipeline_step(JobStep)
    def huge(step):
        return {"job_id": step.job_id, "blob": "z" * 1_000_000}

    with pytest.raises(Exception) as info:
        huge({"job_id": "3f0c2a5e-8d9b-4c3e-9a57-2b6e1f0d4c81"}, LambdaContext(function_name="huge"))
    assert "result" in str(info.value) and len(str(info.value)) <= MAX_TASK_MESSAGE_CHARS


def test_the_map_iterates_over_batch_numbers_and_every_task_has_a_timeout():
    definition = load_definition()
    assert 0 < definition["TimeoutSeconds"] <= 24 * 3600
    amap = definition["States"]["AppendBatches"]
    assert amap["ItemSelector"] == {"job_id.$": "$.job_id", "batch_index.$": "$$.Map.Item.Value"}
    serverless = (ROOT / "serverless.yml").read_text()
    tasks = {n: s for n, s in definition["States"].items() if s["Type"] == "Task"}
    tasks["AppendBatch"] = amap["ItemProcessor"]["States"]["AppendBatch"]
    for name, task in tasks.items():
        function = task["Parameters"]["FunctionName"].rsplit("lorafiles-local-", 1)[1]
        block = re.search(rf"^  {re.escape(function)}:[^\n]*\n((?:    .*\n)+)", serverless, re.M)
        assert block, function
        lambda_timeout = int(re.search(r"^    timeout: (\d+)", block.group(1), re.M).group(1))
        # the task gives up a little after the Lambda would have, so a lost invocation is caught
        assert lambda_timeout < task["TimeoutSeconds"] <= lambda_timeout + 120, (name, task.get("TimeoutSeconds"))


def test_create_file_plans_batch_numbers_not_objects(service, make_conversations):
    ids = make_conversations(25, turns=2)
    job = service.jobs._insert_job(OWNER, kind="create", ids=ids, file_id=None, name="Plan", description=None,
                                   key="plan", request=canonical_request(kind="create", name="Plan", conversation_ids=ids),
                                   policy=service.settings.default_policy())
    plan = service.steps.create_file(str(job["id"]))
    assert plan["batches"] == [0, 1, 2]


def test_a_huge_regenerate_is_planned_in_a_bounded_number_of_batches():
    from lorafiles.domain.bounds import MAX_BATCHES, plan_batches

    assert plan_batches(80, 10) == (10, 8)
    assert plan_batches(0, 10) == (10, 0)
    size, count = plan_batches(50_000, 10)
    assert count <= MAX_BATCHES and size * count >= 50_000 and size * (count - 1) < 50_000
    # the Map input of the largest plan is far below the 256 KiB limit
    assert len(orjson.dumps({"batches": list(range(count))})) < 8 * 1024


# ---------------------------------------------------------------------------- ended without compensating
def _wait_for(predicate, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_runner_compensates_an_execution_that_failed_without_compensating(service, machine, make_conversations):
    base = make_conversations(3)
    created = run(service, machine, kind="create", conversation_ids=base, name="Kept")
    file_id = str(created["file_id"])
    fragments = set(service.store.list("training-files", f"{OWNER}/{file_id}/"))

    def fault(name, payload):
        if name == "generate-jsonl":
            raise RuntimeError("generate crashed")
        if name == "compensate-job":
            raise RuntimeError("and so did the compensation task")

    machine.fault = fault
    job = run(service, machine, kind="add", conversation_ids=make_conversations(4), file_id=file_id)
    desc = machine.client.describe_execution(executionArn=job["execution_arn"])
    assert desc["status"] == "FAILED"  # the Compensate state itself failed: nothing in the ASL undoes the job
    assert job["status"] == "failed" and job["step"] == "compensated", (job["status"], job["step"])
    # what the execution reported (the fault struck before the handler could record generate's error)
    assert "compensation task" in job["error"]["message"]
    f = service.reading.show_file(OWNER, file_id)["file"]
    assert (f["current_version"], f["status"], f["conversation_count"]) == (1, "ready", 3)
    assert set(service.store.list("training-files", f"{OWNER}/{file_id}/")) == fragments
    machine.fault = None
    assert run(service, machine, kind="add", conversation_ids=make_conversations(2), file_id=file_id)[
        "status"] == "succeeded"


def test_runner_compensates_a_timed_out_execution(db_url, settings, tmp_path):
    from lorafiles.db.connect import Database
    from lorafiles.domain.samples import dumps_enriched, generate_conversation
    from lorafiles.runtime import use_service
    from lorafiles.service import TrainingFileService

    release = threading.Event()

    def hang(name, payload):
        if name == "generate-jsonl":
            release.wait(20)
            raise RuntimeError("the hung generate finally died")

    for i in range(3):
        (tmp_path / f"{i}.json").write_bytes(dumps_enriched(generate_conversation(f"slow-{i}", turns=2)))
    with LocalStateMachine(retry_scale=0.01, fault=hang, timeouts={"$": 3}) as short:
        svc = TrainingFileService(Database(db_url), settings.store(), settings, short)
        use_service(svc)
        try:
            ids = [r["conversation_id"] for r in svc.importing.import_files(OWNER, sorted(tmp_path.glob("*.json")))[
                "imported"]]
            job = svc.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="Too slow")
            job_id = str(job["id"])
            done = _wait_for(lambda: (lambda j: j if j["status"] == "failed" else None)(
                svc.reading.get_job(OWNER, job_id)))
            assert short.client.describe_execution(executionArn=job["execution_arn"])["status"] == "TIMED_OUT"
            assert done["step"] == "compensated" and done["file_id"] is None
            assert "TIMED_OUT" in (done["error"]["code"] + done["error"]["message"])
            assert svc.reading.list_files(OWNER) == []
        finally:
            release.set()
            use_service(None)
