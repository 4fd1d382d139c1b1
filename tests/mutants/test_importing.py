"""A local import (issue 14, usecases/importing.py): what it stores for each file it accepts, and the
reason it gives for each file it refuses (too large, unreadable, not an enriched file, another user's
conversation, a batch id that is not a UUID). Real PostgreSQL, real files, the real local store."""
from __future__ import annotations

import uuid

import orjson
import pytest

from lorafiles.db.connect import connect
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.errors import InvalidRequest
from lorafiles.usecases.common import INPUT_BUCKET

from stepkit import OTHER, OWNER





def _write(tmp_path, name: str, doc) -> tuple:
    path = tmp_path / name
    path.write_bytes(dumps_enriched(doc))
    return path, doc


def _row(kit, cid):
    with connect(kit.url) as conn:
        return conn.execute("select * from conversations where conversation_id = %s", (cid,)).fetchone()


def test_an_accepted_file_is_stored_under_its_owner_and_described_on_its_row(kit, tmp_path):
    path, doc = _write(tmp_path, "a.json", generate_conversation("imp-a", turns=3))
    out = kit.service.importing.import_files(OWNER, [path])
    [entry] = out["imported"]
    cid = entry["conversation_id"]
    assert out["refused"] == [] and entry == {"conversation_id": cid, "file": str(path), "warnings": entry["warnings"]}
    key = f"{OWNER}/{cid}/enriched.json"
    assert kit.store.get(INPUT_BUCKET, key) == path.read_bytes()
    row = _row(kit, cid)
    assert (str(row["created_by"]), row["enrichment_status"], row["enriched_file_path"], row["enriched_file_size"]) == \
        (OWNER, "completed", key, path.stat().st_size)
    assert row["turn_count"] == len(doc["training_pairs"])
    assert row["persona_key"] and row["emotional_arc_key"] and row["topic_key"]


def test_a_file_over_the_size_limit_is_refused_unread(kit, tmp_path, monkeypatch):
    path, _ = _write(tmp_path, "big.json", generate_conversation("imp-big", turns=2))
    kit.service.settings.max_enriched_bytes = path.stat().st_size - 1
    out = kit.service.importing.import_files(OWNER, [path])
    assert out == {"imported": [], "refused": [{"file": str(path), "problems": [{
        "code": "file_too_large", "field": None, "severity": "error",
        "message": f"the file is {path.stat().st_size} bytes; the limit is {path.stat().st_size - 1} bytes per "
                   "enriched file (LORAFILES_MAX_ENRICHED_BYTES)"}]}]}
    kit.service.settings.max_enriched_bytes = path.stat().st_size  # exactly the limit: accepted
    assert len(kit.service.importing.import_files(OWNER, [path])["imported"]) == 1
    small, _ = _write(tmp_path, "small.json", generate_conversation("imp-small", turns=2))
    kit.service.settings.max_enriched_bytes = small.stat().st_size
    out = kit.service.importing.import_files(OWNER, [path, small])  # the refusal does not stop the rest
    assert [r["file"] for r in out["refused"]] == [str(path)] and [i["file"] for i in out["imported"]] == [str(small)]


def test_the_deployments_limits_apply_to_what_is_parsed(kit, tmp_path):
    path, doc = _write(tmp_path, "long.json", generate_conversation("imp-long", turns=3))
    kit.service.settings.max_pairs_per_conversation = len(doc["training_pairs"]) - 1
    [refused] = kit.service.importing.import_files(OWNER, [path])["refused"]
    assert [p["code"] for p in refused["problems"]] == ["too_many_pairs"]


def test_a_path_that_cannot_be_read_is_refused_with_the_reason(kit, tmp_path):
    folder = tmp_path / "folder.json"
    folder.mkdir()
    gone = tmp_path / "gone.json"
    out = kit.service.importing.import_files(OWNER, [folder, gone])
    assert out["imported"] == []
    assert out["refused"] == [
        {"file": str(folder), "problems": [{"code": "unreadable", "field": None, "severity": "error",
                                            "message": "cannot read the file: Is a directory"}]},
        {"file": str(gone), "problems": [{"code": "unreadable", "field": None, "severity": "error",
                                          "message": "cannot read the file: No such file or directory"}]}]


def test_a_file_that_is_not_an_enriched_conversation_is_refused_with_its_errors(kit, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps({"training_pairs": "no"}))
    good, _ = _write(tmp_path, "good.json", generate_conversation("imp-good", turns=2))
    out = kit.service.importing.import_files(OWNER, [bad, good])
    [refused] = out["refused"]
    assert refused["file"] == str(bad) and refused["problems"]
    assert all(set(p) >= {"code", "message", "severity"} and p["severity"] == "error" for p in refused["problems"])
    assert [e["file"] for e in out["imported"]] == [str(good)]  # the others are still imported


def test_another_users_conversation_is_refused_and_left_as_it_was(kit, tmp_path):
    path, _ = _write(tmp_path, "theirs.json", generate_conversation("imp-theirs", turns=2))
    [theirs] = kit.service.importing.import_files(OTHER, [path])["imported"]
    cid = theirs["conversation_id"]
    before = _row(kit, cid)
    out = kit.service.importing.import_files(OWNER, [path])
    assert out == {"imported": [], "refused": [{"file": str(path), "problems": [{
        "code": "conversation_taken", "field": "dataset_metadata.dataset_name", "severity": "error",
        "message": f"conversation {cid} belongs to another user"}]}]}
    assert _row(kit, cid) == before
    assert not kit.store.exists(INPUT_BUCKET, f"{OWNER}/{cid}/enriched.json")
    mine, _ = _write(tmp_path, "mine.json", generate_conversation("imp-mine", turns=2))
    out = kit.service.importing.import_files(OWNER, [path, mine])  # the refusal does not stop the rest
    assert [r["file"] for r in out["refused"]] == [str(path)] and [i["file"] for i in out["imported"]] == [str(mine)]


def test_a_batch_id_is_a_uuid_recorded_once_per_conversation(kit, tmp_path):
    path, _ = _write(tmp_path, "b.json", generate_conversation("imp-batch", turns=2))
    with pytest.raises(InvalidRequest) as err:
        kit.service.importing.import_files(OWNER, [path], batch_id="nope")
    assert str(err.value) == "batch id 'nope' is not a UUID"
    batch = uuid.uuid4()
    for _ in range(2):
        [entry] = kit.service.importing.import_files(OWNER, [path], batch_id=str(batch).upper())["imported"]
    with connect(kit.url) as conn:
        links = conn.execute("""select b.batch_job_id, j.created_by from batch_items b
                                  join conversations c on c.id = b.conversation_id
                                  join batch_jobs j on j.id = b.batch_job_id
                                 where c.conversation_id = %s""", (entry["conversation_id"],)).fetchall()
    assert [(str(r["batch_job_id"]), str(r["created_by"])) for r in links] == [(str(batch), OWNER)]
