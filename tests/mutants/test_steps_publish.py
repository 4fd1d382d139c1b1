"""Compensation and publication, step by step on real parts (PostgreSQL, the local store): what a
compensated job leaves behind (the file exactly as it was, the cause of the failure on the job),
and what a published version is (artifacts that are what the database says they are, a manifest
and a report that name every member in order, the file row pointing at them)."""
from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from datetime import timezone
from typing import Any

import pytest

from lorafiles.db.connect import connect
from lorafiles.db.repository import Repository
from lorafiles.domain.exports import EXPORT_FORMATS
from lorafiles.errors import JobStateError, NotFound, SelectionBlocked
from lorafiles.service import OUTPUT_BUCKET
from lorafiles.usecases.common import ARTIFACTS
from lorafiles.usecases.publish import _dataset_name, read_members

from stepkit import FRAGMENT_KEYS, OWNER, Kit, make_kit


@pytest.fixture
def kit(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path)
    yield k
    k.service.db.close()


def sql(kit: Kit, query: str, *params: Any) -> list[dict[str, Any]]:
    with connect(kit.url) as conn:
        cur = conn.execute(query, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


def objects(kit: Kit, file_id: str) -> dict[str, bytes]:
    """Every object under the file's prefix, with its bytes."""
    return {k: kit.store.get(OUTPUT_BUCKET, k) for k in kit.outputs(f"{file_id}/")}


# ---------------------------------------------------------------------------- compensation

def test_compensating_an_add_under_a_new_policy_leaves_the_file_exactly_as_it_was(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    before, members_before = objects(kit, file_id), kit.members(file_id)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id,
                    policy={"target_model": "qwen2.5-7b-instruct"})
    kit.stage(job)
    with connect(kit.url) as conn:
        staged = Repository(conn).item_fragment_keys(job)
    # the job rendered new exports for both members (a new policy) and fragments for the new one
    assert len(staged) == 9 and len(set(staged) - set(before)) == 5

    out = kit.service.steps.compensate(job, {"Error": "States.TaskFailed", "Cause": "generate crashed"})
    assert out == {"job_id": job, "compensated": True,
                   "error": {"code": "States.TaskFailed", "message": "generate crashed"}}
    assert objects(kit, file_id) == before  # nothing the job wrote is left, nothing of the file is gone
    assert kit.members(file_id) == members_before and kit.versions(file_id) == [1]
    assert sql(kit, "select count(*) as n from lora_training_job_items")[0]["n"] == 0
    row = kit.job(job)
    assert (row["status"], row["step"], row["error"]["code"]) == ("failed", "compensated", "States.TaskFailed")
    assert row["finished_at"] is not None
    # and the file takes the next add
    assert kit.run(kit.start(kind="add", conversation_ids=[new], file_id=file_id))["version"] == 2


def test_compensating_an_add_to_a_file_with_several_versions_keeps_every_version(kit: Kit):
    file_id = kit.create(kit.conversations(1))
    kit.run(kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id))
    kit.run(kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id))
    before = objects(kit, file_id)
    assert {k.split("/")[2] for k in before} == {"fragments", "v1", "v2", "v3"}
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.stage(job)
    kit.service.steps.compensate(job, {"Error": "States.TaskFailed", "Cause": "generate crashed"})
    assert objects(kit, file_id) == before
    for version in (1, 2, 3):
        a = kit.service.reading.artifact(OWNER, file_id, "json", version=version)
        assert kit.store.get(OUTPUT_BUCKET, a["key"])


def test_compensating_a_create_that_made_its_file_deletes_it_and_frees_the_name(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(3), name="Freed Name")
    file_id = kit.stage(job)["file_id"]
    assert kit.outputs(f"{file_id}/")  # its fragments are stored
    kit.service.steps.compensate(job)
    assert kit.file(file_id) is None and kit.outputs(f"{file_id}/") == set()
    row = kit.job(job)
    assert row["file_id"] is None and row["status"] == "failed"
    assert row["error"] == {"code": "failed", "message": "the job failed", "details": None}
    again = kit.create(kit.conversations(1), name="freed name")
    assert kit.file(again)["name"] == "freed name"


