"""The production state machine (infra/state-machine.asl.json) in moto with the real handlers
over real PostgreSQL and a real storage directory."""
from __future__ import annotations

import hashlib
import threading

import orjson
import pytest

from pipekit import OWNER, run
from lorafiles.errors import FileBusy, SelectionBlocked
from lorafiles.pipeline.local import load_definition

# pytest-timeout (test extra) ends a hung execution: no test of this module takes near this long.
pytestmark = pytest.mark.timeout(600)


def snapshot(service, file_id: str | None = None) -> dict:
    """Everything a job may touch: the lora_* rows (minus bookkeeping) and every stored output object."""
    with service.db.connection() as conn:
        files = conn.execute("select id, name, status, current_version, conversation_count, training_pair_count,"
                             " total_turns, quality_summary, json_path, jsonl_path, json_sha256, jsonl_sha256"
                             " from lora_training_files order by id").fetchall()
        members = conn.execute("select file_id, conversation_id, position, source_sha256, json_fragment_key"
                               " from lora_training_file_members order by file_id, position").fetchall()
        versions = conn.execute("select file_id, version, json_sha256, jsonl_sha256 from lora_training_file_versions"
                                " order by file_id, version").fetchall()
        items = conn.execute("select count(*) as n from lora_training_job_items").fetchone()["n"]
    root = service.settings.local_storage_root / "training-files"
    objects = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(root.rglob("*")) if p.is_file()} if root.exists() else {}
    return {"files": files, "members": members, "versions": versions, "staged_items": items, "objects": objects}


def artifacts(service, file_id: str, version: int | None = None) -> dict[str, bytes]:
    out = {}
    for fmt in ("json", "jsonl"):
        a = service.reading.artifact(OWNER, file_id, fmt, version)
        out[fmt] = service.store.get(a["bucket"], a["key"])
    return out


def test_definition_is_the_infra_file_and_passes_ids_only():
    definition = load_definition()
    assert definition["StartAt"] == "ValidateSelection"
    text = orjson.dumps(definition).decode()
    for state in ("CreateFile", "AppendBatches", "GenerateJsonl", "Compensate", "JobFailed"):
        assert state in definition["States"]
    # every Lambda task retries Lambda's own errors and is caught into compensation
    tasks = [s for s in definition["States"].values() if s["Type"] == "Task"]
    tasks.append(definition["States"]["AppendBatches"]["ItemProcessor"]["States"]["AppendBatch"])
    for task in tasks:
        errors = task["Retry"][0]["ErrorEquals"]
        assert "Lambda.ServiceException" in errors and "TransientError" in errors
        assert task["Retry"][0]["JitterStrategy"] == "FULL"
    for name in ("ValidateSelection", "CreateFile", "AppendBatches", "GenerateJsonl"):
        assert definition["States"][name]["Catch"][0]["Next"] == "Compensate"
        assert definition["States"][name]["Catch"][0]["ResultPath"] == "$.error"
    assert "Payload.$\":\"$\"" not in text  # tasks get explicit, small payloads


def test_create_80_conversations_end_to_end(service, machine, make_conversations):
    ids = make_conversations(80, target_bytes=30_000)
    job = run(service, machine, kind="create", conversation_ids=ids, name="Eighty")
    assert job["status"] == "succeeded", job["error"]
    assert job["total_batches"] == 8 and sorted(job["completed_batches"]) == list(range(8))
    f = service.reading.show_file(OWNER, str(job["file_id"]))
    assert f["file"]["conversation_count"] == 80 and f["file"]["current_version"] == 1
    assert [m["conversation_id"] for m in f["members"]] == ids  # request order
    doc = orjson.loads(artifacts(service, str(job["file_id"]))["json"])
    lines = artifacts(service, str(job["file_id"]))["jsonl"].splitlines()
    meta = doc["training_file_metadata"]
    assert meta["total_conversations"] == 80 == len(doc["conversations"])
    assert meta["total_training_pairs"] == len(lines) - 1 == orjson.loads(lines[0])["_meta"]["total_pairs"]
    assert meta["total_turns"] == sum(len(c["training_pairs"]) for c in doc["conversations"])
    # every Map payload stayed tiny: ids only
    for name, payload in machine.invocations:
        assert len(orjson.dumps(payload)) < 2048, (name, payload)


