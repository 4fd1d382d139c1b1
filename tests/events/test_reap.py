"""A job killed mid-way (its Lambda hangs, nothing progresses) is reaped by the schedule: its
execution is stopped, its staged work compensated, and its file is usable again with nothing
lost (members and current version unchanged, staged items and their fragments gone)."""
from __future__ import annotations

import time

from eventkit import OWNER, Gate, World, invoke, scheduled_event

from lorafiles.maintenance import Maintenance
from lorafiles.service import OUTPUT_BUCKET


def _snapshot(world: World, file_id: str) -> dict:
    f = world.file(file_id)
    with world.service.db.connection() as conn:
        members = conn.execute("select * from lora_training_file_members where file_id = %s order by position",
                               (file_id,)).fetchall()
        versions = conn.execute("select * from lora_training_file_versions where file_id = %s order by version",
                                (file_id,)).fetchall()
    return {"version": f["current_version"], "status": f["status"], "json_sha256": f["json_sha256"],
            "members": members, "versions": versions}


def _items(world: World, job_id: str) -> list[dict]:
    with world.service.db.connection() as conn:
        return conn.execute("select * from lora_training_job_items where job_id = %s", (job_id,)).fetchall()


def test_hung_job_is_reaped_and_its_file_usable_again(world: World, maintenance: Maintenance, faults):
    c0, c1, c2, c3, c4 = world.conversations(5)
    a = world.create("File A", [c0, c1])
    before = _snapshot(world, a)
    v1 = {fmt: world.artifact_bytes(a, fmt) for fmt in ("json", "jsonl")}
    fragments_before = set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/fragments/"))

    # an add job whose generate Lambda hangs after every batch was staged
    gate = Gate()
    faults.hooks["generate-jsonl"] = gate
    job = world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c2, c3], file_id=a)
    job_id = str(job["id"])
    assert gate.entered.wait(60)
    staged = _items(world, job_id)
    assert {i["conversation_id"] for i in staged} == {c2, c3}
    staged_keys = {k for i in staged for k in (i["json_fragment_key"], i["jsonl_fragment_key"])}
    assert all(world.service.store.exists(OUTPUT_BUCKET, k) for k in staged_keys)

    # the file is busy meanwhile
    try:
        world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c4], file_id=a)
        raise AssertionError("expected FileBusy")
    except Exception as exc:  # noqa: BLE001
        assert type(exc).__name__ == "FileBusy"

    # not past the timeout yet: the schedule leaves it alone
    assert maintenance.reap_stuck() == []
    assert world.service.reading.get_job(OWNER, job_id)["status"] == "running"

    # past the timeout (LORAFILES_JOB_TIMEOUT_SECONDS=1 here): the scheduled run reaps it
    maintenance.settings.job_timeout_seconds = 1
    time.sleep(1.2)
    summary = invoke("scheduled-maintenance", scheduled_event())
    assert summary["reaped"] == 1 and summary["reaped_jobs"] == [job_id]

    reaped = world.service.reading.get_job(OWNER, job_id)
    assert reaped["status"] == "failed" and reaped["step"] == "compensated"
    assert reaped["error"]["code"] == "JobTimedOut" and "no progress" in reaped["error"]["message"]
    assert _items(world, job_id) == []
    assert not any(world.service.store.exists(OUTPUT_BUCKET, k) for k in staged_keys)
    assert set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/fragments/")) == fragments_before
    assert _snapshot(world, a) == before
    assert {fmt: world.artifact_bytes(a, fmt) for fmt in ("json", "jsonl")} == v1

    # The hung invocation finally dies. AWS marks a stopped execution ABORTED at once and runs
    # no further state; moto's interpreter only notices the stop after the task returns and may
    # still take the Catch -> Compensate path (FAILED). Either way nothing changes: compensating
    # an already compensated job is a no-op for the file.
    gate.released.set()
    assert world.machine.wait(job["execution_arn"], timeout=60)["status"] in ("ABORTED", "FAILED")
    assert _snapshot(world, a) == before
    assert world.service.reading.get_job(OWNER, job_id)["error"]["code"] == "JobTimedOut"
    assert maintenance.reap_stuck(older_than_seconds=0) == []  # reaping twice does nothing

    # the file is usable again: a new add succeeds
    faults.hooks.clear()
    done = world.wait(world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c2, c4], file_id=a))
    assert done["status"] == "succeeded" and done["published_version"] == 2
    after = _snapshot(world, a)
    assert [m["conversation_id"] for m in after["members"]] == [c0, c1, c2, c4]
    assert after["members"][:2] == before["members"]
    assert world.artifact_bytes(a, "json", version=1) == v1["json"]


def test_queued_job_that_never_started_is_reaped(world: World, maintenance: Maintenance):
    """A job row whose execution never started (the starter failed after the insert)."""
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0])
    with world.service.db.connection() as conn:
        conn.execute("""insert into lora_training_jobs (owner_id, file_id, kind, requested_ids, batch_size,
                                                        total_batches, idempotency_key)
                        values (%s, %s, 'add', %s, 2, 1, 'lost-start')""", (OWNER, a, [c1]))
    time.sleep(1.1)
    [entry] = maintenance.reap_stuck(older_than_seconds=1)
    assert entry["execution_stopped"] is False and entry["compensated"] is True
    job = world.service.reading.get_job(OWNER, entry["job_id"])
    assert job["status"] == "failed" and job["error"]["code"] == "JobTimedOut"
    done = world.wait(world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c1], file_id=a))
    assert done["published_version"] == 2