def test_compensating_a_job_that_never_got_a_file_only_fails_it(kit: Kit):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="never made")
    out = kit.service.steps.compensate(job, {"Error": "States.Timeout"})
    assert out == {"job_id": job, "compensated": True, "error": {"code": "States.Timeout", "message": "States.Timeout"}}
    assert sql(kit, "select count(*) as n from lora_training_files")[0]["n"] == 0
    assert kit.outputs() == set()


def test_compensating_a_job_that_succeeded_changes_nothing(kit: Kit):
    ids = kit.conversations(2)
    job = kit.start(kind="create", conversation_ids=ids, name="done")
    file_id = kit.run(job)["file_id"]
    before, row = objects(kit, file_id), kit.job(job)
    out = kit.service.steps.compensate(job, {"Error": "Late", "Cause": "a late failure"})
    assert out == {"job_id": job, "compensated": False, "status": "succeeded"}
    assert kit.job(job) == row and objects(kit, file_id) == before
    assert kit.file(file_id)["current_version"] == 1 and len(kit.members(file_id)) == 2


@pytest.mark.parametrize("job_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_compensating_an_unknown_job_is_not_found(kit: Kit, job_id: str):
    with pytest.raises(NotFound, match=f"job {job_id} not found"):
        kit.service.steps.compensate(job_id)


def test_compensating_an_add_that_failed_before_its_plan_leaves_the_file_as_it_was(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    before, members = objects(kit, file_id), kit.members(file_id)
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.service.steps.validate(job)  # create-file never ran: no base version, nothing staged
    assert kit.job(job)["base_version"] is None
    out = kit.service.steps.compensate(job, {"Error": "States.TaskFailed", "Cause": "create-file crashed"})
    assert out["compensated"] is True and kit.job(job)["status"] == "failed"
    assert objects(kit, file_id) == before and kit.members(file_id) == members
    assert kit.file(file_id)["current_version"] == 1


def test_compensation_waits_for_a_batch_that_is_staging_and_takes_back_what_it_staged(kit: Kit):
    """A batch stages under the job's row lock; compensation takes the same lock, so it runs
    after the batch's transaction and removes its items and fragments too."""
    import threading

    ids = kit.conversations(2)
    file_id = kit.create(ids)
    before = objects(kit, file_id)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)
    with connect(kit.url) as conn:
        [item] = conn.execute("select * from lora_training_job_items where job_id = %s", (job,)).fetchall()
    sql(kit, "delete from lora_training_job_items where job_id = %s", job)  # (the batch is about to stage it)

    done = threading.Event()
    with connect(kit.url) as batch:  # the staging transaction: job row locked, item written
        batch.execute("select id from lora_training_jobs where id = %s for update", (job,))
        cols = [c for c in item if c not in ("created_at", "updated_at")]
        from psycopg.types.json import Jsonb
        batch.execute(f"insert into lora_training_job_items ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})",
                      [Jsonb(item[c]) if isinstance(item[c], (dict, list)) else item[c] for c in cols])
        worker = threading.Thread(target=lambda: (kit.service.steps.compensate(job), done.set()))
        worker.start()
        assert not done.wait(2)  # compensation waits for the batch's transaction
        batch.commit()
    worker.join(30)
    assert done.is_set()
    assert sql(kit, "select count(*) as n from lora_training_job_items")[0]["n"] == 0
    assert objects(kit, file_id) == before


def test_compensation_decides_on_the_file_only_once_it_holds_the_file_row(kit: Kit):
    """Compensation reads the file's current version to decide whether the next version's
    artifacts are garbage. It locks the file row for that, so a transaction that holds the row
    (publication locks the file first) finishes before compensation reads it."""
    import threading

    file_id = kit.create(kit.conversations(2))
    before = objects(kit, file_id)
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.stage(job)
    done = threading.Event()
    with connect(kit.url) as holder:
        holder.execute("select id from lora_training_files where id = %s for update", (file_id,))
        worker = threading.Thread(target=lambda: (kit.service.steps.compensate(job), done.set()))
        worker.start()
        assert not done.wait(2)  # it waits for the file row
        assert kit.job(job)["status"] == "running"  # and has changed nothing yet
        holder.commit()
    worker.join(30)
    assert done.is_set() and kit.job(job)["status"] == "failed"
    assert objects(kit, file_id) == before and kit.file(file_id)["current_version"] == 1


def test_the_error_a_step_recorded_is_the_cause_compensation_keeps(kit: Kit):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="blocked inside")
    details = [{"conversation_id": ids[0], "code": "not_found", "message": "gone"}]
    kit.service.steps.record_failure(job, SelectionBlocked("x" * 900, details=details))
    out = kit.service.steps.compensate(job, {"Error": "SelectionBlocked", "Cause": "what the state machine saw"})
    stored = kit.job(job)["error"]
    assert stored["code"] == "selection_blocked" and stored["details"] == details and stored["message"] == "x" * 900
    assert out["error"]["code"] == "selection_blocked"
    assert len(out["error"]["message"]) <= 500 and out["error"]["message"].startswith("x" * 100)
    assert out["error"]["message"].endswith("more characters]")


