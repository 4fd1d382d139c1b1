"""What a local import records on the conversation row: every turn counted (not only the trainable
ones) and the mean quality of the trainable pairs to one decimal, as the app's column holds it."""
from __future__ import annotations

import pytest

from lorafiles.db.connect import connect
from lorafiles.domain.samples import dumps_enriched, generate_conversation

from stepkit import OWNER, make_kit


@pytest.fixture
def imported(db_url, tmp_path):
    kit = make_kit(db_url, tmp_path)
    doc = generate_conversation(11, turns=6, repeat_input_in_history=False)
    trainable = [p for p in doc["training_pairs"] if p["target_response"] is not None]
    assert 0 < len(trainable) < len(doc["training_pairs"])
    for p, score in zip(trainable, [3.0, 4.0, 4.0]):
        p["training_metadata"]["quality_score"] = score  # mean 3.666..: 3.7 to one decimal, 4 to none
    path = tmp_path / "c.json"
    path.write_bytes(dumps_enriched(doc))
    [cid] = [r["conversation_id"] for r in kit.service.importing.import_files(OWNER, [path])["imported"]]
    with connect(db_url) as conn:
        row = conn.execute("select * from conversations where conversation_id = %s", (cid,)).fetchone()
    yield row, doc, len(trainable)
    kit.service.db.close()


def test_import_counts_every_turn(imported):
    row, doc, trainable = imported
    assert row["turn_count"] == len(doc["training_pairs"]) == 6 != trainable


def test_import_records_the_mean_quality_to_one_decimal(imported):
    row, _doc, trainable = imported
    assert trainable == 3
    assert float(row["quality_score"]) == 3.7


def test_a_users_conversations_are_listed_oldest_first_and_only_theirs(db_url, tmp_path):
    kit = make_kit(db_url, tmp_path)
    try:
        other = "0d0d0d0d-2222-4222-8222-000000000002"
        first = kit.conversations(2)
        with connect(db_url) as conn:  # the same instant for both: then by id
            conn.execute("update conversations set created_at = '2026-01-02' where conversation_id = any(%s)",
                         (first,))
            later = kit.conversations(1)
            conn.execute("update conversations set created_at = '2026-01-01' where conversation_id = %s",
                         (later[0],))
        path = tmp_path / "theirs.json"
        path.write_bytes(dumps_enriched(generate_conversation("theirs", turns=2)))
        assert kit.service.importing.import_files(other, [path])["imported"]
        assert kit.service.importing.owned_conversation_ids(OWNER) == [later[0], *sorted(first)]
        assert len(kit.service.importing.owned_conversation_ids(other)) == 1
    finally:
        kit.service.db.close()
