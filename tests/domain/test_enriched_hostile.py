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


# ---------------------------------------------------------------------------- boundaries of the walk
def _nested(depth: int):
    """A value whose innermost string sits `depth` containers below the field holding it."""
    value = "deep"
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_is_refused_just_past_max_depth_not_at_it():
    from lorafiles.domain.enriched import MAX_DEPTH

    # the field itself is 3 levels down (training_pairs[0].training_metadata.x): the list levels
    # bring the innermost string to exactly MAX_DEPTH, then one more
    doc = _doc()
    doc["training_pairs"][0]["training_metadata"]["x"] = _nested(MAX_DEPTH - 4)
    assert "too_deep" not in _errors(_parse(doc))
    doc["training_pairs"][0]["training_metadata"]["x"] = _nested(MAX_DEPTH - 3)
    [deep] = _errors(_parse(doc))["too_deep"]
    assert deep.message == f"nested more than {MAX_DEPTH} levels deep"
    assert deep.field.startswith("training_pairs[0].training_metadata.x[0]")


def test_the_walk_goes_on_after_a_too_deep_branch_and_visits_every_list_item():
    from lorafiles.domain.enriched import MAX_DEPTH

    doc = _doc()
    pairs = doc["training_pairs"]
    assert len(pairs) >= 3
    pairs[0]["training_metadata"]["x"] = _nested(MAX_DEPTH)   # too deep, visited first
    pairs[1]["current_user_input"] = "a\x00b"                  # then the second item of the list
    pairs[-1]["target_response"] = (pairs[-1]["target_response"] or "") + "\x00"
    errors = _errors(_parse(doc))
    assert [e.field.split(".")[0] for e in errors["too_deep"]] == ["training_pairs[0]"]
    assert sorted(e.field for e in errors["unstorable_text"]) == sorted(
        ["training_pairs[1].current_user_input", f"training_pairs[{len(pairs) - 1}].target_response"])


def test_every_item_of_a_list_is_walked_not_every_other_one():
    for n in range(4):
        doc = _doc()
        doc["training_pairs"][n]["current_user_input"] = "nul\x00here"
        [bad] = _errors(_parse(doc))["unstorable_text"]
        assert bad.field == f"training_pairs[{n}].current_user_input"


def test_a_text_field_at_the_limit_passes_and_one_past_it_is_refused_with_the_documented_message():
    from lorafiles.domain.enriched import EnrichedLimits

    limits = EnrichedLimits(max_text_chars=5000)
    doc = _doc()
    i, _ = _target(doc)
    doc["training_pairs"][i]["target_response"] = "y" * 5000
    assert "text_too_long" not in _errors(_parse(doc, limits=limits))
    doc["training_pairs"][i]["target_response"] = "y" * 5001
    [long] = _errors(_parse(doc, limits=limits))["text_too_long"]
    assert long.message == "5001 characters; the limit is 5000 per text field (LORAFILES_MAX_TEXT_CHARS)"
    assert long.field == f"training_pairs[{i}].target_response"
    doc["training_pairs"][i]["target_response"] = "fine"
    doc["training_pairs"][i]["training_metadata"]["k" * 5001] = 1
    [key] = _errors(_parse(doc, limits=limits))["text_too_long"]
    assert key.message == "a key of 5001 characters; the limit is 5000 (LORAFILES_MAX_TEXT_CHARS)"
    assert key.field == f"training_pairs[{i}].training_metadata"


# ---------------------------------------------------------------------------- the exact words a user reads
def test_a_duplicate_key_inside_any_item_of_a_list_is_found_with_its_count():
    for n in range(4):
        doc = _doc()
        text = dumps_enriched(doc).decode()
        at = -1
        for _ in range(n + 1):  # the (n+1)-th pair's turn_number
            at = text.index('"turn_number"', at + 1)
        hostile = (text[:at] + '"turn_number": 0, "turn_number": 0, ' + text[at:]).encode()
        [dup] = _errors(_parse(hostile))["duplicate_key"]
        assert dup.message == ("key 'turn_number' appears 3 times in one object; a JSON reader would silently "
                               "keep only one of them")
        assert dup.field == f"training_pairs[{n}]"


