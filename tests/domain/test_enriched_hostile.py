"""Issue 9 items 2-5 at the domain level: hostile enriched files are refused with a per-conversation
reason naming the field (never read silently, never a crash), reports stay bounded however many
problems a file has, and every string that can reach the database is storable."""
from __future__ import annotations

import json

import orjson
import pytest

from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.samples import dumps_enriched, generate_conversation

CID = "0b5e0d0e-1111-4222-8333-444444444444"


def _doc(seed: str = "hostile", **kw) -> dict:
    return generate_conversation(seed, repeat_input_in_history=False, **kw)


def _parse(data: dict | bytes, **kw):
    blob = data if isinstance(data, bytes) else dumps_enriched(data)
    return parse_enriched(blob, source="test", conversation_id=CID, **kw)


def _errors(parsed) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in parsed.report.errors:
        out.setdefault(e.code, []).append(e)
    return out


def _target(doc: dict) -> tuple[int, dict]:
    return next((i, p) for i, p in enumerate(doc["training_pairs"]) if p["target_response"] is not None)


# ---------------------------------------------------------------------------- item 4: no silent reading
def test_duplicate_key_is_refused_naming_the_key_and_where():
    doc = _doc()
    i, pair = _target(doc)
    text = dumps_enriched(doc).decode()
    # a second quality_score in the first target pair's training_metadata: orjson keeps the last one
    marker = f'"quality_score": {pair["training_metadata"]["quality_score"]}'
    assert marker in text
    first_target_at = text.index(f'"turn_number": {pair["turn_number"]}')
    at = text.index(marker, first_target_at)
    hostile = (text[:at] + '"quality_score": 9.9, ' + text[at:]).encode()
    assert orjson.loads(hostile)  # silently decodable: orjson keeps one of them
    parsed = _parse(hostile)
    assert not parsed.ok
    [dup] = _errors(parsed)["duplicate_key"]
    assert "quality_score" in dup.message
    assert dup.field == f"training_pairs[{i}].training_metadata"


def test_duplicate_top_level_key_is_refused():
    text = dumps_enriched(_doc()).decode()
    hostile = ('{"training_pairs": [], ' + text[1:]).encode()
    [dup] = _errors(_parse(hostile))["duplicate_key"]
    assert "training_pairs" in dup.message and dup.field in ("", None, "$")


@pytest.mark.parametrize("value", [True, False, "3", "4.5", [3], {"v": 3}])
def test_quality_score_that_is_not_a_number_is_refused(value):
    doc = _doc()
    i, pair = _target(doc)
    pair["training_metadata"]["quality_score"] = value
    parsed = _parse(doc)
    assert not parsed.ok
    fields = [e.field for e in parsed.report.errors]
    assert f"training_pairs[{i}].training_metadata.quality_score" in fields


@pytest.mark.parametrize("value", [3, 3.5, 0, 10])
def test_numeric_quality_score_is_accepted(value):
    doc = _doc()
    _target(doc)[1]["training_metadata"]["quality_score"] = value
    assert _parse(doc).ok


def test_human_reviewed_must_be_a_boolean():
    doc = _doc()
    i, pair = _target(doc)
    pair["training_metadata"]["human_reviewed"] = "yes"
    fields = [e.field for e in _parse(doc).report.errors]
    assert f"training_pairs[{i}].training_metadata.human_reviewed" in fields


def test_limit_on_bytes_per_enriched_file():
    from lorafiles.domain.enriched import EnrichedLimits

    blob = dumps_enriched(_doc())
    assert _parse(blob, limits=EnrichedLimits(max_bytes=len(blob))).ok
    parsed = _parse(blob, limits=EnrichedLimits(max_bytes=len(blob) - 1))
    [error] = parsed.report.errors
    assert error.code == "file_too_large"
    assert str(len(blob)) in error.message and "LORAFILES_MAX_ENRICHED_BYTES" in error.message


def test_limit_on_pairs_per_conversation():
    from lorafiles.domain.enriched import EnrichedLimits

    doc = _doc(turns=6)
    assert _parse(doc, limits=EnrichedLimits(max_pairs=6)).ok
    [error] = _parse(doc, limits=EnrichedLimits(max_pairs=5)).report.errors
    assert error.code == "too_many_pairs" and error.field == "training_pairs"
    assert "6" in error.message and "LORAFILES_MAX_PAIRS_PER_CONVERSATION" in error.message


def test_limit_on_characters_per_text_field():
    from lorafiles.domain.enriched import EnrichedLimits

    doc = _doc()
    i, pair = _target(doc)
    pair["target_response"] = "a" * 5001
    [error] = _parse(doc, limits=EnrichedLimits(max_text_chars=5000)).report.errors
    assert error.code == "text_too_long"
    assert error.field == f"training_pairs[{i}].target_response"
    assert "5001" in error.message and "LORAFILES_MAX_TEXT_CHARS" in error.message
    assert _parse(doc, limits=EnrichedLimits(max_text_chars=5001)).ok


def test_limits_come_from_the_environment(monkeypatch):
    from lorafiles.config import Settings
    from lorafiles.domain.enriched import EnrichedLimits

    monkeypatch.setenv("LORAFILES_MAX_ENRICHED_BYTES", "1234")
    monkeypatch.setenv("LORAFILES_MAX_PAIRS_PER_CONVERSATION", "7")
    monkeypatch.setenv("LORAFILES_MAX_TEXT_CHARS", "99")
    assert Settings().enriched_limits == EnrichedLimits(max_bytes=1234, max_pairs=7, max_text_chars=99)


def test_limits_are_documented_in_the_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in ("LORAFILES_MAX_ENRICHED_BYTES", "LORAFILES_MAX_PAIRS_PER_CONVERSATION", "LORAFILES_MAX_TEXT_CHARS"):
        assert f"`{name}`" in readme, name


