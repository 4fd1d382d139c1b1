"""Issue 9 item 11: JSONL ids are unique within a file. Two planted conversations share the
first 8 characters of their id: the first keeps the 8-character id of formats.md, the later one
gets a longer prefix, in one job (same and parallel batches), across an add (the members already
in the file are not re-rendered) and through a regenerate (same ids again)."""
from __future__ import annotations

import orjson
import pytest

from lorafiles.domain.samples import dumps_enriched, generate_conversation
from pipekit import OWNER, run

A = "c0ffee00-1111-4111-8111-111111111111"
B = "c0ffee00-2222-4222-8222-222222222222"
C = "c0ffee00-2222-4333-8333-333333333333"  # shares 15 characters with B
D = "d0d0d0d0-4444-4444-8444-444444444444"


@pytest.fixture
def planted(service, tmp_path):
    folder = tmp_path / "planted"
    folder.mkdir()
    paths = []
    for i, cid in enumerate((A, B, C, D)):
        path = folder / f"{cid}.json"
        path.write_bytes(dumps_enriched(generate_conversation(f"planted-{i}", conversation_id=cid, turns=4)))
        paths.append(path)
    result = service.importing.import_files(OWNER, paths)
    assert not result["refused"] and [r["conversation_id"] for r in result["imported"]] == [A, B, C, D]
    return [A, B, C, D]


def _records(service, file_id: str, version: int | None = None) -> list[dict]:
    a = service.reading.artifact(OWNER, file_id, "jsonl", version)
    lines = service.store.get(a["bucket"], a["key"]).splitlines()
    return [orjson.loads(x) for x in lines[1:]]


def _suffixes(records: list[dict]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for r in records:
        out.setdefault(r["conversation_id"], set()).add(r["id"].rsplit("_", 1)[1])
    return out


def _check_unique(records: list[dict]) -> None:
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)[:5]


@pytest.mark.parametrize("batch_size", [10, 1])  # one batch, or one Map iteration per conversation (in parallel)
def test_colliding_prefixes_in_one_job_get_longer_ids(service, machine, planted, batch_size):
    service.settings.batch_size = batch_size
    job = run(service, machine, kind="create", conversation_ids=[A, D, B, C], name="Collide")
    assert job["status"] == "succeeded", job["error"]
    records = _records(service, str(job["file_id"]))
    _check_unique(records)
    assert _suffixes(records) == {A: {"c0ffee00"}, D: {"d0d0d0d0"}, B: {"c0ffee00-2"}, C: {"c0ffee00-2222-43"}}


def test_add_keeps_existing_members_and_regenerate_keeps_the_ids(service, machine, planted):
    first = run(service, machine, kind="create", conversation_ids=[B, D], name="Grow")
    file_id = str(first["file_id"])
    v1 = _records(service, file_id)
    assert _suffixes(v1) == {B: {"c0ffee00"}, D: {"d0d0d0d0"}}  # unique: the 8-character form
    with service.db.connection() as conn:
        before = conn.execute("select conversation_id, jsonl_fragment_key from lora_training_file_members "
                              "where file_id = %s order by position", (file_id,)).fetchall()

    added = run(service, machine, kind="add", conversation_ids=[A, C], file_id=file_id)
    assert added["status"] == "succeeded", added["error"]
    v2 = _records(service, file_id)
    _check_unique(v2)
    assert _suffixes(v2) == {B: {"c0ffee00"}, D: {"d0d0d0d0"}, A: {"c0ffee00-1"}, C: {"c0ffee00-2222-43"}}
    assert [r for r in v2 if r["conversation_id"] in (B, D)] == v1  # existing lines unchanged
    with service.db.connection() as conn:
        after = conn.execute("select conversation_id, jsonl_fragment_key from lora_training_file_members "
                             "where file_id = %s and conversation_id = any(%s) order by position",
                             (file_id, [B, D])).fetchall()
    assert after == before  # not re-rendered

    regen = service.jobs.start_regenerate(OWNER, file_id)
    machine.wait(regen["execution_arn"], timeout=300)
    assert service.reading.get_job(OWNER, str(regen["id"]))["status"] == "succeeded"
    assert _records(service, file_id) == v2
