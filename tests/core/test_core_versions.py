"""add publishes version N+1 with the union of members; version N stays byte-for-byte downloadable.
batch_id flows from batch_items into the JSON and the file's batch_ids. A file missing from
storage fails the job with a per-conversation `file_missing` error and leaves the file as it was."""
from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from lorafiles.errors import SelectionBlocked

from core_harness import INPUT_BUCKET, OUTPUT_BUCKET, OWNER, Harness


def member_ids(h: Harness, file_id: str) -> list[str]:
    return [m["conversation_id"] for m in h.service.reading.show_file(OWNER, file_id)["members"]]


def json_ids(doc: dict) -> list[str]:
    return [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]]


def test_add_publishes_the_next_version_and_keeps_the_previous_one(h: Harness, tmp_path: Path):
    first, second, third = h.generate(3), h.generate(2), h.generate(1)
    file_id = str(h.create(first, name="Versioned")["file_id"])
    v1 = {fmt: h.artifact_bytes(file_id, fmt) for fmt in ("json", "jsonl")}
    v1_keys = {fmt: h.service.reading.artifact(OWNER, file_id, fmt)["key"] for fmt in ("json", "jsonl")}

    job = h.add(file_id, second)
    assert job["status"] == "succeeded", job["error"]
    assert job["published_version"] == 2
    f = h.service.reading.show_file(OWNER, file_id)["file"]
    assert f["current_version"] == 2 and f["conversation_count"] == 5
    assert member_ids(h, file_id) == first + second
    doc2 = h.full_json(file_id)
    assert json_ids(doc2) == first + second                  # the union, in order, no duplicate
    assert doc2["training_file_metadata"]["file_version"] == 2
    assert doc2["training_file_metadata"]["total_conversations"] == 5
    lines = h.jsonl_lines(file_id)
    assert len(lines) - 1 == lines[0]["_meta"]["total_pairs"] == doc2["training_file_metadata"]["total_training_pairs"]
    assert {r["conversation_id"] for r in lines[1:]} == set(first + second)

    # version 1: same keys, same bytes, still downloadable through the service
    for fmt in ("json", "jsonl"):
        a = h.service.reading.artifact(OWNER, file_id, fmt, version=1)
        assert a["key"] == v1_keys[fmt] and "/v1/" in a["key"]
        assert h.store.get(OUTPUT_BUCKET, a["key"]) == v1[fmt]
        assert a["sha256"] == hashlib.sha256(v1[fmt]).hexdigest() and a["size"] == len(v1[fmt])
        out = h.service.reading.download(OWNER, file_id, fmt, tmp_path / f"v1.{fmt}", version=1)
        assert Path(out["path"]).read_bytes() == v1[fmt]
    doc1 = h.full_json(file_id, version=1)
    assert json_ids(doc1) == first
    m1, m2 = doc1["training_file_metadata"], doc2["training_file_metadata"]
    assert m2["created_date"] == m1["created_date"]  # same file, new version
    assert datetime.fromisoformat(m2["last_updated"]) >= datetime.fromisoformat(m1["last_updated"]) >= \
        datetime.fromisoformat(m1["created_date"])

    # and once more: v3 = v2 + third, v1 and v2 untouched
    v2 = {fmt: h.artifact_bytes(file_id, fmt, 2) for fmt in ("json", "jsonl")}
    assert h.add(file_id, third)["status"] == "succeeded"
    assert json_ids(h.full_json(file_id)) == first + second + third
    for fmt in ("json", "jsonl"):
        assert h.artifact_bytes(file_id, fmt, 1) == v1[fmt]
        assert h.artifact_bytes(file_id, fmt, 2) == v2[fmt]
    versions = h.service.reading.show_file(OWNER, file_id)["versions"]
    assert [(v["version"], v["conversation_count"]) for v in versions] == [(1, 3), (2, 5), (3, 6)]


def test_add_after_add_of_the_same_id_is_blocked_not_duplicated(h: Harness):
    ids = h.generate(2)
    file_id = str(h.create(ids[:1])["file_id"])
    assert h.add(file_id, ids[1:])["status"] == "succeeded"
    with pytest.raises(SelectionBlocked) as info:
        h.add(file_id, ids[1:])
    assert [(d["conversation_id"], d["code"]) for d in info.value.details] == [(ids[1], "already_in_file")]
    assert json_ids(h.full_json(file_id)) == ids
    assert h.service.reading.show_file(OWNER, file_id)["file"]["current_version"] == 2


