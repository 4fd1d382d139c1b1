"""What a batch stages and renders for each conversation (issue 14, usecases/steps.py): the Full
JSON's conversation metadata comes from the conversation's row and its file (created date,
source, turns, tier, scaffolding with the row first), the JSONL ids stay unique when ids share
their first 8 characters across an add, a batch's reads and writes are all in flight at once,
opening a job locks its row and refuses an ended one, and the last guard before PostgreSQL.
Real PostgreSQL, a real local store, the steps called as the Lambda tasks call them."""
from __future__ import annotations

import threading
import uuid
from datetime import timezone
from typing import Any

import orjson
import pytest

from lorafiles.db.connect import connect
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.errors import ConversationsInvalid, JobStateError
from lorafiles.service import OUTPUT_BUCKET
from lorafiles.usecases.common import INPUT_BUCKET

from stepkit import InThread, Kit, OWNER, make_kit

TIMEOUT = 15  # seconds a read or write waits for the rest of its batch at a barrier


@pytest.fixture
def kit10(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path, batch_size=10, read_concurrency=4)
    yield k
    k.service.db.close()


def _import(kit: Kit, docs: list[dict[str, Any]]) -> list[str]:
    folder = kit.work / f"docs-{uuid.uuid4()}"
    folder.mkdir(parents=True)
    paths = []
    for i, doc in enumerate(docs):
        (folder / f"{i}.json").write_bytes(dumps_enriched(doc))
        paths.append(folder / f"{i}.json")
    result = kit.service.importing.import_files(OWNER, paths)
    assert not result["refused"], result["refused"]
    return [r["conversation_id"] for r in result["imported"]]


def _row(kit: Kit, cid: str) -> dict[str, Any]:
    with connect(kit.url) as conn:
        return conn.execute("select * from conversations where conversation_id = %s", (cid,)).fetchone()


def _published(kit: Kit, file_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    f = kit.file(file_id)
    doc = orjson.loads(kit.store.get(OUTPUT_BUCKET, f["json_path"]))
    lines = [orjson.loads(x) for x in kit.store.get(OUTPUT_BUCKET, f["jsonl_path"]).splitlines()]
    return doc, lines


def test_the_full_json_says_what_the_row_and_the_file_say_about_each_conversation(kit: Kit):
    dated = generate_conversation("dated", turns=3, created_date="2026-10-05")
    undated = generate_conversation("undated", turns=5)
    del undated["dataset_metadata"]["created_date"]
    undated_no_row_date = generate_conversation("no date at all", turns=2)
    del undated_no_row_date["dataset_metadata"]["created_date"]
    a, b, c = _import(kit, [dated, undated, undated_no_row_date])
    with connect(kit.url) as conn:  # the row's scaffolding key comes before the file's
        conn.execute("update conversations set persona_key = 'row_persona' where conversation_id = %s", (a,))
        conn.execute("update conversations set created_at = null where conversation_id = %s", (c,))
    job = kit.start(kind="create", conversation_ids=[a, b, c], name="metadata", description="for the review",
                    policy={"max_length": 3072})
    file_id = kit.run(job)["file_id"]
    f = kit.file(file_id)  # the file row records what the job asked for
    assert (f["description"], f["policy"]) == ("for the review", kit.job(job)["policy"])
    assert f["policy"]["max_length"] == 3072
    doc, _ = _published(kit, file_id)
    members = {m["conversation_id"]: m for m in kit.members(file_id)}
    got = {c["conversation_metadata"]["conversation_id"]: c["conversation_metadata"] for c in doc["conversations"]}
    assert list(got) == [a, b, c]
    assert got[c]["created_date"] is None  # neither the file nor the row has a date
    for cid, doc_in, pairs in ((a, dated, 3), (b, undated, 5)):
        meta, row = got[cid], _row(kit, cid)
        assert meta["source_file"] == f"{INPUT_BUCKET}/{row['enriched_file_path']}" == members[cid]["source_file"]
        assert meta["total_turns"] == pairs == len(doc_in["training_pairs"])
        assert meta["quality_tier"] == members[cid]["quality_tier"] and meta["quality_tier"]
    assert got[a]["created_date"] == "2026-10-05"  # the file's own date
    assert got[b]["created_date"] == _row(kit, b)["created_at"].astimezone(timezone.utc).date().isoformat()
    assert got[a]["scaffolding"]["persona_key"] == "row_persona"
    assert got[b]["scaffolding"]["persona_key"] == undated["input_parameters"]["persona_key"]


def test_jsonl_ids_stay_unique_when_an_added_conversation_shares_a_members_first_8_characters(kit: Kit):
    first, second, third = ("0000aaaa-1000-4000-8000-000000000001", "0000aaaa-2000-4000-8000-000000000002",
                            "0000aaaa-3000-4000-8000-000000000003")
    _import(kit, [generate_conversation(f"p{i}", conversation_id=c, turns=2) for i, c in
                  enumerate((first, second, third))])
    file_id = kit.create([first], name="prefixes")
    kit.run(kit.start(kind="add", file_id=file_id, conversation_ids=[second, third]))
    _, lines = _published(kit, file_id)
    by_conversation: dict[str, set[str]] = {}
    for record in lines[1:]:  # (line 0 is the _meta header)
        by_conversation.setdefault(record["conversation_id"], set()).add(record["id"].rsplit("_", 1)[1])
    assert by_conversation == {first: {"0000aaaa"}, second: {"0000aaaa-2"}, third: {"0000aaaa-3"}}
    assert len({r["id"] for r in lines[1:]}) == len(lines) - 1


def test_two_conversations_gone_before_their_batch_are_both_named(kit: Kit):
    ids = kit.conversations(3)
    job = kit.start(kind="create", conversation_ids=ids, name="two gone")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    with connect(kit.url) as conn:
        conn.execute("delete from conversations where conversation_id = any(%s)", (ids[:2],))
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 0)
    assert str(err.value) == f"conversations no longer available: {ids[0]}, {ids[1]}"


