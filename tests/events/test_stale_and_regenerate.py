"""Re-enrichment marks exactly the files holding the conversation stale; the scheduled run
rebuilds them as new versions (through the real state machine) with the new content, while
older versions stay downloadable byte-identical."""
from __future__ import annotations

import hashlib

from lorafiles.maintenance import Maintenance

from eventkit import OWNER, World, invoke, scheduled_event


def _members(world: World, file_id: str) -> dict[str, str]:
    with world.service.db.connection() as conn:
        rows = conn.execute("select conversation_id, source_sha256 from lora_training_file_members "
                            "where file_id = %s", (file_id,)).fetchall()
    return {r["conversation_id"]: r["source_sha256"] for r in rows}


def test_reenrichment_marks_exactly_the_files_holding_it(world: World, maintenance: Maintenance):
    c0, c1, c2, c3, loose = world.conversations(5)
    a = world.create("File A", [c0, c1])
    b = world.create("File B", [c1, c2])
    c = world.create("File C", [c3])

    # an enrichment that did not change the file: nothing to do
    same = maintenance.enrichment_completed(c1)
    assert same["action"] == "unchanged" and sorted(same["up_to_date"]) == sorted([a, b])

    world.reenrich(c1, "REENRICHED-MARKER-1")
    result = maintenance.enrichment_completed(c1, event_id="evt-1")
    assert result["action"] == "marked_stale"
    assert sorted(result["stale_files"]) == sorted([a, b])
    assert world.file(a)["status"] == "stale" and world.file(b)["status"] == "stale"
    assert world.file(c)["status"] == "ready" and world.file(c)["stale_since"] is None

    # a conversation in no file, and one that is not completed: logged and ignored
    assert maintenance.enrichment_completed(loose)["reason"] == "not_in_any_file"
    assert maintenance.enrichment_completed("no-such-conversation")["reason"] == "unknown_conversation"
    with world.service.db.connection() as conn:
        conn.execute("update conversations set enrichment_status = 'enrichment_in_progress' "
                     "where conversation_id = %s", (c3,))

    assert maintenance.enrichment_completed(c3)["reason"] == "not_completed"
    assert world.file(c)["status"] == "ready"


def test_scheduled_run_rebuilds_stale_files_as_new_versions(world: World, maintenance: Maintenance):
    c0, c1, c2, c3 = world.conversations(4)
    a = world.create("File A", [c0, c1])
    b = world.create("File B", [c1, c2])
    c = world.create("File C", [c3])
    v1 = {f: {fmt: world.artifact_bytes(f, fmt) for fmt in ("json", "jsonl")} for f in (a, b, c)}
    before = {f: _members(world, f) for f in (a, b)}

    new_sha = world.reenrich(c1, "REENRICHED-MARKER-2")
    assert sorted(maintenance.enrichment_completed(c1)["stale_files"]) == sorted([a, b])

    # the real scheduled-maintenance Lambda handler, with a schedule event
    summary = invoke("scheduled-maintenance", scheduled_event())
    assert summary["regenerations_started"] == 2 and summary["reaped"] == 0
    started = {j["file_id"]: j["job_id"] for j in summary["started_jobs"]}
    assert set(started) == {a, b}

    # a tick while the jobs run starts nothing new
    again = invoke("scheduled-maintenance", scheduled_event())
    assert again["regenerations_started"] == 0

    for f in (a, b):
        job = world.service.reading.get_job(OWNER, started[f])
        assert job["kind"] == "regenerate" and job["requested_ids"] == [c1]  # only the changed member
        job = world.wait(job)
        assert job["status"] == "succeeded" and job["published_version"] == 2
        row = world.file(f)
        assert row["status"] == "ready" and row["stale_since"] is None and row["current_version"] == 2
        new_json = world.artifact_bytes(f, "json")
        assert b"REENRICHED-MARKER-2" in new_json and b"REENRICHED-MARKER-2" in world.artifact_bytes(f, "jsonl")
        # older version: still downloadable, byte-identical, without the new content
        for fmt in ("json", "jsonl"):
            old = world.artifact_bytes(f, fmt, version=1)
            assert old == v1[f][fmt] and b"REENRICHED-MARKER-2" not in old
            assert hashlib.sha256(old).hexdigest() == world.service.reading.artifact(OWNER, f, fmt, 1)["sha256"]
        members = _members(world, f)
        assert members[c1] == new_sha
        assert {k: v for k, v in members.items() if k != c1} == {k: v for k, v in before[f].items() if k != c1}

    # file C was never touched; nothing is left to do
    assert world.file(c)["current_version"] == 1 and world.artifact_bytes(c, "json") == v1[c]["json"]
    assert invoke("scheduled-maintenance", scheduled_event())["regenerations_started"] == 0
    # the same enrichment reported again after the rebuild: nothing changes
    assert maintenance.enrichment_completed(c1)["action"] == "unchanged"
    assert all(world.file(f)["status"] == "ready" for f in (a, b))


