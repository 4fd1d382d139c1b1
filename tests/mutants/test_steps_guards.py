"""The guards of the pipeline steps, each at the moment it exists for: compensation of a job whose
fragments the current version shares, a job reaped while it publishes, a file that moved on, an
artifact upload that failed half way, compensation delivered twice, a retried validation, the
regenerate exemption from the per-request limit, and steps of a job that already failed."""
from __future__ import annotations

import threading

import psycopg
import pytest

from lorafiles.db.connect import connect
from lorafiles.db.repository import Repository
from lorafiles.errors import InvalidRequest, JobStateError, SelectionBlocked, TransientError
from lorafiles.service import OUTPUT_BUCKET

from stepkit import FRAGMENT_KEYS, OWNER, Kit, make_kit


@pytest.fixture
def kit(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path)
    yield k
    k.service.db.close()


def readable(kit: Kit, keys) -> dict[str, bool]:
    return {k: kit.store.exists(OUTPUT_BUCKET, k) for k in keys}


def member_keys(kit: Kit, file_id: str) -> list[str]:
    return [m[k] for m in kit.members(file_id) for k in FRAGMENT_KEYS]


# ---------------------------------------------------------------------------- compensation and shared fragments

def test_compensating_a_failed_regenerate_leaves_every_members_fragments_and_the_next_add_publishes(kit: Kit):
    ids = kit.conversations(3)
    file_id = kit.create(ids)
    keys = member_keys(kit, file_id)
    assert len(keys) == 9 and all(readable(kit, keys).values())

    # a regeneration renders the same content, hence the same (content-addressed) fragment keys
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    kit.stage(job)
    with connect(kit.url) as conn:
        staged = Repository(conn).item_fragment_keys(job)
    assert set(staged) == set(keys)

    out = kit.service.steps.compensate(job, {"Error": "States.TaskFailed", "Cause": "generate crashed"})
    assert out["compensated"] is True
    assert readable(kit, keys) == {k: True for k in keys}
    assert kit.file(file_id)["current_version"] == 1

    # the current version is still complete: the next add publishes v2 from those fragments
    [new] = kit.conversations(1)
    result = kit.run(kit.start(kind="add", conversation_ids=[new], file_id=file_id))
    assert result["version"] == 2
    full = kit.service.reading.artifact(OWNER, file_id, "json")
    assert kit.store.exists(OUTPUT_BUCKET, full["key"])
    assert [m["conversation_id"] for m in kit.members(file_id)] == [*ids, new]


def test_compensating_a_failed_add_under_a_new_policy_keeps_the_rerendered_members_v4_fragments(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    keys = member_keys(kit, file_id)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id, policy={"max_length": 4096})
    kit.stage(job)
    assert kit.job(job)["rerender_ids"] == ids  # the members' items carry the members' own v4 keys
    kit.service.steps.compensate(job)
    v4 = [m[k] for m in kit.members(file_id) for k in ("json_fragment_key", "jsonl_fragment_key")]
    assert readable(kit, keys) == {k: True for k in keys} and v4
    assert kit.run(kit.start(kind="add", conversation_ids=[new], file_id=file_id))["version"] == 2


# ---------------------------------------------------------------------------- publish guards

def test_a_job_reaped_while_its_artifacts_upload_publishes_nothing(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)

    def reaper(bucket: str, key: str) -> None:  # the schedule fails and compensates the job meanwhile
        kit.store.before_put_file = None
        kit.service.steps.compensate(job, {"Error": "States.Timeout", "Cause": "reaped"})

    kit.store.before_put_file = reaper
    with pytest.raises(JobStateError, match="no longer running"):
        kit.service.steps.generate(job)
    f = kit.file(file_id)
    assert f["current_version"] == 1 and kit.versions(file_id) == [1]
    assert [m["conversation_id"] for m in kit.members(file_id)] == ids
    assert kit.job(job)["status"] == "failed"