LONG = "m" * 3000


@pytest.mark.parametrize("error, code, message", [
    (None, "failed", "the job failed"),
    ({}, "failed", "the job failed"),
    ({"Error": "States.TaskFailed", "Cause": json.dumps({"errorMessage": "boom", "errorType": "X"})},
     "States.TaskFailed", "boom"),
    ({"Error": "States.TaskFailed", "Cause": json.dumps({"errorType": "X"})},
     "States.TaskFailed", json.dumps({"errorType": "X"})),
    ({"Error": "States.TaskFailed", "Cause": '["a", "list"]'}, "States.TaskFailed", '["a", "list"]'),
    ({"Error": "States.Timeout", "Cause": "plain words"}, "States.Timeout", "plain words"),
    ({"Error": "States.Timeout", "Cause": None}, "States.Timeout", "States.Timeout"),
    ({"Cause": "no name"}, "Error", "no name"),
])
def test_the_state_machine_error_is_recorded_as_its_name_and_message(kit: Kit, error, code, message):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name=f"fails {uuid.uuid4()}")
    out = kit.service.steps.compensate(job, error)
    assert out["error"] == {"code": code, "message": message}
    assert kit.job(job)["error"] == {"code": code, "message": message, "details": None}


def test_a_huge_state_machine_error_is_stored_bounded(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="huge error")
    out = kit.service.steps.compensate(job, {"Error": "E" * 300, "Cause": json.dumps({"errorMessage": LONG})})
    stored = kit.job(job)["error"]
    # (clip keeps a little less than the limit: it says how much it cut)
    assert 180 <= len(stored["code"]) <= 200 and stored["code"].startswith("E" * 150)
    assert stored["code"].endswith("more characters]")
    assert 1950 <= len(stored["message"]) <= 2000 and stored["message"].startswith("m" * 1900)
    assert stored["message"].endswith("more characters]")
    assert 450 <= len(out["error"]["message"]) <= 500 and out["error"]["code"] == stored["code"]


# ---------------------------------------------------------------------------- publication