def test_nesting_too_deep_to_render_is_refused_not_a_crash():
    doc = _doc()
    deep: dict = {}
    node = deep
    for _ in range(300):  # orjson decodes 1024 levels but encodes only 254
        node["x"] = {}
        node = node["x"]
    doc["consultant_profile"]["notes"] = deep
    parsed = _parse(json.dumps(doc).encode())
    [error] = parsed.report.errors
    assert error.code == "too_deep" and error.field.startswith("consultant_profile.notes")


@pytest.mark.parametrize("levels,refused", [(62, False), (63, True)])
def test_nesting_limit_is_exact(levels, refused):
    from lorafiles.domain.enriched import MAX_DEPTH

    assert MAX_DEPTH == 64
    doc = _doc()
    node: object = "bottom"
    for _ in range(levels):  # the document and consultant_profile are two more levels
        node = {"x": node}
    doc["consultant_profile"]["notes"] = node
    parsed = _parse(json.dumps(doc).encode())
    assert (not parsed.ok) == refused
    if refused:
        assert [e.code for e in parsed.report.errors] == ["too_deep"]


# ---------------------------------------------------------------------------- item 5: empty content blocks
@pytest.mark.parametrize("field", ["system_prompt", "current_user_input", "target_response"])
@pytest.mark.parametrize("blank", ["", "   ", "\n\t ", "\u00a0\u2003", "\u200b"])
def test_blank_content_on_a_trainable_pair_blocks_the_conversation(field, blank):
    doc = _doc()
    i, pair = _target(doc)
    pair[field] = blank
    parsed = _parse(doc)
    assert not parsed.ok
    [error] = [e for e in parsed.report.errors if e.code == "empty_content"]
    assert error.field == f"training_pairs[{i}].{field}"
    assert field in error.message


def test_blank_input_on_a_pair_without_target_is_not_blocking():
    doc = _doc()
    user = next(p for p in doc["training_pairs"] if p["target_response"] is None)
    user["system_prompt"] = ""
    assert _parse(doc).ok


# ---------------------------------------------------------------------------- item 3: storable strings
@pytest.mark.parametrize("where", ["consultant_profile", "vertical", "persona_key", "pair_id", "target", "key"])
def test_nul_character_is_a_blocking_error_naming_the_field(where):
    doc = _doc()
    i, pair = _target(doc)
    expected = {
        "consultant_profile": "consultant_profile.name",
        "vertical": "dataset_metadata.vertical",
        "persona_key": "input_parameters.persona_key",
        "pair_id": f"training_pairs[{i}].id",
        "target": f"training_pairs[{i}].target_response",
        "key": "consultant_profile",
    }[where]
    if where == "consultant_profile":
        doc["consultant_profile"]["name"] = "Elena\x00Morales"
    elif where == "vertical":
        doc["dataset_metadata"]["vertical"] = "financial\x00"
    elif where == "persona_key":
        doc["input_parameters"]["persona_key"] = "anxious\x00planner"
    elif where == "pair_id":
        pair["id"] = "educational\x00"
    elif where == "target":
        pair["target_response"] = "ok\x00"
    else:
        doc["consultant_profile"]["bad\x00key"] = 1
    parsed = _parse(doc)
    assert not parsed.ok
    [error] = [e for e in parsed.report.errors if e.code == "unstorable_text"]
    assert error.field == expected
    assert "NUL" in error.message


def test_storable_helper_names_nul_and_lone_surrogates():
    from lorafiles.domain.bounds import unstorable

    assert unstorable("plain text, emoji \U0001f600, \u00e9") is None
    assert "NUL" in unstorable("a\x00b")
    assert "surrogate" in unstorable("a\ud800b")


# ---------------------------------------------------------------------------- item 2: bounded reports
def test_a_file_with_thousands_of_problems_gives_a_bounded_report():
    doc = _doc(turns=2)
    template = doc["training_pairs"][1]
    del template["training_metadata"]["quality_score"]
    pairs = []
    for n in range(400):
        p = orjson.loads(orjson.dumps(template))
        p["id"], p["turn_number"] = "x" * 1000 + str(n), 400 - n
        pairs.append(p)
    doc["training_pairs"] = pairs
    report = _parse(doc).report
    dumped = orjson.dumps(report.model_dump())
    assert len(dumped) < 16_000, len(dumped)
    assert report.errors and report.errors_omitted > 0
    assert len(report.errors) + report.errors_omitted >= 400  # what was left out is counted
    assert all(len(e.message) <= 600 for e in report.errors)


def test_cap_error_keeps_a_bounded_count_of_what_it_left_out():
    from lorafiles.domain.bounds import MAX_STORED_ERROR_BYTES, cap_error

    details = [{"conversation_id": f"c{i}", "errors": [{"code": "x", "message": "m" * 5000}] * 100}
               for i in range(5000)]
    capped = cap_error({"code": "conversations_invalid", "message": "y" * 1_000_000, "details": details})
    assert len(orjson.dumps(capped)) <= MAX_STORED_ERROR_BYTES
    assert capped["code"] == "conversations_invalid"
    assert capped["details_omitted"] == 5000 - len(capped["details"])
    assert capped["details"][0]["conversation_id"] == "c0"
    assert capped["details"][0]["errors_omitted"] > 0
    assert "more characters" in capped["message"]


def test_cap_error_makes_text_storable():
    from lorafiles.domain.bounds import cap_error, unstorable

    capped = cap_error({"code": "x", "message": "a\x00b\ud800", "details": [{"k\x00": "v\x00"}]})
    text = orjson.dumps(capped, option=orjson.OPT_NON_STR_KEYS).decode()
    assert unstorable(text) is None
