"""The repository's queries, each for what its callers rely on, on a real PostgreSQL: whose rows
a lookup returns (the owner's only), in which order (newest file first, members by position,
jobs oldest first where one is picked), and which rows the maintenance queries pick (stuck and
active jobs, stale files, the objects still named by a file)."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from lorafiles.db.connect import connect
from lorafiles.db.repository import Repository, is_uuid

from stepkit import OWNER, Kit, make_kit

OTHER = "0d0d0d0d-2222-4222-8222-000000000002"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture
def kit(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path)
    yield k
    k.service.db.close()


@pytest.fixture
def repo(db_url):
    with connect(db_url) as conn:
        yield Repository(conn)


def job_row(owner: str = OWNER, **kw: Any) -> dict[str, Any]:
    return {"owner_id": owner, "file_id": None, "kind": "create", "file_name": f"f {uuid.uuid4()}",
            "description": None, "requested_ids": ["c"], "batch_size": 1, "total_batches": 1,
            "idempotency_key": str(uuid.uuid4()), "created_at": T0, **kw}


def test_files_are_the_owners_newest_first(repo: Repository):
    old = repo.insert_file(OWNER, "old", None, "m", created_at=T0)
    new = repo.insert_file(OWNER, "new", None, "m", created_at=T0 + timedelta(days=1))
    repo.insert_file(OTHER, "theirs", None, "m", created_at=T0 + timedelta(days=2))
    assert [f["name"] for f in repo.files(OWNER)] == ["new", "old"]
    assert repo.file(str(old["id"]), OWNER)["name"] == "old"
    assert repo.file(str(old["id"]), OTHER) is None and repo.file(str(new["id"]))["name"] == "new"
    assert repo.file_by_name(OWNER, "  NEW ")["id"] == new["id"] and repo.file_by_name(OTHER, "new") is None


def test_a_job_is_inserted_once_per_key(repo: Repository):
    row = job_row()
    first, created = repo.insert_job(row)
    again, created_again = repo.insert_job({**row, "file_name": "another"})
    assert created is True and created_again is False
    assert again["id"] == first["id"] and again["file_name"] == row["file_name"]
    assert repo.job_by_key(OWNER, row["idempotency_key"])["id"] == first["id"]
    assert repo.job_by_key(OTHER, row["idempotency_key"]) is None
    assert repo.job(str(first["id"]), OTHER) is None and repo.job(str(first["id"]), OWNER)["id"] == first["id"]


def test_the_jobs_of_a_file_newest_first_and_its_active_one(repo: Repository):
    f = repo.insert_file(OWNER, "jobs", None, "m", created_at=T0)
    fid = str(f["id"])
    rows = []
    for h, ended in enumerate(("succeeded", "failed", None)):  # one active job per file at a time
        rows.append(repo.insert_job(job_row(file_id=fid, kind="add", created_at=T0 + timedelta(hours=h)))[0])
        if ended:
            assert repo.active_job_for_file(fid)["id"] == rows[-1]["id"]
            repo.update_job(str(rows[-1]["id"]), status=ended)
    assert [j["id"] for j in repo.jobs_for_file(fid)] == [r["id"] for r in reversed(rows)]
    assert [j["id"] for j in repo.jobs_for_file(fid, limit=2)] == [rows[2]["id"], rows[1]["id"]]
    assert repo.active_job_for_file(fid)["id"] == rows[2]["id"]
    repo.update_job(str(rows[2]["id"]), status="succeeded")
    assert repo.active_job_for_file(fid) is None


def test_stuck_jobs_are_the_active_ones_not_touched_for_the_timeout_oldest_first(repo: Repository):
    jobs = {name: repo.insert_job(job_row())[0] for name in ("queued_old", "running_older", "recent", "done_old")}
    repo.update_job(str(jobs["running_older"]["id"]), status="running")
    repo.update_job(str(jobs["done_old"]["id"]), status="succeeded")
    repo.conn.execute("set session_replication_role = replica")  # (no updated_at trigger: set it by hand)
    for name, minutes in (("queued_old", 30), ("running_older", 60), ("recent", 1), ("done_old", 90)):
        repo.conn.execute("update lora_training_jobs set updated_at = now() - make_interval(mins => %s) where id = %s",
                          (minutes, jobs[name]["id"]))
    repo.conn.execute("set session_replication_role = origin")
    assert [j["id"] for j in repo.stuck_jobs(600)] == [jobs["running_older"]["id"], jobs["queued_old"]["id"]]
    assert [j["id"] for j in repo.stuck_jobs(45 * 60)] == [jobs["running_older"]["id"]]
    assert {j["id"] for j in repo.active_jobs()} == {jobs[n]["id"] for n in ("queued_old", "running_older", "recent")}
    assert [j["id"] for j in repo.active_jobs()] == [j["id"] for j in sorted(
        (jobs[n] for n in ("queued_old", "running_older", "recent")), key=lambda j: j["created_at"])]


def test_member_lookups(kit: Kit):
    ids = kit.conversations(4)
    file_id = kit.create(ids)
    with connect(kit.url) as conn:
        repo = Repository(conn)
        assert repo.member_ids(file_id) == set(ids)
        assert repo.member_ids(file_id, [ids[1], "nope"]) == {ids[1]}
        assert repo.member_ids(file_id, []) == set()
        by_prefix = repo.member_ids_with_prefixes(file_id, 8, [ids[3][:8], ids[0][:8]])
        assert by_prefix == [ids[0], ids[3]]  # file order, whatever the order asked
        assert repo.member_ids_with_prefixes(file_id, 8, [ids[0][:7]]) == []
        assert [m["conversation_id"] for m in repo.members(file_id)] == ids
        assert set(repo.members_by_ids(file_id, ids[:2])) == set(ids[:2])
        digest = repo.members(file_id)[0]["policy_digest"]
        assert repo.members_rendered_otherwise(file_id, digest) == []
        conn.execute("update lora_training_file_members set policy_digest = null where conversation_id = %s", (ids[2],))
        conn.execute("update lora_training_file_members set policy_digest = 'x' where conversation_id = %s", (ids[0],))
        assert repo.members_rendered_otherwise(file_id, digest) == [ids[0], ids[2]]
        keys = repo.referenced_fragment_keys(file_id)
        assert keys == {m[k] for m in repo.members(file_id)
                        for k in ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key")}
        assert len(keys) == 12


def test_staged_items_of_a_job(kit: Kit):
    ids = kit.conversations(3)
    job = kit.start(kind="create", conversation_ids=ids, name="staged")
    kit.stage(job)
    with connect(kit.url) as conn:
        repo = Repository(conn)
        assert repo.count_items(job) == 3
        first = repo.first_item(job)
        assert set(first) == {"vertical", "consultant_profile"} and first["vertical"]
        conn.execute("update lora_training_job_items set vertical = 'later' where job_id = %s and position > 0", (job,))
        assert repo.first_item(job)["vertical"] == first["vertical"]
        assert len(repo.item_fragment_keys(job)) == 9
        assert repo.first_item(str(uuid.uuid4())) is None and repo.count_items(str(uuid.uuid4())) == 0


def test_the_version_entries_are_the_members_then_the_new_ones(kit: Kit):
    first = kit.conversations(2)
    file_id = kit.create(first)
    second = kit.conversations(2)
    job = kit.start(kind="add", conversation_ids=second, file_id=file_id)
    kit.stage(job)
    with connect(kit.url) as conn:
        repo = Repository(conn)
        entries = list(repo.version_entries(file_id, job))
        assert [e["conversation_id"] for e in entries] == first + second
        members = {m["conversation_id"]: m for m in repo.members(file_id)}
        for e in entries[:2]:
            assert e["json_fragment_key"] == members[e["conversation_id"]]["json_fragment_key"]
        assert all(e["policy_digest"] and e["export_stats"] for e in entries)


def test_what_a_regeneration_publishes_replaces_the_members_in_place(kit: Kit):
    ids = kit.conversations(3)
    file_id = kit.create(ids)
    before = {m["conversation_id"]: m for m in kit.members(file_id)}
    job = str(kit.service.jobs.start_regenerate(OWNER, file_id)["id"])
    kit.run(job)
    after = kit.members(file_id)
    assert [m["conversation_id"] for m in after] == ids and [m["position"] for m in after] == [1, 2, 3]
    assert all(str(m["job_id"]) == job for m in after)
    assert all(m["json_fragment_key"] == before[m["conversation_id"]]["json_fragment_key"] for m in after)


def test_the_batch_ids_of_a_file_are_its_members_distinct_batches(kit: Kit):
    batch_a, batch_b = str(uuid.uuid4()), str(uuid.uuid4())
    file_id = kit.create(kit.conversations(2))
    with connect(kit.url) as conn:
        conn.execute("insert into batch_jobs (id, name, status, job_type, created_by) values "
                     "(%s, 'a', 'completed', 'generation', %s), (%s, 'b', 'completed', 'generation', %s)",
                     (batch_a, OWNER, batch_b, OWNER))
        conn.commit()
    new = kit.conversations(3)
    with connect(kit.url) as conn:
        for cid, batch in zip(new, (batch_b, batch_a, batch_b)):
            conn.execute("update conversations set batch_id = %s where conversation_id = %s", (batch, cid))
        conn.commit()
    kit.run(kit.start(kind="add", conversation_ids=new, file_id=file_id))
    assert [str(b) for b in kit.file(file_id)["batch_ids"]] == sorted([batch_a, batch_b])


def test_marking_stale_reports_what_it_touched_and_keeps_the_first_mark(kit: Kit):
    file_id = kit.create(kit.conversations(1))
    other = kit.create(kit.conversations(1))
    with connect(kit.url) as conn:
        repo = Repository(conn)
        [touched] = repo.mark_stale([file_id])
        assert (str(touched["id"]), str(touched["owner_id"]), touched["previous_status"]) == (file_id, OWNER, "ready")
        conn.commit()
        [again] = repo.mark_stale([file_id])  # no active job: the first mark stands
        assert again["previous_status"] == "stale" and again["stale_since"] == touched["stale_since"]
        assert [str(f["id"]) for f in repo.stale_files()] == [file_id]
        repo.mark_stale([other])
        assert [str(f["id"]) for f in repo.stale_files()] == [file_id, other]  # oldest mark first


def test_a_conversation_by_its_key_and_the_files_that_hold_it(kit: Kit):
    ids = kit.conversations(2)
    a = kit.create(ids)
    b = kit.create(ids[:1])
    with connect(kit.url) as conn:
        repo = Repository(conn)
        conv = repo.conversation(ids[0])
        assert conv["conversation_id"] == ids[0] and str(conv["created_by"]) == OWNER
        assert repo.conversation("nope") is None
        held = repo.memberships(ids[0])
        assert [str(m["file_id"]) for m in held] == sorted([a, b]) and all(m["status"] == "ready" for m in held)
        assert [str(m["file_id"]) for m in repo.memberships(ids[1])] == [a]
        conn.execute("update conversations set enriched_at = %s where conversation_id = %s", (T0, ids[0]))
        conn.execute("update conversations set enriched_at = %s where conversation_id = %s",
                      (T0 + timedelta(days=3), ids[1]))
        assert repo.last_enriched_at(a) == T0 + timedelta(days=3) and repo.last_enriched_at(b) == T0


def test_jobs_with_a_key_prefix_are_the_owners_for_that_file_in_order(repo: Repository):
    f = repo.insert_file(OWNER, "keys", None, "m", created_at=T0)
    fid = str(f["id"])
    mine = []
    for i, key in enumerate((f"stale:{fid}:0", f"stale:{fid}:1", "other:1")):
        mine.append(repo.insert_job(job_row(file_id=fid, kind="regenerate", idempotency_key=key,
                                            created_at=T0 + timedelta(minutes=5 - i)))[0])
        repo.update_job(str(mine[-1]["id"]), status="succeeded")
    found = repo.jobs_with_key_prefix(OWNER, fid, f"stale:{fid}:")
    assert [j["id"] for j in found] == [mine[1]["id"], mine[0]["id"]]
    assert repo.jobs_with_key_prefix(OTHER, fid, f"stale:{fid}:") == []


def test_the_objects_a_file_still_names(kit: Kit):
    ids = kit.conversations(2)
    file_id = kit.create(ids)
    [new] = kit.conversations(1)
    job = kit.start(kind="add", conversation_ids=[new], file_id=file_id)
    kit.stage(job)
    prefix = f"{OWNER}/{file_id}/"
    with connect(kit.url) as conn:
        repo = Repository(conn)
        members = repo.referenced_fragment_keys(file_id)
        staged = set(repo.item_fragment_keys(job))
        assert repo.referenced_object_keys(file_id, prefix, job) >= members
        assert not (repo.referenced_object_keys(file_id, prefix, job) & (staged - members))
        assert repo.referenced_object_keys(file_id, prefix, str(uuid.uuid4())) >= members | staged
        assert repo.referenced_object_keys(file_id, f"{OWNER}/elsewhere/", str(uuid.uuid4())) == set()


@pytest.mark.parametrize("value, ok", [
    ("0d0d0d0d-1111-4111-8111-000000000001", True), ("0D0D0D0D-1111-4111-8111-00000000000A", True),
    (uuid.UUID(int=5), True), ("0d0d0d0d111141118111000000000001", False),
    ("{0d0d0d0d-1111-4111-8111-000000000001}", False), ("urn:uuid:0d0d0d0d-1111-4111-8111-000000000001", False),
    ("0d0d0d0d-1111-4111-8111-0000000000011", False), ("", False), (None, False), (5, False),
])
def test_ids_are_uuids_only_in_the_hyphenated_form(value, ok):
    assert is_uuid(value) is ok


def test_reading_a_file_does_not_wait_for_a_publication_holding_its_row(kit: Kit):
    """A file is read without a row lock unless the caller asks for one: the owner's page and
    downloads answer while a publication (which holds the file row) is still running."""
    from stepkit import InThread

    file_id = kit.create(kit.conversations(1), name="read while locked")
    reading = kit.service.reading
    with connect(kit.url) as holder:
        holder.execute("select id from lora_training_files where id = %s for update", (file_id,))
        shown: list[dict[str, Any]] = []
        worker = InThread(lambda: shown.extend([reading.show_file(OWNER, file_id),
                                                reading.artifact(OWNER, file_id, "jsonl")]))
        worker.join(15)
        alive = worker.is_alive()
        holder.rollback()
    worker.join(15)
    assert not alive and not worker.errors, worker.errors
    assert shown[0]["file"]["current_version"] == 1 and shown[1]
