"""Local import (register enriched files as completed conversations) and ids that do not resolve."""
from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.errors import LorafilesError, NotFound

from core_harness import INPUT_BUCKET, OTHER, OWNER, Harness


def test_legacy_files_are_refused_and_nothing_is_registered(h: Harness, shared_fixtures: Path):
    paths = sorted((shared_fixtures / "legacy").glob("*.json"))
    assert len(paths) == 3
    before = (h.table_counts(), h.storage_listing())
    result = h.service.importing.import_files(OWNER, paths)
    assert result["imported"] == []
    assert sorted(r["file"] for r in result["refused"]) == sorted(str(p) for p in paths)
    codes = {Path(r["file"]).name: {p["code"] for p in r["problems"]} for r in result["refused"]}
    assert codes == {"minimal-conversation-metadata-turns.json": {"wrong_shape"},
                     "seed-v3-convo-05-history-without-role.json": {"wrong_shape"},
                     "seed-v3-convo-10-invalid-json.json": {"invalid_json"}}
    assert (h.table_counts(), h.storage_listing()) == before


def test_reimport_is_idempotent(h: Harness, shared_fixtures: Path):
    path = shared_fixtures / "enriched" / "service-david-shame-to-acceptance-grandparent-529.json"
    batch = str(uuid.uuid4())
    first = h.import_paths([path], batch_id=batch)
    counts = h.table_counts()
    assert h.import_paths([path], batch_id=batch) == first
    assert h.table_counts() == counts
    with h.sql() as conn:
        row = conn.execute("select enrichment_status, batch_id, created_by from conversations where conversation_id = %s",
                           (first[0],)).fetchone()
    assert (row["enrichment_status"], str(row["batch_id"]), str(row["created_by"])) == ("completed", batch, OWNER)
    assert h.store.get(INPUT_BUCKET, h.input_key(first[0])) == path.read_bytes()


def _import_mine_then_theirs(h: Harness) -> tuple[str, str, dict, dict, dict]:
    mine_batch, their_batch = str(uuid.uuid4()), str(uuid.uuid4())
    [cid] = h.generate(1, batch_id=mine_batch)
    path = h.work / f"again-{cid}.json"
    path.write_bytes(h.store.get(INPUT_BUCKET, h.input_key(cid)))
    with h.sql() as conn:
        before = conn.execute("select * from conversations where conversation_id = %s", (cid,)).fetchone()
    result = h.service.importing.import_files(OTHER, [path], batch_id=their_batch)
    with h.sql() as conn:
        after = conn.execute("select * from conversations where conversation_id = %s", (cid,)).fetchone()
    return cid, mine_batch, before, after, result


def test_importing_someone_elses_conversation_does_not_touch_it(h: Harness):
    """The same conversation id imported by a second owner (with --batch-id): the first owner's
    row, including the batch it was generated in, must stay as it was."""
    cid, mine_batch, before, after, _ = _import_mine_then_theirs(h)
    assert str(after["created_by"]) == OWNER
    assert {k: v for k, v in after.items() if k != "batch_id"} == {k: v for k, v in before.items() if k != "batch_id"}
    assert str(after["batch_id"]) == mine_batch, "another owner's import re-assigned my conversation's batch"
    with h.sql() as conn:
        links = conn.execute("""select count(*) as n from batch_items b join conversations c on c.id = b.conversation_id
                                 where c.conversation_id = %s""", (cid,)).fetchone()["n"]
    assert links == 1


def test_import_does_not_report_a_conversation_its_owner_cannot_use(h: Harness):
    cid, _, _, _, result = _import_mine_then_theirs(h)
    if cid in [r["conversation_id"] for r in result["imported"]]:
        assert h.service.jobs.validate_selection(OTHER, [cid], name="theirs")["ok"], (
            "import reported the conversation as imported, but the importing owner cannot select it")
    else:
        assert [Path(r["file"]).name for r in result["refused"]] == [f"again-{cid}.json"]


@pytest.mark.parametrize("file_id", ["not-a-uuid", "", "1234"])
def test_a_file_id_that_is_not_a_uuid_is_not_found(h: Harness, file_id: str):
    [cid] = h.generate(1)
    with pytest.raises(NotFound):
        h.service.reading.show_file(OWNER, file_id)
    with pytest.raises(NotFound):
        h.service.reading.artifact(OWNER, file_id, "json")
    with pytest.raises(NotFound):
        h.service.jobs.start_job(OWNER, kind="add", conversation_ids=[cid], file_id=file_id)


def test_unknown_file_and_version_are_not_found(h: Harness):
    ids = h.generate(1)
    file_id = str(h.create(ids)["file_id"])
    with pytest.raises(NotFound):
        h.service.reading.show_file(OTHER, file_id)
    with pytest.raises(NotFound):
        h.service.reading.artifact(OWNER, file_id, "json", version=2)
    with pytest.raises(NotFound):
        h.service.reading.artifact(OWNER, str(uuid.uuid4()), "json")


def test_import_with_an_invalid_batch_id_is_a_user_error_and_writes_nothing(h: Harness):
    h.work.mkdir(parents=True, exist_ok=True)
    path = h.work / "c.json"
    path.write_bytes(dumps_enriched(generate_conversation("bad-batch")))
    before = (h.table_counts(), h.storage_listing())
    with pytest.raises(LorafilesError):
        h.service.importing.import_files(OWNER, [path], batch_id="not-a-uuid")
    assert (h.table_counts(), h.storage_listing()) == before