def test_a_published_version_is_what_the_database_says_it_is(kit: Kit):
    ids = kit.conversations(3)
    job = kit.start(kind="create", conversation_ids=ids, name="Ünïcode Review — 2026!")
    uploaded: dict[str, str] = {}
    put_file = kit.store.put_file

    def recording(bucket: str, key: str, path: Any, content_type: str = "?") -> None:
        uploaded[key] = content_type
        put_file(bucket, key, path, content_type=content_type)

    kit.store.put_file = recording
    file_id = kit.run(job)["file_id"]
    f, [v], members = kit.file(file_id), kit.service.reading.show_file(OWNER, file_id)["versions"], kit.members(file_id)
    assert [m["conversation_id"] for m in members] == ids and [m["position"] for m in members] == [1, 2, 3]

    # every artifact is stored where the version says, with its size, checksum and line count
    artifacts = v["artifacts"]
    assert set(artifacts) == set(ARTIFACTS)
    data = {}
    for name, a in artifacts.items():
        assert a["path"] == f"{OWNER}/{file_id}/v1/{a['file']}"
        data[name] = kit.store.get(OUTPUT_BUCKET, a["path"])
        assert (a["size"], a["sha256"], a["lines"]) == (len(data[name]), hashlib.sha256(data[name]).hexdigest(),
                                                         data[name].count(b"\n")), name
    assert kit.outputs(f"{file_id}/v1/") == {a["path"] for a in artifacts.values()}
    assert uploaded == {a["path"]: ARTIFACTS[name][1] for name, a in artifacts.items()}  # each with its type
    for fmt in ("json", "jsonl"):
        assert (v[f"{fmt}_path"], v[f"{fmt}_size"], v[f"{fmt}_sha256"]) == (
            artifacts[fmt]["path"], artifacts[fmt]["size"], artifacts[fmt]["sha256"])
        assert (f[f"{fmt}_path"], f[f"{fmt}_sha256"]) == (v[f"{fmt}_path"], v[f"{fmt}_sha256"])

    # training.json: the members in order, in the v4 layout
    doc = json.loads(data["json"])
    assert [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]] == ids
    assert data["json"].endswith(b"}\n  ]\n}\n") and b"[\n    {" in data["json"]
    meta = doc["training_file_metadata"]
    assert (meta["file_name"], meta["file_version"], meta["total_conversations"]) == ("Ünïcode Review — 2026!", 1, 3)
    assert meta["total_training_pairs"] == sum(m["training_pairs"] for m in members) == f["training_pair_count"]
    assert meta["total_turns"] == sum(m["pairs"] for m in members) == f["total_turns"]
    assert meta["vertical"] == "financial_planning_consultant" == f["vertical"]
    assert doc["consultant_profile"] == f["consultant_profile"] and doc["consultant_profile"]
    assert meta["quality_summary"] == f["quality_summary"] == v["quality_summary"]
    assert meta["scaffolding_distribution"] == f["scaffolding_distribution"] == v["scaffolding_distribution"]
    assert sum(meta["scaffolding_distribution"]["personas"].values()) == 3
    row = kit.job(job)
    assert meta["created_date"] == f["created_at"].astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    assert meta["last_updated"] == row["created_at"].astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    assert meta["target_model"] == f["target_model"] == v["policy"]["target_model"] == "mistral-7b-instruct-v0.2"
    lines = [json.loads(x) for x in data["jsonl"].splitlines()]
    assert lines[0]["_meta"]["total_pairs"] == len(lines) - 1 == meta["total_training_pairs"]

    # the manifest names every member, every artifact but itself, and the policy it was built under
    manifest = json.loads(data["manifest"])
    assert manifest["file"]["id"] == file_id and manifest["file"]["version"] == 1
    assert manifest["member_count"] == 3
    assert [(m["conversation_id"], m["source_file"], m["source_sha256"]) for m in manifest["members"]] == [
        (m["conversation_id"], m["source_file"], m["source_sha256"]) for m in members]
    assert all(m["split"] in ("train", "validation") for m in manifest["members"])
    assert manifest["artifacts"] == {k: {x: y for x, y in a.items() if x != "path"}
                                     for k, a in artifacts.items() if k != "manifest"}
    assert manifest["policy"] == v["policy"] == f["policy"]
    assert manifest["policy_digest"] == members[0]["policy_digest"]
    for fmt in EXPORT_FORMATS:
        assert manifest["tokens"][fmt]["lines"] == artifacts[fmt]["lines"]
        assert manifest["dataset"]["splits"]["lines"][fmt] == {
            s: artifacts[f"{fmt}_{s}"]["lines"] for s in ("train", "validation")}
        assert artifacts[f"{fmt}_train"]["lines"] + artifacts[f"{fmt}_validation"]["lines"] <= artifacts[fmt]["lines"]

    # the report: one entry per member in order, with its warnings and exports
    report = json.loads(data["report"])
    assert (report["file_id"], report["version"], report["file_name"]) == (file_id, 1, "Ünïcode Review — 2026!")
    assert [c["conversation_id"] for c in report["conversations"]] == ids
    assert [c["source_warnings"] for c in report["conversations"]] == [m["warnings"] for m in members]
    assert [c["exports"]["conversation_id"] for c in report["conversations"]] == ids  # each export entry names its own
    assert report["summary"]["conversations"] == 3 and report["summary"]["blocking_errors"] == 0
    assert report["summary"]["exports"] == v["export_summary"]
    warned = Counter(w["code"] for m in members for w in m["warnings"])
    assert report["summary"]["source_warnings_by_code"] == dict(warned) and warned
    assert "dataset_quality" in report

    # the LLaMA-Factory dataset key, and the file row and the job pointing at all of it
    assert list(json.loads(data["dataset_info"])) == ["lorafiles_n_code_review_2026"]
    assert (f["current_version"], f["status"], f["conversation_count"]) == (1, "ready", 3)
    row = kit.job(job)
    assert (row["status"], row["step"], row["published_version"], row["error"]) == ("succeeded", "published", 1, None)
    assert row["finished_at"] is not None
    assert sql(kit, "select count(*) as n from lora_training_job_items")[0]["n"] == 0


