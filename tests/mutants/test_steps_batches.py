"""The validate, create-file and append-batch steps at each moment their guards exist for (issue 14,
usecases/steps.py): a selection that stopped qualifying after the job was registered, two creates of
one name racing past validation, a batch number outside the plan, a conversation deleted or an
enriched file changed between validation and its batch, a storage read that fails, members
re-rendered under a policy they cannot meet or whose stored fragment is gone, and a job that fails
while a batch is in flight. Real PostgreSQL and a real local store; steps called as the Lambda tasks
call them."""
from __future__ import annotations

import pytest

from lorafiles.config import Settings
from lorafiles.db.connect import connect
from lorafiles.domain.exports import TrainingPolicy
from lorafiles.errors import (ConversationsInvalid, InvalidRequest, JobStateError, NameTaken, NotFound,
                              SelectionBlocked, TransientError)
from lorafiles.service import OUTPUT_BUCKET
from lorafiles.usecases.common import INPUT_BUCKET
from lorafiles.usecases.steps import fragment_base, job_policy

from stepkit import InThread, Kit, OWNER, make_kit

QWEN = "qwen2.5-7b-instruct"




def _path_of(kit: Kit, cid: str) -> str:
    with connect(kit.url) as conn:
        return conn.execute("select enriched_file_path from conversations where conversation_id = %s",
                            (cid,)).fetchone()["enriched_file_path"]


def _fragments(kit: Kit, file_id: str, cid: str) -> list[str]:
    return sorted(kit.store.list(OUTPUT_BUCKET, fragment_base(OWNER, file_id, cid) + "/"))


def test_a_jobs_policy_is_its_own_then_its_files_then_the_default_for_the_files_model():
    settings = Settings()
    own = {"target_model": QWEN, "max_length": 1024}
    assert job_policy({"policy": own}, {"policy": {"target_model": "llama-3.1-8b-instruct"}}, settings) == \
        TrainingPolicy(**own)
    assert job_policy({"policy": None}, {"policy": own, "target_model": "x"}, settings) == TrainingPolicy(**own)
    assert job_policy({}, {"policy": {}, "target_model": QWEN}, settings) == settings.default_policy(target_model=QWEN)
    assert job_policy({}, None, settings) == settings.default_policy()


def test_a_selection_that_stopped_qualifying_after_registration_blocks_validation(kit: Kit):
    ids = kit.conversations(2)
    job = kit.start(kind="create", conversation_ids=ids, name="later blocked")
    with connect(kit.url) as conn:
        conn.execute("update conversations set enrichment_status = 'normalization_failed' where conversation_id = %s", (ids[1],))
    with pytest.raises(SelectionBlocked) as err:
        kit.service.steps.validate(job)
    assert [(d["conversation_id"], d["code"]) for d in err.value.details] == [(ids[1], "not_eligible")]
    assert str(err.value).startswith(f"selection blocked, 1 problem(s): {ids[1]}: not_eligible (")
    ok = kit.start(kind="create", conversation_ids=ids[:1], name="ok")
    assert kit.service.steps.validate(ok) == {"job_id": ok, "conversations": 1}


def test_two_creates_of_one_name_that_both_passed_validation_make_one_file(kit: Kit):
    ids = kit.conversations(2)
    first = kit.start(kind="create", conversation_ids=ids[:1], name="Same Name")
    second = kit.start(kind="create", conversation_ids=ids[1:], name="Same Name")
    steps = kit.service.steps
    steps.validate(first)
    steps.validate(second)
    made = steps.create_file(first)
    with pytest.raises(NameTaken) as err:
        steps.create_file(second)
    assert str(err.value) == "you already have a training file named 'Same Name'"
    assert kit.job(second)["file_id"] is None
    with connect(kit.url) as conn:
        assert [str(r["id"]) for r in conn.execute("select id from lora_training_files")] == [made["file_id"]]


def test_create_file_plans_the_batches_and_the_map_concurrency(tmp_path, db_url):
    kit = make_kit(db_url, tmp_path, batch_size=2, map_concurrency=0)
    try:
        job = kit.start(kind="create", conversation_ids=kit.conversations(5), name="planned")
        kit.service.steps.validate(job)
        out = kit.service.steps.create_file(job)
        assert out == {"job_id": job, "file_id": str(kit.job(job)["file_id"]), "batches": [0, 1, 2],
                       "max_concurrency": 1}
        assert kit.service.steps.create_file(job) == out  # a retried step plans the same
    finally:
        kit.service.db.close()


@pytest.mark.parametrize("batch", [-1, 1, 7])
def test_a_batch_outside_the_plan_is_refused(kit: Kit, batch: int):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="one batch")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    with pytest.raises(InvalidRequest) as err:
        kit.service.steps.append_batch(job, batch)
    assert str(err.value) == f"batch {batch} does not exist (job has 1)"