def test_failed_regeneration_is_retried_a_bounded_number_of_times(world: World, maintenance: Maintenance, faults):
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0, c1])
    world.reenrich(c0, "REENRICHED-MARKER-3")
    maintenance.enrichment_completed(c0)

    def broken(payload: dict) -> None:
        raise ValueError("validation crashed")

    faults.hooks["validate-selection"] = broken
    for attempt in range(1, 4):
        started = [o for o in maintenance.regenerate_stale() if o["outcome"] == "started"]
        assert len(started) == 1
        assert started[0]["job"]["idempotency_key"].endswith(f":{attempt}")
        desc = world.machine.wait(started[0]["job"]["execution_arn"], timeout=60)
        assert desc["status"] == "FAILED"
    assert [o["outcome"] for o in maintenance.regenerate_stale()] == ["gave_up"]
    assert world.file(a)["status"] == "stale" and world.file(a)["current_version"] == 1

    # a new enrichment of a member re-arms it; with the fault gone it succeeds
    faults.hooks.clear()
    world.reenrich(c0, "REENRICHED-MARKER-3B")
    assert maintenance.enrichment_completed(c0)["action"] == "already_stale"
    [outcome] = maintenance.regenerate_stale()
    assert outcome["outcome"] == "started"
    assert world.wait(outcome["job"])["published_version"] == 2
    assert world.file(a)["status"] == "ready"
    assert b"REENRICHED-MARKER-3B" in world.artifact_bytes(a, "json")


def test_a_regeneration_whose_start_failed_is_resumed_by_the_next_tick(world: World, maintenance: Maintenance,
                                                                       monkeypatch):
    c0, c1 = world.conversations(2)
    a, b = world.create("File A", [c0]), world.create("File B", [c1])
    for cid in (c0, c1):
        world.reenrich(cid, "CHANGED")
        maintenance.enrichment_completed(cid)

    real_start, calls = world.machine.start, []

    def flaky_start(name: str, payload: dict) -> str:
        calls.append(name)
        if len(calls) == 1:
            raise ConnectionError("StartExecution throttled")
        return real_start(name, payload)

    monkeypatch.setattr(world.machine, "start", flaky_start)
    first = {o["file_id"]: o for o in maintenance.regenerate_stale()}
    assert sorted(o["outcome"] for o in first.values()) == ["error", "started"]  # one failure does not stop the tick
    [failed] = [f for f, o in first.items() if o["outcome"] == "error"]
    [pending] = [j for j in world.jobs(failed) if j["kind"] == "regenerate"]
    assert pending["status"] == "queued" and pending["execution_arn"] is None

    second = {o["file_id"]: o for o in maintenance.regenerate_stale()}
    assert second[failed]["outcome"] == "started" and str(second[failed]["job"]["id"]) == str(pending["id"])
    for f in (a, b):
        [job] = [j for j in world.jobs(f) if j["kind"] == "regenerate"]
        assert world.wait(job)["published_version"] == 2