def test_each_version_is_built_from_the_members_then_the_new_ones(kit: Kit):
    first, second = kit.conversations(2), kit.conversations(3)
    file_id = kit.create(first)
    v1 = objects(kit, file_id)
    assert kit.run(kit.start(kind="add", conversation_ids=second, file_id=file_id))["version"] == 2
    doc = json.loads(kit.store.get(OUTPUT_BUCKET, kit.service.reading.artifact(OWNER, file_id, "json")["key"]))
    assert [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]] == first + second
    assert doc["training_file_metadata"]["file_version"] == 2
    manifest = json.loads(kit.store.get(OUTPUT_BUCKET, kit.service.reading.artifact(OWNER, file_id, "manifest")["key"]))
    assert [m["conversation_id"] for m in manifest["members"]] == first + second and manifest["member_count"] == 5
    assert {k: kit.store.get(OUTPUT_BUCKET, k) for k in v1} == v1  # version 1 untouched


def test_generate_run_again_after_publishing_returns_the_same_version(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="twice")
    out = kit.run(job)
    before, row = objects(kit, out["file_id"]), kit.job(job)
    assert kit.service.steps.generate(job) == out == {"job_id": job, "file_id": out["file_id"], "version": 1}
    assert objects(kit, out["file_id"]) == before and kit.job(job) == row and kit.versions(out["file_id"]) == [1]


def test_generate_of_an_unknown_job_is_not_found(kit: Kit):
    job_id = str(uuid.uuid4())
    with pytest.raises(NotFound, match=f"job {job_id} not found"):
        kit.service.steps.generate(job_id)


def test_generate_before_every_batch_is_staged_publishes_nothing(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(5), name="half staged")
    kit.service.steps.validate(job)
    out = kit.service.steps.create_file(job)
    assert out["batches"] == [0, 1, 2]
    kit.service.steps.append_batch(job, 1)
    with pytest.raises(JobStateError, match=r"batches \[0, 2\] are not staged yet"):
        kit.service.steps.generate(job)
    assert kit.file(out["file_id"])["current_version"] == 0 and kit.versions(out["file_id"]) == []
    assert kit.outputs(f"{out['file_id']}/v1/") == set()


def test_a_member_staged_under_another_policy_is_never_published(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)
    sql(kit, "update lora_training_job_items set policy_digest = 'another' where job_id = %s", job)
    with pytest.raises(JobStateError, match=f"member {new} was rendered under another training policy"):
        kit.service.steps.generate(job)
    assert kit.file(file_id)["current_version"] == 1 and kit.outputs(f"{file_id}/v2/") == set()


def test_a_version_with_no_conversation_is_never_published(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="emptied")
    file_id = kit.stage(job)["file_id"]
    sql(kit, "delete from lora_training_job_items where job_id = %s", job)  # (staged rows lost)
    with pytest.raises(JobStateError, match="0 of its 1 conversations are staged"):
        kit.service.steps.generate(job)
    sql(kit, "update lora_training_jobs set requested_ids = '{}' where id = %s", job)  # (and its plan)
    with pytest.raises(JobStateError, match="would hold no conversation"):
        kit.service.steps.generate(job)
    assert kit.file(file_id)["current_version"] == 0 and kit.outputs(f"{file_id}/v1/") == set()


def test_the_fragments_are_made_durable_before_the_database_publishes(kit: Kit, monkeypatch):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="durable")
    file_id = kit.stage(job)["file_id"]
    seen: list[int] = []
    monkeypatch.setattr(kit.store.inner, "sync", lambda: seen.append(kit.file(file_id)["current_version"]))
    kit.service.steps.generate(job)
    assert seen == [0] and kit.file(file_id)["current_version"] == 1