def test_batch_id_flows_from_batch_items_into_the_outputs(h: Harness):
    batch_a, batch_b = str(uuid.uuid4()), str(uuid.uuid4())
    a = h.generate(2, batch_id=batch_a)       # import --batch-id writes batch_items
    plain = h.generate(1)                      # no batch
    late = h.generate(1)                       # linked below, straight through batch_items
    with h.sql() as conn:
        batch_c = str(conn.execute("insert into batch_jobs (name, status, created_by, job_type) "
                                   "values ('real batch', 'completed', %s, 'generation') returning id",
                                   (OWNER,)).fetchone()["id"])
        conn.execute("""insert into batch_items (batch_job_id, position, status, conversation_id)
                        select %s, 1, 'completed', id from conversations where conversation_id = %s""",
                     (batch_c, late[0]))
    b = h.generate(1, batch_id=batch_b)

    file_id = str(h.create(a + plain + late, name="Batches")["file_id"])
    doc = h.full_json(file_id)
    got = {c["conversation_metadata"]["conversation_id"]: c["conversation_metadata"]["batch_id"] for c in doc["conversations"]}
    assert got == {a[0]: batch_a, a[1]: batch_a, plain[0]: None, late[0]: batch_c}
    f = h.service.reading.show_file(OWNER, file_id)["file"]
    assert sorted(str(x) for x in f["batch_ids"]) == sorted([batch_a, batch_c])

    assert h.add(file_id, b)["status"] == "succeeded"
    doc2 = h.full_json(file_id)
    assert doc2["conversations"][-1]["conversation_metadata"]["batch_id"] == batch_b
    shown = h.service.reading.show_file(OWNER, file_id)
    assert sorted(str(x) for x in shown["file"]["batch_ids"]) == sorted([batch_a, batch_b, batch_c])
    assert {m["conversation_id"]: (str(m["batch_id"]) if m["batch_id"] else None) for m in shown["members"]} == {
        **got, b[0]: batch_b}


def test_missing_enriched_file_fails_the_job_and_leaves_the_file_unchanged(h: Harness):
    kept, lost, fine = h.generate(2), h.generate(1), h.generate(1)
    file_id = str(h.create(kept, name="Stable")["file_id"])
    h.store.delete(INPUT_BUCKET, h.input_key(lost[0]))
    assert not h.store.exists(INPUT_BUCKET, h.input_key(lost[0]))
    before_rows, before_counts = h.file_rows(), h.table_counts()
    before_out = {k: v for k, v in h.storage_listing().items() if k.startswith(OUTPUT_BUCKET + "/")}
    before_members = h.service.reading.show_file(OWNER, file_id)["members"]

    job = h.add(file_id, fine + lost)

    assert job["status"] == "failed"
    err = job["error"]
    assert err["code"] == "conversations_invalid"
    assert lost[0] in err["message"]
    [report] = err["details"]
    assert report["conversation_id"] == lost[0]
    assert report["source"] == f"{INPUT_BUCKET}/{h.input_key(lost[0])}"  # where it was looked for
    assert [e["code"] for e in report["errors"]] == ["file_missing"]
    assert h.input_key(lost[0]) in report["errors"][0]["message"]
    # the file: same row, same members, same artifacts; nothing staged or left behind
    assert h.file_rows() == before_rows
    assert h.service.reading.show_file(OWNER, file_id)["members"] == before_members
    after_counts = h.table_counts()
    assert after_counts == {**before_counts, "lora_training_jobs": before_counts["lora_training_jobs"] + 1}
    assert {k: v for k, v in h.storage_listing().items() if k.startswith(OUTPUT_BUCKET + "/")} == before_out
    assert json_ids(h.full_json(file_id)) == kept


def test_missing_enriched_file_in_create_leaves_no_file(h: Harness):
    ids = h.generate(2)
    h.store.delete(INPUT_BUCKET, h.input_key(ids[1]))
    before_out = {k for k in h.storage_listing() if k.startswith(OUTPUT_BUCKET + "/")}
    job = h.run(kind="create", conversation_ids=ids, name="Doomed")
    assert job["status"] == "failed"
    assert [(d["conversation_id"], [e["code"] for e in d["errors"]]) for d in job["error"]["details"]] == [
        (ids[1], ["file_missing"])]
    assert h.service.reading.list_files(OWNER) == []
    assert {k for k in h.storage_listing() if k.startswith(OUTPUT_BUCKET + "/")} == before_out


def test_a_stored_exports_layout_that_does_not_fit_fails_the_add_naming_the_conversation(h: Harness):
    """The byte ranges of a member's exports bundle are stored state: one that was tampered with
    (or written by a bug) fails the publish with the conversation named; version 1 stays whole."""
    first, second = h.generate(2), h.generate(1)
    file_id = str(h.create(first, name="Layout")["file_id"])
    v1 = {fmt: h.artifact_bytes(file_id, fmt) for fmt in ("json", "jsonl", "openai")}
    with h.sql() as conn:
        conn.execute("update lora_training_file_members set exports_layout = jsonb_set(exports_layout, '{trl}', "
                     "'[0, 99999999]') where file_id = %s and conversation_id = %s", (file_id, first[1]))
    job = h.add(file_id, second)
    assert job["status"] == "failed"
    text = str(job["error"])
    assert first[1] in text and "section 'trl'" in text and "outside" in text, text
    f = h.service.reading.show_file(OWNER, file_id)["file"]
    assert (f["current_version"], f["conversation_count"]) == (1, 2)
    assert {fmt: h.artifact_bytes(file_id, fmt) for fmt in v1} == v1