def test_add_publishes_next_version_and_keeps_the_old_one(service, machine, make_conversations):
    first, second = make_conversations(5), make_conversations(7)
    created = run(service, machine, kind="create", conversation_ids=first, name="Grows")
    file_id = str(created["file_id"])
    v1 = artifacts(service, file_id)
    added = run(service, machine, kind="add", conversation_ids=second, file_id=file_id)
    assert added["status"] == "succeeded", added["error"]
    shown = service.reading.show_file(OWNER, file_id)
    assert shown["file"]["current_version"] == 2
    assert [m["conversation_id"] for m in shown["members"]] == first + second
    assert artifacts(service, file_id, 1) == v1
    doc = orjson.loads(artifacts(service, file_id, 2)["json"])
    assert [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]] == first + second


@pytest.mark.parametrize("function,batch", [("validate-selection", None), ("create-file", None),
                                            ("append-batch", 0), ("append-batch", 1), ("generate-jsonl", None)])
def test_failure_in_any_state_leaves_the_file_unchanged(service, machine, make_conversations, function, batch):
    base = make_conversations(4)
    created = run(service, machine, kind="create", conversation_ids=base, name="Stable")
    file_id = str(created["file_id"])
    before = snapshot(service)

    def fault(name, payload):
        if name == function and (batch is None or payload.get("batch_index") == batch):
            raise RuntimeError(f"injected failure in {name}")

    machine.fault = fault
    new = make_conversations(15)  # 2 batches of 10
    before = snapshot(service)
    job = run(service, machine, kind="add", conversation_ids=new, file_id=file_id)
    assert job["status"] == "failed"
    assert f"injected failure in {function}" in job["error"]["message"]
    assert job["step"] == "compensated"
    assert snapshot(service) == before
    machine.fault = None  # the file is usable again
    assert run(service, machine, kind="add", conversation_ids=new, file_id=file_id)["status"] == "succeeded"


def test_failed_create_leaves_no_file(service, machine, make_conversations):
    machine.fault = lambda name, payload: (_ for _ in ()).throw(RuntimeError("boom")) if name == "generate-jsonl" else None
    before = snapshot(service)
    job = run(service, machine, kind="create", conversation_ids=make_conversations(3), name="Never")
    assert job["status"] == "failed" and job["file_id"] is None
    assert snapshot(service) == before
    assert service.reading.list_files(OWNER) == []


def test_invalid_enriched_file_fails_the_job_with_per_conversation_errors(service, machine, make_conversations):
    good = make_conversations(3)
    bad = make_conversations(1)[0]
    with service.db.connection() as conn:
        path = conn.execute("select enriched_file_path from conversations where conversation_id = %s",
                            (bad,)).fetchone()["enriched_file_path"]
    service.store.inner.put("conversation-files", path, b'{"conversation_metadata": {}, "turns": []}')
    job = run(service, machine, kind="create", conversation_ids=good + [bad], name="Has a bad one")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "conversations_invalid"
    assert [d["conversation_id"] for d in job["error"]["details"]] == [bad]
    assert job["error"]["details"][0]["errors"][0]["code"] == "wrong_shape"