def mark_stale(kit: Kit, file_id: str) -> None:
    with connect(kit.url) as conn:
        Repository(conn).mark_stale([file_id])
        conn.commit()


def test_an_add_to_a_stale_file_publishes_it_still_stale(kit: Kit):
    file_id = kit.create(kit.conversations(1))
    mark_stale(kit, file_id)
    since = kit.file(file_id)["stale_since"]
    assert kit.run(kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id))["version"] == 2
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"]) == ("stale", since)


def test_a_regeneration_clears_the_staleness_it_has_read_and_only_that(kit: Kit):
    file_id = kit.create(kit.conversations(2))
    mark_stale(kit, file_id)
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    assert kit.run(job)["version"] == 2
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"]) == ("ready", None)

    mark_stale(kit, file_id)
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    kit.stage(job)
    mark_stale(kit, file_id)  # a source changed while the regeneration ran: it may have read the old one
    since = kit.file(file_id)["stale_since"]
    assert kit.service.steps.generate(job)["version"] == 3
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"]) == ("stale", since)


def test_a_change_stamped_when_the_regeneration_was_registered_was_read_by_it(kit: Kit):
    """Staleness stamped at the very instant the regeneration job was registered is a change its
    batches read afterwards (they read the sources after registration): publishing clears it.
    Only a later stamp is a change the regeneration may have missed."""
    file_id = kit.create(kit.conversations(2))
    mark_stale(kit, file_id)
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    kit.stage(job)
    sql(kit, "update lora_training_files set stale_since = (select created_at from lora_training_jobs where id = %s)"
             " where id = %s", job, file_id)
    assert kit.service.steps.generate(job)["version"] == 2
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"]) == ("ready", None)


def test_dataset_names_are_lower_snake_case_ascii():
    assert _dataset_name("Client Calls — Q3 2026") == "lorafiles_client_calls_q3_2026"
    assert _dataset_name("__Ünïcode__ Review") == "lorafiles_n_code_review"
    assert _dataset_name("déjà-vu") == "lorafiles_d_j_vu"
    assert _dataset_name("!!!") == _dataset_name("日本") == "lorafiles_training_file"


class _Store:
    """Answers each member's first object last (read-ahead must still yield in member order)."""

    def __init__(self) -> None:
        self.read: list[str] = []
        self.buckets: set[str] = set()

    def get(self, bucket: str, key: str) -> bytes:
        import time

        time.sleep(0.01 if key.endswith("/json_fragment_key") else 0.0)
        self.buckets.add(bucket)
        self.read.append(key)
        return key.encode()


@pytest.mark.parametrize("window", [1, 2, 64])
def test_members_are_read_in_order_whatever_the_read_ahead(window: int):
    from concurrent.futures import ThreadPoolExecutor

    entries = [{k: f"{i}/{k}" for k in FRAGMENT_KEYS} | {"conversation_id": str(i)} for i in range(5)]
    store = _Store()
    with ThreadPoolExecutor(4) as pool:
        got = list(read_members(store, pool, iter(entries), window=window))
    assert [(e["conversation_id"], a, b, c) for e, a, b, c in got] == [
        (str(i), f"{i}/json_fragment_key".encode(), f"{i}/jsonl_fragment_key".encode(),
         f"{i}/exports_fragment_key".encode()) for i in range(5)]
    assert sorted(store.read) == sorted(v for e in entries for k, v in e.items() if k in FRAGMENT_KEYS)
    assert store.buckets == {OUTPUT_BUCKET}


def test_reading_ahead_is_bounded():
    """At most `window` members are read ahead of the one being written."""
    from concurrent.futures import ThreadPoolExecutor

    consumed: list[int] = []
    store = _Store()

    def entries():
        for i in range(10):
            # member i is only asked for once the writer holds member i - window
            assert i - len(consumed) <= 3, (i, consumed)
            yield {k: f"{i}/{k}" for k in FRAGMENT_KEYS} | {"conversation_id": str(i)}

    with ThreadPoolExecutor(2) as pool:
        for e, *_ in read_members(store, pool, entries(), window=3):
            consumed.append(int(e["conversation_id"]))
    assert consumed == list(range(10))