def test_a_conversation_deleted_before_its_batch_fails_the_batch_naming_it(kit: Kit):
    ids = kit.conversations(2)
    job = kit.start(kind="create", conversation_ids=ids, name="deleted")
    kit.service.steps.validate(job)
    out = kit.service.steps.create_file(job)
    with connect(kit.url) as conn:
        conn.execute("delete from conversations where conversation_id = %s", (ids[0],))
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 0)
    assert str(err.value) == f"conversations no longer available: {ids[0]}"
    assert err.value.details == [{"conversation_id": ids[0], "code": "not_found", "message": "no such conversation"}]
    assert _fragments(kit, out["file_id"], ids[1]) == []  # nothing of the batch was written


def test_an_enriched_file_that_stopped_parsing_fails_its_batch_with_its_report(kit: Kit):
    ids = kit.conversations(2)
    job = kit.start(kind="create", conversation_ids=ids, name="broken later")
    kit.service.steps.validate(job)
    out = kit.service.steps.create_file(job)
    kit.store.put(INPUT_BUCKET, _path_of(kit, ids[1]), b'{"not": "enriched"')
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 0)
    [report] = err.value.details
    assert report["conversation_id"] == ids[1] and report["source"] == f"{INPUT_BUCKET}/{_path_of(kit, ids[1])}"
    assert [e["code"] for e in report["errors"]] == ["invalid_json"]
    assert _fragments(kit, out["file_id"], ids[0]) == []


def test_a_storage_read_that_fails_is_transient_and_names_the_file(kit: Kit, monkeypatch):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="flaky")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    path = _path_of(kit, ids[0])

    def get(bucket, key):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(kit.store, "get", get, raising=False)
    with pytest.raises(TransientError) as err:
        kit.service.steps.append_batch(job, 0)
    assert str(err.value) == f"reading {INPUT_BUCKET}/{path} for {ids[0]} failed: [Errno 5] Input/output error"


def test_a_conversation_whose_exports_cannot_meet_the_policy_fails_its_batch(kit: Kit):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="too long",
                    policy={"max_length": 128, "over_length": "fail"})
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 0)
    [report] = err.value.details
    assert report["conversation_id"] == ids[0]
    assert {e["code"] for e in report["errors"]} == {"over_length"}


def _add_under_new_policy(kit: Kit, **policy) -> tuple[str, list[str], str]:
    """A file of 2 members, then an add of 1 under another policy: its work list is the new one,
    then the 2 members it re-renders; batch 0 is [new, member 0], batch 1 is [member 1]."""
    ids = kit.conversations(3)
    file_id = kit.create(ids[:2], name="rerendered")
    job = kit.start(kind="add", file_id=file_id, conversation_ids=ids[2:], policy=policy)
    kit.service.steps.validate(job)
    out = kit.service.steps.create_file(job)
    assert kit.job(job)["rerender_ids"] == ids[:2] and out["batches"] == [0, 1]
    return file_id, ids, job


def test_members_that_cannot_meet_a_new_policy_fail_the_add_naming_them(kit: Kit):
    file_id, ids, job = _add_under_new_policy(kit, max_length=128, over_length="fail")
    members = {m["conversation_id"]: m for m in kit.members(file_id)}
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 1)
    [report] = err.value.details
    assert (report["conversation_id"], report["source"]) == (ids[1], members[ids[1]]["source_file"])
    assert {e["code"] for e in report["errors"]} == {"over_length"}
    with pytest.raises(ConversationsInvalid) as err:  # a fresh conversation and a member in one batch
        kit.service.steps.append_batch(job, 0)
    assert [(r["conversation_id"], r["source"]) for r in err.value.details] == [
        (ids[2], f"{INPUT_BUCKET}/{_path_of(kit, ids[2])}"), (ids[0], members[ids[0]]["source_file"])]


def test_a_member_whose_stored_fragment_is_gone_fails_the_add_naming_it(kit: Kit):
    file_id, ids, job = _add_under_new_policy(kit, target_model=QWEN)
    member = next(m for m in kit.members(file_id) if m["conversation_id"] == ids[1])
    kit.store.delete(OUTPUT_BUCKET, member["json_fragment_key"])
    with pytest.raises(JobStateError) as err:
        kit.service.steps.append_batch(job, 1)
    assert str(err.value) == f"member {ids[1]}: its stored fragment {member['json_fragment_key']} is missing"


def test_a_member_fragment_read_that_fails_is_transient(kit: Kit, monkeypatch):
    file_id, ids, job = _add_under_new_policy(kit, target_model=QWEN)
    real = kit.store.inner.get

    def get(bucket, key):
        if bucket == OUTPUT_BUCKET:
            raise OSError(5, "Input/output error")
        return real(bucket, key)

    monkeypatch.setattr(kit.store, "get", get, raising=False)
    with pytest.raises(TransientError) as err:
        kit.service.steps.append_batch(job, 1)
    assert str(err.value) == f"reading the stored fragment of member {ids[1]} failed: [Errno 5] Input/output error"