def test_the_limits_say_what_they_are_and_where_to_change_them():
    from lorafiles.domain.enriched import EnrichedLimits

    blob = dumps_enriched(_doc())
    [big] = _parse(blob, limits=EnrichedLimits(max_bytes=len(blob) - 1)).report.errors
    assert (big.code, big.message) == ("file_too_large", f"the file is {len(blob)} bytes; the limit is "
                                       f"{len(blob) - 1} bytes per enriched file (LORAFILES_MAX_ENRICHED_BYTES)")
    assert _parse(blob, limits=EnrichedLimits(max_bytes=len(blob))).report.ok
    doc = _doc()
    n = len(doc["training_pairs"])
    [many] = _parse(doc, limits=EnrichedLimits(max_pairs=n - 1)).report.errors
    assert (many.code, many.field, many.message) == (
        "too_many_pairs", "training_pairs",
        f"{n} training pairs; the limit is {n - 1} per conversation (LORAFILES_MAX_PAIRS_PER_CONVERSATION)")
    assert _parse(doc, limits=EnrichedLimits(max_pairs=n)).report.ok


@pytest.mark.parametrize("top,name", [([], "list"), ("x", "str"), (3, "int"), (None, "NoneType")])
def test_a_top_level_that_is_not_an_object_is_named(top, name):
    [e] = _parse(orjson.dumps(top)).report.errors
    assert (e.code, e.message) == ("wrong_shape", f"top level is a JSON {name}, expected an object")


def test_a_file_that_is_not_v4_lists_what_is_missing_and_some_of_what_is_there():
    from lorafiles.domain.bounds import clip

    other = {f"key_{i}": i for i in range(9)}
    [e] = _parse(orjson.dumps(other)).report.errors
    assert e.message == ("not a v4 enriched conversation: missing dataset_metadata, consultant_profile, "
                         "training_pairs (top-level keys: key_0, key_1, key_2, key_3, key_4, key_5 and 3 more)")
    # a long key is clipped at 40 characters, a key of exactly 40 is not
    at_limit, over = "a" * 40, "b" * 41
    [e] = _parse(orjson.dumps({at_limit: 1, over: 2, "training_pairs": []})).report.errors
    assert e.message.endswith(f"(top-level keys: {at_limit}, {clip(over, 40)}, training_pairs)")
    assert clip(over, 40) != over


def test_long_listings_show_twenty_then_count_the_rest():
    doc = _doc(turns=23)
    pairs = doc["training_pairs"]
    for p in pairs:
        p["turn_number"] = 24 - p["turn_number"]  # 23 .. 1
    [turns] = _errors(_parse(doc))["non_sequential_turns"]
    assert turns.message == ("turn_number values " + ", ".join(str(23 - i) for i in range(20))
                             + " and 3 more are not 1..23")
    doc = _doc(turns=45)
    targets = [p for p in doc["training_pairs"] if p["target_response"] is not None]
    assert len(targets) >= 21
    for p in targets:
        p["target_response"] += " \\\\"  # ends in a backslash, after a space
    [cut] = [w for w in _parse(doc).report.warnings if w.code == "truncated_target"]
    ids = [p["id"] for p in targets]
    from lorafiles.domain.bounds import clip
    from lorafiles.domain.problems import MAX_PROBLEM_MESSAGE_CHARS

    # (the count leads: a message clipped for the report still says how many)
    assert cut.message == clip(f"{len(targets)} target response(s) end in a backslash (truncated): "
                               + ", ".join(ids[:20]) + f" and {len(targets) - 20} more", MAX_PROBLEM_MESSAGE_CHARS)
    for p in targets:
        p["id"] = p["id"][-6:]  # short ids: the whole listing fits
    [cut] = [w for w in _parse(doc).report.warnings if w.code == "truncated_target"]
    assert cut.message.endswith(", ".join(p["id"] for p in targets[:20]) + f" and {len(targets) - 20} more")


def test_an_empty_text_on_a_trainable_pair_says_why_it_blocks():
    doc = _doc()
    i, pair = _target(doc)
    pair["current_user_input"] = " \u200b\t"
    [e] = _errors(_parse(doc))["empty_content"]
    assert e.field == f"training_pairs[{i}].current_user_input"
    assert e.message.startswith("current_user_input of trainable pair ")
    assert e.message.endswith(" is empty or only whitespace: a training example needs text")


def test_the_full_walk_keeps_the_same_boundaries_as_the_fast_path():
    """A NUL anywhere makes the walk visit every node: a value exactly MAX_DEPTH deep and a key of
    exactly the limit are still fine there; only the NUL is reported."""
    from lorafiles.domain.enriched import MAX_DEPTH, EnrichedLimits

    doc = _doc()
    doc["training_pairs"][0]["training_metadata"]["x"] = _nested(MAX_DEPTH - 4)
    doc["training_pairs"][0]["training_metadata"]["k" * 5000] = 1
    doc["training_pairs"][1]["current_user_input"] = "nul\x00"
    errors = _errors(_parse(doc, limits=EnrichedLimits(max_text_chars=5000)))
    assert list(errors) == ["unstorable_text"], errors