def test_a_state_machine_error_is_bounded_at_its_limits():
    """`lorafiles status` shows this shape directly (no cap_error after it): the name at most 200
    characters, the message at most 2,000, whatever Step Functions sends."""
    from lorafiles.usecases.steps import error_from_state_machine

    for n in (200, 201, 5000):
        err = error_from_state_machine({"Error": "E" * n, "Cause": "c" * (n * 10)})
        assert len(err["code"]) <= 200 and len(err["message"]) <= 2000 and err["details"] is None
        assert (err["code"] == "E" * n) == (n <= 200) and (err["message"] == "c" * (n * 10)) == (n * 10 <= 2000)
    assert error_from_state_machine({"Error": "E" * 200, "Cause": "c" * 2000}) == {
        "code": "E" * 200, "message": "c" * 2000, "details": None}
    one_over = error_from_state_machine({"Error": "E" * 201, "Cause": "c" * 2001})
    assert len(one_over["code"]) <= 200 and len(one_over["message"]) <= 2000


def test_while_its_version_uploads_the_job_says_it_is_generating(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="generating")
    kit.stage(job)
    seen: list[tuple[str, str]] = []
    kit.store.before_put_file = lambda bucket, key: seen.append((kit.job(job)["status"], kit.job(job)["step"]))
    kit.service.steps.generate(job)
    assert seen and set(seen) == {("running", "generate")}


def _in_thread(fn):
    import threading

    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            out["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    return t, out


def test_a_job_failed_by_another_transaction_while_it_publishes_is_not_published(kit: Kit):
    """The reaper fails the job (its transaction holds the job row) while generate uploads its
    artifacts: generate's publishing transaction waits for it, then sees the job failed."""
    import threading
    import time

    import psycopg

    file_id = kit.create(kit.conversations(1))
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.stage(job)
    reaper = psycopg.connect(kit.url)
    committer: list[threading.Thread] = []

    def reap(bucket: str, key: str) -> None:
        kit.store.before_put_file = None
        reaper.execute("update lora_training_jobs set status = 'failed', step = 'compensated' where id = %s", (job,))

        def commit_later() -> None:
            time.sleep(3)  # generate has reached the job row by then
            reaper.commit()

        committer.append(threading.Thread(target=commit_later))
        committer[0].start()

    kit.store.before_put_file = reap
    try:
        with pytest.raises(JobStateError, match="no longer running"):
            kit.service.steps.generate(job)
    finally:
        for t in committer:
            t.join(30)
        reaper.close()
    row = kit.job(job)
    assert (row["status"], row["published_version"]) == ("failed", None)
    assert kit.file(file_id)["current_version"] == 1 and kit.versions(file_id) == [1]


def test_a_file_marked_stale_while_a_version_publishes_stays_stale(kit: Kit):
    """A source changed (the file row is marked stale in another transaction) while an add
    publishes: the publish waits for the mark and keeps it."""
    import time

    file_id = kit.create(kit.conversations(1))
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.stage(job)
    with connect(kit.url) as marker:
        [mark] = Repository(marker).mark_stale([file_id])
        t, out = _in_thread(lambda: kit.service.steps.generate(job))
        time.sleep(3)
        marker.commit()
    t.join(60)
    assert out.get("result", {}).get("version") == 2, out
    f = kit.file(file_id)
    assert (f["status"], f["stale_since"], f["current_version"]) == ("stale", mark["stale_since"], 2)


def test_a_file_whose_version_moved_without_a_version_row_is_not_published_over(kit: Kit):
    file_id = kit.create(kit.conversations(1))
    job = kit.start(kind="add", conversation_ids=kit.conversations(1), file_id=file_id)
    kit.stage(job)
    sql(kit, "update lora_training_files set current_version = 2 where id = %s", file_id)
    with pytest.raises(JobStateError, match="moved to version 2 meanwhile"):
        kit.service.steps.generate(job)
    assert kit.versions(file_id) == [1] and kit.job(job)["status"] == "running"


def test_compensation_removes_fragments_a_batch_wrote_but_never_staged(kit: Kit):
    """A batch stores its fragments first and then stages them; one that crashed in between left
    objects no row names. Compensation finds them by listing the file's fragments."""
    file_id = kit.create(kit.conversations(1))
    before = objects(kit, file_id)
    job = kit.start(kind="add", conversation_ids=kit.conversations(2), file_id=file_id)
    kit.stage(job)
    sql(kit, "delete from lora_training_job_items where job_id = %s", job)  # (the staging never committed)
    assert len(objects(kit, file_id)) == len(before) + 6
    kit.service.steps.compensate(job)
    assert objects(kit, file_id) == before


def _ends_at_the_real_time(kit: Kit, monkeypatch, job: str, step: Any) -> dict[str, Any]:
    """Run `step(job)` under a local clock of UTC+5:30 (a naive local time would be hours off);
    the job row it leaves, whose finished_at must be the real time."""
    import time
    from datetime import datetime, timedelta

    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    try:
        step(job)
    finally:
        monkeypatch.undo()
        time.tzset()
    row = kit.job(job)
    assert abs(row["finished_at"] - datetime.now(timezone.utc)) < timedelta(minutes=5)
    return row


def test_a_job_ends_at_the_real_time_whatever_the_local_time_zone(kit: Kit, monkeypatch):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="time zones")
    assert _ends_at_the_real_time(kit, monkeypatch, job, kit.service.steps.compensate)["status"] == "failed"