def test_members_rerendered_under_a_new_policy_keep_their_content(kit: Kit):
    file_id, ids, job = _add_under_new_policy(kit, target_model=QWEN)
    before = {m["conversation_id"]: m for m in kit.members(file_id)}
    assert kit.service.steps.append_batch(job, 0) == {"job_id": job, "batch_index": 0, "staged": 2}
    assert kit.service.steps.append_batch(job, 1) == {"job_id": job, "batch_index": 1, "staged": 1}
    with connect(kit.url) as conn:
        items = {r["conversation_id"]: r for r in conn.execute(
            "select * from lora_training_job_items where job_id = %s", (job,))}
    for cid in ids[:2]:
        item, member = items[cid], before[cid]
        assert (item["position"], item["json_fragment_key"], item["jsonl_fragment_key"], item["source_sha256"]) == \
            (member["position"], member["json_fragment_key"], member["jsonl_fragment_key"], member["source_sha256"])
        assert item["exports_fragment_key"] != member["exports_fragment_key"]
        assert item["exports_fragment_key"].startswith(fragment_base(OWNER, file_id, cid) + "/")
    kit.service.steps.generate(job)
    assert [m["conversation_id"] for m in kit.members(file_id)] == ids


def test_a_batch_that_finds_its_job_failed_stages_nothing_and_takes_back_what_it_wrote(kit: Kit, monkeypatch):
    ids = kit.conversations(1)
    file_id = kit.create(ids, name="shared")
    new = kit.conversations(1)
    job = kit.start(kind="add", file_id=file_id, conversation_ids=new)
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    real = kit.store.inner.put

    def put(bucket, key, data, *a, **kw):  # the job fails (another batch, compensated) while this one writes
        with connect(kit.url) as conn:
            conn.execute("update lora_training_jobs set status = 'failed' where id = %s", (job,))
        return real(bucket, key, data, *a, **kw)

    monkeypatch.setattr(kit.store, "put", put, raising=False)
    with pytest.raises(JobStateError) as err:
        kit.service.steps.append_batch(job, 0)
    assert str(err.value) == f"job {job} is failed; batch 0 was not staged"
    assert _fragments(kit, file_id, new[0]) == []
    with connect(kit.url) as conn:
        assert conn.execute("select count(*) as n from lora_training_job_items where job_id = %s",
                            (job,)).fetchone()["n"] == 0
    member = kit.members(file_id)[0]  # the file's own member keeps everything
    assert all(kit.store.exists(OUTPUT_BUCKET, member[k])
               for k in ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key"))


def test_a_step_of_a_job_that_does_not_exist_is_not_found(kit: Kit):
    missing = "00000000-0000-4000-8000-000000000000"
    for call in (lambda: kit.service.steps.validate(missing), lambda: kit.service.steps.create_file(missing),
                 lambda: kit.service.steps.append_batch(missing, 0)):
        with pytest.raises(NotFound) as err:
            call()
        assert str(err.value) == f"job {missing} not found"


def test_batches_after_the_first_read_the_job_without_reopening_it(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(4), name="two batches")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    kit.service.steps.append_batch(job, 0)
    started = kit.job(job)["started_at"]
    kit.service.steps.append_batch(job, 1)
    row = kit.job(job)
    assert (row["status"], row["step"], row["started_at"]) == ("running", "append", started)
    assert sorted(row["completed_batches"]) == [0, 1]


def test_a_later_batch_does_its_reads_while_another_transaction_holds_the_job_row(kit: Kit):
    """Only the first batch to arrive opens the job (a locked update); the others read the plan
    without a lock, so a batch's work never queues behind the job row (issue 11, item 2)."""
    import threading

    job = kit.start(kind="create", conversation_ids=kit.conversations(4), name="unlocked reads")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    kit.service.steps.append_batch(job, 0)
    reading = threading.Event()
    inner_get = kit.store.inner.get

    def get(bucket: str, key: str) -> bytes:
        if bucket == INPUT_BUCKET:
            reading.set()
        return inner_get(bucket, key)

    kit.store.get = get
    with connect(kit.url) as holder:
        holder.execute("select id from lora_training_jobs where id = %s for update", (job,))
        worker = InThread(kit.service.steps.append_batch, job, 1)
        reached = reading.wait(20)  # it reads its enriched files with the row still held
        holder.commit()
    worker.join(30)
    assert reached and not worker.errors, worker.errors
    assert sorted(kit.job(job)["completed_batches"]) == [0, 1]