def test_generate_refuses_a_version_number_another_job_took_meanwhile(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)
    other = "0e0e0e0e-0000-4000-8000-0000000000ee"
    with connect(kit.url) as conn:  # another writer published v2 of the file meanwhile
        conn.execute("""insert into lora_training_file_versions
                          (file_id, version, job_id, json_path, jsonl_path, json_size, jsonl_size, json_sha256,
                           jsonl_sha256, conversation_count, training_pair_count, total_turns, quality_summary,
                           scaffolding_distribution, created_at)
                        select id, 2, %s, 'x', 'y', 1, 1, 'a', 'b', 1, 1, 1, '{}', '{}', now()
                          from lora_training_files where id = %s""", (other, file_id))
        conn.execute("update lora_training_files set current_version = 2 where id = %s", (file_id,))
    with pytest.raises(JobStateError, match="moved to version 2 meanwhile"):
        kit.service.steps.generate(job)
    with connect(kit.url) as conn:
        v2 = conn.execute("select job_id from lora_training_file_versions where file_id = %s and version = 2",
                          (file_id,)).fetchone()
    assert str(v2["job_id"]) == other
    assert [m["conversation_id"] for m in kit.members(file_id)] == ids


@pytest.mark.parametrize("kind", ["create", "add"])
def test_compensation_removes_the_artifacts_of_a_version_that_was_never_published(kit: Kit, kind: str):
    if kind == "add":
        ids = kit.conversations(2)
        file_id = kit.create(ids)
        before = kit.outputs(f"{file_id}/v1/")
        [new] = kit.conversations(1)
        job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    else:
        job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="never published")
    out = kit.stage(job)
    file_id, version = out["file_id"], kit.job(job)["base_version"] + 1
    uploads: list[str] = []
    guard = threading.Lock()

    def flaky(bucket: str, key: str) -> None:  # the upload of the third artifact fails
        with guard:
            uploads.append(key)
            if len(uploads) == 3:
                raise TransientError("storage went away")

    kit.store.before_put_file = flaky
    with pytest.raises(TransientError):
        kit.service.steps.generate(job)
    kit.store.before_put_file = None
    # the artifacts upload concurrently: every one but the failed upload is there
    stored = kit.outputs(f"{file_id}/v{version}/")
    assert len(uploads) >= 3 and len(stored) == len(uploads) - 1 and uploads[2] not in stored

    kit.service.steps.compensate(job)
    assert kit.outputs(f"{file_id}/v{version}/") == set()
    if kind == "add":
        assert kit.outputs(f"{file_id}/v1/") == before and kit.file(file_id)["current_version"] == 1
    else:
        assert kit.file(file_id) is None and kit.outputs(f"{file_id}/") == set()


def test_compensation_delivered_twice_changes_nothing_the_second_time(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)
    first = kit.service.steps.compensate(job, {"Error": "TransientError", "Cause": "first"})
    row = kit.job(job)
    again = kit.service.steps.compensate(job, {"Error": "Other", "Cause": "second delivery"})
    assert first["compensated"] is True and again == {"job_id": job, "compensated": False, "status": "failed"}
    assert kit.job(job) == row  # same error, same finished_at, not even touched (updated_at)


# ---------------------------------------------------------------------------- the selection check inside the job

def test_validation_retried_after_the_job_created_its_file_is_not_a_name_clash(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="Retried Review")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    assert kit.service.steps.validate(job) == {"job_id": job, "conversations": 2}  # e.g. a retry after a crash
    # another job with the same name is still blocked
    other = kit.service.jobs.validate_selection(OWNER, kit.conversations(1), name="retried review")
    assert [p["code"] for p in other["problems"]] == ["name_taken"]