def test_a_published_job_ends_at_the_real_time_whatever_the_local_time_zone(kit: Kit, monkeypatch):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="published time zones")
    kit.stage(job)
    assert _ends_at_the_real_time(kit, monkeypatch, job, kit.service.steps.generate)["status"] == "succeeded"


def test_a_job_that_publishes_after_a_retried_failure_reports_no_error(kit: Kit):
    """A step that failed transiently records its error; the retry that goes on to publish leaves
    the job succeeded with no error (the stale one is cleared)."""
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="retried")
    kit.stage(job)
    sql(kit, """update lora_training_jobs set error = '{"code": "transient", "message": "S3 timed out"}'::jsonb
                 where id = %s""", job)
    assert kit.job(job)["error"]["code"] == "transient"
    kit.service.steps.generate(job)
    row = kit.job(job)
    assert (row["status"], row["error"]) == ("succeeded", None)


def test_a_failure_without_a_message_is_reported_without_one(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="no message")
    kit.service.steps.record_failure(job, JobStateError(""))
    out = kit.service.steps.compensate(job)
    assert out["error"] == {"code": kit.job(job)["error"]["code"], "message": ""}


@pytest.mark.parametrize("length", [500, 501])
def test_the_task_result_carries_at_most_500_characters_of_the_message(kit: Kit, length: int):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name=f"message {length}")
    out = kit.service.steps.compensate(job, {"Error": "X", "Cause": "w" * length})
    assert kit.job(job)["error"]["message"] == "w" * length  # the job row keeps it whole
    assert len(out["error"]["message"]) <= 500 and (out["error"]["message"] == "w" * length) == (length <= 500)


@pytest.mark.parametrize("model", [None, "qwen2.5-7b-instruct"])
def test_a_job_and_file_from_before_training_policies_publish_under_the_deployment_default(kit: Kit, model):
    """(the default for the file's target model: a legacy file of another model keeps it)"""
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="legacy policy",
                    policy={"target_model": model} if model else None)
    file_id = kit.stage(job)["file_id"]
    sql(kit, "update lora_training_jobs set policy = null where id = %s", job)
    sql(kit, "update lora_training_files set policy = '{}' where id = %s", file_id)
    assert kit.service.steps.generate(job)["version"] == 1
    default = kit.service.settings.default_policy(target_model=kit.file(file_id)["target_model"])
    [v] = kit.service.reading.show_file(OWNER, file_id)["versions"]
    assert v["policy"] == default.model_dump(mode="json")


def test_a_store_without_sync_publishes_all_the_same(kit: Kit):
    """Object stores that are durable on PUT (S3, Supabase) have no sync()."""
    class DurableOnPut:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name == "sync":
                raise AttributeError(name)
            return getattr(self._inner, name)

    kit.store.inner = DurableOnPut(kit.store.inner)
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="no sync")
    assert kit.run(job)["version"] == 1