@pytest.mark.parametrize("layer", ["database", "storage"])
def test_crash_between_any_two_writes_then_retry_gives_the_fault_free_result(service, machine, make_conversations,
                                                                            layer):
    service.settings.batch_size = 2
    base = make_conversations(3)
    created = run(service, machine, kind="create", conversation_ids=base, name="Crashy")
    file_id = str(created["file_id"])
    new = make_conversations(4)
    counter = service.db if layer == "database" else service.store
    attr = "commits" if layer == "database" else "writes"

    # the fault-free run, measured, then undone by restoring a copy of its inputs in a fresh file each time
    start = getattr(counter, attr)
    reference_job = run(service, machine, kind="add", conversation_ids=new, file_id=file_id)
    assert reference_job["status"] == "succeeded"
    writes = getattr(counter, attr) - start
    reference = artifacts(service, file_id)
    reference_members = [m["conversation_id"] for m in service.reading.show_file(OWNER, file_id)["members"]]
    assert writes > 5

    for n in range(1, writes + 1):
        name = f"Crashy {layer} {n}"
        f2 = run(service, machine, kind="create", conversation_ids=base, name=name)
        counter.fail_at = getattr(counter, attr) + n
        job = run(service, machine, kind="add", conversation_ids=new, file_id=str(f2["file_id"]))
        counter.fail_at = None
        assert job["status"] == "succeeded", (n, job["error"])
        got = artifacts(service, str(f2["file_id"]))
        members = [m["conversation_id"] for m in service.reading.show_file(OWNER, str(f2["file_id"]))["members"]]
        assert members == reference_members, n
        # byte-identical apart from the file's own name
        assert got["jsonl"].replace(name.encode(), b"Crashy") == reference["jsonl"], n
        assert got["json"].replace(name.encode(), b"Crashy") == reference["json"], n
    with service.db.connection() as conn:
        assert conn.execute("select count(*) as n from lora_training_job_items").fetchone()["n"] == 0


def test_second_job_on_a_busy_file_is_refused_and_nothing_is_lost(service, machine, make_conversations):
    created = run(service, machine, kind="create", conversation_ids=make_conversations(2), name="Busy")
    file_id = str(created["file_id"])
    gate, entered = threading.Event(), threading.Event()

    def hold(name, payload):
        if name == "append-batch":
            entered.set()
            assert gate.wait(60)

    machine.fault = hold
    a_ids, b_ids = make_conversations(3), make_conversations(3)
    job_a = service.jobs.start_job(OWNER, kind="add", conversation_ids=a_ids, file_id=file_id)
    assert entered.wait(60)
    with pytest.raises(FileBusy) as busy:
        service.jobs.start_job(OWNER, kind="add", conversation_ids=b_ids, file_id=file_id)
    assert str(job_a["id"]) in busy.value.message
    gate.set()
    machine.wait(job_a["execution_arn"])
    machine.fault = None
    assert run(service, machine, kind="add", conversation_ids=b_ids, file_id=file_id)["status"] == "succeeded"
    members = [m["conversation_id"] for m in service.reading.show_file(OWNER, file_id)["members"]]
    assert len(members) == 8 and len(set(members)) == 8


def test_same_idempotency_key_starts_one_execution(service, machine, make_conversations):
    ids = make_conversations(2)
    a = service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="Once", idempotency_key="click-1")
    b = service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="Once", idempotency_key="click-1")
    assert a["id"] == b["id"] and a["execution_arn"] == b["execution_arn"]
    machine.wait(a["execution_arn"])
    c = service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="Once", idempotency_key="click-1")
    assert c["id"] == a["id"] and c["status"] == "succeeded"
    executions = machine.client.list_executions(stateMachineArn=machine.arn)["executions"]
    assert len(executions) == 1
    assert len(service.reading.list_files(OWNER)) == 1


def test_blocked_selection_starts_nothing(service, machine, make_conversations):
    ids = make_conversations(2)
    with pytest.raises(SelectionBlocked) as blocked:
        service.jobs.start_job(OWNER, kind="create", conversation_ids=ids + [ids[0], "nope"], name="X")
    codes = {(d["conversation_id"], d["code"]) for d in blocked.value.details}
    assert codes == {(ids[0], "repeated_in_request"), ("nope", "not_found")}
    assert machine.client.list_executions(stateMachineArn=machine.arn)["executions"] == []