class _Gate:
    """A barrier for the storage calls of one kind: each waits until `parties` are in flight."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=TIMEOUT)

    def wait(self) -> None:
        self.barrier.wait()


def test_a_batch_reads_all_its_enriched_files_and_writes_all_its_fragments_at_once(kit10: Kit):
    """One round trip of latency per batch, not one per read-concurrency slice (issue 11)."""
    kit = kit10
    ids = kit.conversations(10)
    job = kit.start(kind="create", conversation_ids=ids, name="one round trip")
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    reads, writes = _Gate(10), _Gate(30)  # 10 files in; json, jsonl and exports of each out
    inner_get, inner_put = kit.store.inner.get, kit.store.inner.put

    def get(bucket: str, key: str) -> bytes:
        reads.wait()
        return inner_get(bucket, key)

    def put(bucket: str, key: str, data: bytes, *a: Any, **kw: Any) -> None:
        writes.wait()
        inner_put(bucket, key, data, *a, **kw)

    kit.store.get, kit.store.put = get, put
    assert kit.service.steps.append_batch(job, 0)["staged"] == 10


def test_a_batch_reads_all_the_members_it_rerenders_at_once(kit10: Kit):
    kit = kit10
    ids = kit.conversations(10)
    file_id = kit.create(ids[:9], name="rerender at once")
    job = kit.start(kind="add", file_id=file_id, conversation_ids=ids[9:], policy={"target_model": "qwen2.5-7b-instruct"})
    kit.service.steps.validate(job)
    assert kit.service.steps.create_file(job)["batches"] == [0]
    stored = _Gate(9)
    inner_get = kit.store.inner.get

    def get(bucket: str, key: str) -> bytes:
        if bucket == OUTPUT_BUCKET:
            stored.wait()
        return inner_get(bucket, key)

    kit.store.get = get
    assert kit.service.steps.append_batch(job, 0)["staged"] == 10


def test_opening_a_job_waits_for_its_row_and_starts_its_clock_once(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(2), name="opened")
    assert kit.job(job)["started_at"] is None
    done = threading.Event()
    with connect(kit.url) as holder:
        holder.execute("select id from lora_training_jobs where id = %s for update", (job,))
        worker = threading.Thread(target=lambda: (kit.service.steps.validate(job), done.set()))
        worker.start()
        assert not done.wait(2)  # validate opens the job under its row lock
        assert kit.job(job)["status"] == "queued"
        holder.commit()
    worker.join(30)
    assert done.is_set()
    with connect(kit.url) as conn:
        row = conn.execute("select status, step, started_at, now() - started_at as age from lora_training_jobs"
                           " where id = %s", (job,)).fetchone()
    assert (row["status"], row["step"]) == ("running", "validate")
    assert row["started_at"] is not None and row["age"].total_seconds() < 60
    kit.service.steps.create_file(job)
    again = kit.job(job)
    assert (again["step"], again["started_at"]) == ("create", row["started_at"])  # set once


def test_steps_of_a_job_that_succeeded_refuse_and_leave_it_as_it_was(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="done")
    kit.run(job)
    row = kit.job(job)
    assert row["status"] == "succeeded"
    steps = kit.service.steps
    for call in (lambda: steps.validate(job), lambda: steps.create_file(job), lambda: steps.append_batch(job, 0)):
        with pytest.raises(JobStateError, match=f"job {job} already succeeded"):
            call()
    assert kit.job(job) == row


def test_a_value_the_parser_let_through_that_postgresql_cannot_store_is_refused_naming_its_column(
        kit: Kit, monkeypatch):
    """The parser refuses such text; if it ever did not, the batch still refuses it before any
    write, as a per-conversation error, and never hands PostgreSQL a raw NUL."""
    import lorafiles.domain.enriched as enriched

    doc = generate_conversation("nul vertical", turns=2)
    [cid] = _import(kit, [doc])
    job = kit.start(kind="create", conversation_ids=[cid], name="last guard")
    kit.service.steps.validate(job)
    out = kit.service.steps.create_file(job)
    doc["dataset_metadata"]["vertical"] = "finance\u0000planning"
    kit.store.put(INPUT_BUCKET, _row(kit, cid)["enriched_file_path"], dumps_enriched(doc))
    monkeypatch.setattr(enriched, "unstorable", lambda text: None)  # a parser that no longer checks
    with pytest.raises(ConversationsInvalid) as err:
        kit.service.steps.append_batch(job, 0)
    [report] = err.value.details
    assert report["conversation_id"] == cid
    [problem] = report["errors"]
    assert (problem["code"], problem["field"]) == ("unstorable_text", "vertical")
    assert problem["message"].startswith("the value staged as vertical contains")
    assert kit.store.list(OUTPUT_BUCKET, f"{OWNER}/{out['file_id']}/") == []



def test_a_rerendering_batch_that_finds_its_job_failed_keeps_the_fragments_members_still_use(kit: Kit):
    """A re-rendered member's item shares the member's v4 fragments: taking back what the batch
    wrote must not delete them (the current version is built from them)."""
    ids = kit.conversations(3)
    file_id = kit.create(ids[:2], name="shared fragments")
    job = kit.start(kind="add", file_id=file_id, conversation_ids=ids[2:], policy={"target_model": "qwen2.5-7b-instruct"})
    kit.service.steps.validate(job)
    kit.service.steps.create_file(job)
    assert kit.job(job)["rerender_ids"] == ids[:2]
    inner_put = kit.store.inner.put

    def put(bucket: str, key: str, data: bytes, *a: Any, **kw: Any) -> None:  # the job fails meanwhile
        with connect(kit.url) as conn:
            conn.execute("update lora_training_jobs set status = 'failed' where id = %s", (job,))
        inner_put(bucket, key, data, *a, **kw)

    kit.store.put = put
    with pytest.raises(JobStateError, match="batch 0 was not staged"):
        kit.service.steps.append_batch(job, 0)
    for m in kit.members(file_id):
        for k in ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key"):
            assert kit.store.exists(OUTPUT_BUCKET, m[k]), (m["conversation_id"], k)
    doc, lines = _published(kit, file_id)  # and the current version still reads
    assert len(doc["conversations"]) == 2 and lines


def test_a_step_that_waited_while_its_job_failed_does_not_reopen_it(kit: Kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="failed meanwhile")
    with connect(kit.url) as holder:  # compensation: the job row locked, then failed
        holder.execute("update lora_training_jobs set status = 'failed', step = 'compensated' where id = %s", (job,))
        worker = InThread(kit.service.steps.validate, job)
        worker.join(2)
        assert worker.is_alive()  # the step waits for the row
        holder.commit()
    worker.join(30)
    errors = worker.errors
    assert [type(e) for e in errors] == [JobStateError] and str(errors[0]) == f"job {job} already failed"
    assert (kit.job(job)["status"], kit.job(job)["step"]) == ("failed", "compensated")


def test_an_add_whose_batches_are_grown_to_fit_the_map_still_stages_every_conversation(
        db_url, tmp_path, monkeypatch):
    """create-file re-plans an add (its re-rendered members join the work list); when the planner
    grows the batch size to stay under the Map's bound, the job keeps the size it planned, so the
    batches cover every conversation exactly once (with the old size, the last one was never
    staged). The bound is lowered to 2 batches here; the real one is 500."""
    from functools import partial

    import lorafiles.usecases.steps as steps_module
    from lorafiles.domain.bounds import plan_batches

    kit = make_kit(db_url, tmp_path, batch_size=1)
    try:
        ids = kit.conversations(4)
        file_id = kit.create(ids[:1], name="grown batches")
        job = kit.start(kind="add", file_id=file_id, conversation_ids=ids[1:])
        assert kit.job(job)["total_batches"] == 3  # one per conversation when the job starts
        monkeypatch.setattr(steps_module, "plan_batches", partial(plan_batches, max_batches=2))
        kit.service.steps.validate(job)
        assert kit.service.steps.create_file(job)["batches"] == [0, 1]
        staged = [kit.service.steps.append_batch(job, n)["staged"] for n in (0, 1)]
        if staged != [2, 1]:  # (the old size: the last conversation in no batch) nothing is published
            with pytest.raises(JobStateError, match="2 of its 3 conversations are staged"):
                kit.service.steps.generate(job)
        assert staged == [2, 1]
        assert kit.service.steps.generate(job)["version"] == 2
        assert [m["conversation_id"] for m in kit.members(file_id)] == ids
    finally:
        kit.service.db.close()



def test_a_file_being_created_shows_its_policy_before_its_first_version(kit: Kit):
    """The file row exists from create-file on (the owner's page lists it while its first version
    is built), and it already records the training policy the job asked for."""
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="policy early",
                    policy={"max_length": 2048})
    kit.service.steps.validate(job)
    file_id = kit.service.steps.create_file(job)["file_id"]
    shown = kit.service.reading.show_file(OWNER, file_id)["file"]
    assert shown["current_version"] == 0 and shown["policy"] == kit.job(job)["policy"]
    assert shown["policy"]["max_length"] == 2048