def test_regenerate_may_hold_more_conversations_than_one_request(kit: Kit, monkeypatch):
    monkeypatch.setattr("lorafiles.domain.rules.MAX_SELECTION", 2)
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [third] = kit.conversations(1)
    kit.run(kit.start(kind="add", conversation_ids=[third], file_id=file_id))
    with pytest.raises(SelectionBlocked) as blocked:
        kit.start(kind="add", conversation_ids=kit.conversations(3), file_id=file_id)
    assert [p["code"] for p in blocked.value.details] == ["too_many"]
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    assert kit.service.steps.validate(job) == {"job_id": job, "conversations": 3}
    assert kit.run(job)["version"] == 3


# ---------------------------------------------------------------------------- jobs that already ended

def test_steps_of_a_failed_job_refuse_and_leave_it_failed(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="fails early")
    kit.service.steps.validate(job)
    kit.service.steps.compensate(job, {"Error": "X", "Cause": "boom"})
    row = kit.job(job)
    steps = kit.service.steps
    for call in (lambda: steps.validate(job), lambda: steps.create_file(job), lambda: steps.append_batch(job, 0),
                 lambda: steps.generate(job)):
        with pytest.raises(JobStateError, match="already failed"):
            call()
    assert kit.job(job) == row and row["status"] == "failed" and row["step"] == "compensated"


def test_a_repeated_request_for_a_job_that_already_failed_starts_nothing(kit: Kit):
    ids = kit.conversations(1)
    kit.starter.fail = TransientError("Step Functions unavailable")
    with pytest.raises(TransientError):
        kit.service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="never started",
                                   idempotency_key="k-1")
    with connect(kit.url) as conn:
        [row] = conn.execute("select id, status, execution_arn from lora_training_jobs").fetchall()
    assert row["status"] == "queued" and row["execution_arn"] is None
    kit.service.steps.compensate(str(row["id"]))  # the reaper gives up on it
    kit.starter.fail = None
    again = kit.service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="never started",
                                       idempotency_key="k-1")
    assert str(again["id"]) == str(row["id"]) and again["status"] == "failed"
    assert kit.starter.started == [] and again["execution_arn"] is None


def test_start_job_accepts_only_create_and_add(kit: Kit):
    ids = kit.conversations(1)
    file_id = kit.create(ids)
    with pytest.raises(InvalidRequest, match="unknown job kind 'regenerate'"):
        kit.service.jobs.start_job(OWNER, kind="regenerate", conversation_ids=ids, file_id=file_id)
    with connect(kit.url) as conn:
        assert conn.execute("select kind from lora_training_jobs").fetchall() == [{"kind": "create"}]


# ---------------------------------------------------------------------------- repository guards seen from the steps

def test_a_retried_batch_is_recorded_once(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(3), name="retried batches")
    out = kit.stage(job)
    assert len(out["batches"]) == 2
    kit.service.steps.append_batch(job, 1)  # Step Functions retries a batch whose reply was lost
    kit.service.steps.append_batch(job, 0)
    assert kit.job(job)["completed_batches"] == [0, 1]
    assert kit.service.steps.generate(job)["version"] == 1


def test_a_file_still_being_created_is_never_marked_stale(kit: Kit):
    ids = kit.conversations(2)
    job = kit.start(kind="create", conversation_ids=ids, name="being created")
    file_id = kit.stage(job)["file_id"]
    with connect(kit.url) as conn:
        assert Repository(conn).mark_stale([file_id]) == []
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"]) == ("creating", None)
    kit.service.steps.generate(job)
    assert kit.file(file_id)["status"] == "ready"


def test_a_late_error_is_not_recorded_on_a_job_that_succeeded(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="succeeds")
    kit.run(job)
    kit.service.steps.record_failure(job, JobStateError("a late batch found the job gone"))
    row = kit.job(job)
    assert row["status"] == "succeeded" and row["error"] is None


def test_the_first_error_of_a_job_is_kept(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="fails twice")
    kit.service.steps.record_failure(job, TransientError("first"))
    kit.service.steps.record_failure(job, JobStateError("second"))
    assert kit.job(job)["error"]["message"] == "first"
