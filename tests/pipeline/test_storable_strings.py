"""Issue 9 items 3-5 through the production state machine: a string PostgreSQL cannot hold, a
duplicate key, a non-numeric score, an over-limit file or a blank trainable text is a
per-conversation blocking error naming the field. Never a raw database error, never an orphan
fragment, and the file stays exactly as it was."""
from __future__ import annotations

import hashlib

import orjson
import pytest

from pipekit import OWNER, run
from lorafiles.domain.samples import dumps_enriched, generate_conversation


def stored_objects(service, file_id: str) -> dict[str, str]:
    root = service.settings.local_storage_root / "training-files"
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / OWNER / file_id).rglob("*")) if p.is_file()}


def file_state(service, file_id: str) -> dict:
    with service.db.connection() as conn:
        f = conn.execute("select current_version, status, json_sha256, jsonl_sha256, conversation_count "
                         "from lora_training_files where id = %s", (file_id,)).fetchone()
        members = conn.execute("select conversation_id, json_fragment_key from lora_training_file_members "
                               "where file_id = %s order by position", (file_id,)).fetchall()
        items = conn.execute("select count(*) as n from lora_training_job_items").fetchone()["n"]
    return {"file": f, "members": members, "items": items, "objects": stored_objects(service, file_id)}


def replace_enriched(service, cid: str, blob: bytes) -> None:
    with service.db.connection() as conn:
        path = conn.execute("select enriched_file_path from conversations where conversation_id = %s",
                            (cid,)).fetchone()["enriched_file_path"]
    service.store.inner.put("conversation-files", path, blob)


def _first_target(doc: dict) -> dict:
    return next(p for p in doc["training_pairs"] if p["target_response"] is not None)


def _hostile(kind: str, cid: str) -> tuple[bytes, str, str]:
    """(enriched bytes, expected error code, expected field) for one hostile variant."""
    doc = generate_conversation(cid, conversation_id=cid, repeat_input_in_history=False)
    i = next(n for n, p in enumerate(doc["training_pairs"]) if p["target_response"] is not None)
    pair = doc["training_pairs"][i]
    if kind == "nul_consultant_profile":  # stored as jsonb on the staged item
        doc["consultant_profile"]["business"] = "Pathways\x00"
        return dumps_enriched(doc), "unstorable_text", "consultant_profile.business"
    if kind == "nul_persona_name":  # stored as text on the staged item (scaffolding)
        doc["input_parameters"]["persona_name"] = "Jennifer\x00"
        return dumps_enriched(doc), "unstorable_text", "input_parameters.persona_name"
    if kind == "nul_vertical":
        doc["dataset_metadata"]["vertical"] = "\x00"
        return dumps_enriched(doc), "unstorable_text", "dataset_metadata.vertical"
    if kind == "nul_pair_id_in_warning":  # quoted by the truncated_target warning (jsonb)
        pair["id"] = "edu\x00cational"
        pair["target_response"] = pair["target_response"] + " \\"
        return dumps_enriched(doc), "unstorable_text", f"training_pairs[{i}].id"
    if kind == "duplicate_key":
        text = dumps_enriched(doc).decode()
        at = text.index('"target_response"', text.index(f'"turn_number": {pair["turn_number"]}'))
        return (text[:at] + '"target_response": "shadowed", ' + text[at:]).encode(), "duplicate_key", \
            f"training_pairs[{i}]"
    if kind == "boolean_score":
        pair["training_metadata"]["quality_score"] = True
        return dumps_enriched(doc), "wrong_shape", f"training_pairs[{i}].training_metadata.quality_score"
    if kind == "blank_system_prompt":
        pair["system_prompt"] = "  \n"
        return dumps_enriched(doc), "empty_content", f"training_pairs[{i}].system_prompt"
    if kind == "too_many_pairs":
        return dumps_enriched(generate_conversation(cid, conversation_id=cid, turns=12)), "too_many_pairs", \
            "training_pairs"
    raise AssertionError(kind)


KINDS = ["nul_consultant_profile", "nul_persona_name", "nul_vertical", "nul_pair_id_in_warning", "duplicate_key",
         "boolean_score", "blank_system_prompt", "too_many_pairs"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_file_is_a_per_conversation_error_and_changes_nothing(service, machine, make_conversations, kind):
    service.settings.max_pairs_per_conversation = 10
    base = make_conversations(3, turns=4)
    created = run(service, machine, kind="create", conversation_ids=base, name="Untouched")
    file_id = str(created["file_id"])
    before = file_state(service, file_id)

    good = make_conversations(12, turns=4)  # two batches: the hostile one is in the second
    bad = good[-1]
    blob, code, field = _hostile(kind, bad)
    replace_enriched(service, bad, blob)
    job = run(service, machine, kind="add", conversation_ids=good, file_id=file_id)

    assert job["status"] == "failed" and job["step"] == "compensated"
    error = job["error"]
    assert error["code"] == "conversations_invalid", error  # never DataError & co.
    [detail] = error["details"]
    assert detail["conversation_id"] == bad
    assert any(e["code"] == code and e["field"] == field for e in detail["errors"]), detail["errors"]
    assert file_state(service, file_id) == before  # no orphan fragment, no staged item, same version


def test_one_empty_system_prompt_is_not_accepted_into_the_file(service, machine, make_conversations):
    ids = make_conversations(2)
    doc = generate_conversation("blank", conversation_id=ids[1])
    _first_target(doc)["system_prompt"] = ""
    replace_enriched(service, ids[1], dumps_enriched(doc))
    job = run(service, machine, kind="create", conversation_ids=ids, name="Blank prompt")
    assert job["status"] == "failed"
    assert job["error"]["details"][0]["errors"][0]["code"] == "empty_content"


def test_import_refuses_unstorable_text_naming_the_field(service, tmp_path):
    doc = generate_conversation("import-nul")
    doc["input_parameters"]["persona_key"] = "anxious\x00planner"  # imported into conversations.persona_key
    path = tmp_path / "nul.json"
    path.write_bytes(orjson.dumps(doc))
    result = service.importing.import_files(OWNER, [path])
    assert result["imported"] == []
    [refused] = result["refused"]
    assert [(p["code"], p["field"]) for p in refused["problems"]] == [
        ("unstorable_text", "input_parameters.persona_key")]


def test_import_refuses_a_file_over_the_byte_limit_without_reading_it_all(service, tmp_path):
    service.settings.max_enriched_bytes = 1000
    path = tmp_path / "big.json"
    path.write_bytes(dumps_enriched(generate_conversation("import-big")))
    [refused] = service.importing.import_files(OWNER, [path])["refused"]
    assert refused["problems"][0]["code"] == "file_too_large"
