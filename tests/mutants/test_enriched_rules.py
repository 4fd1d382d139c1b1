"""The validation rules of parse_enriched at their edges: each test states one rule the report
exists for (issue 14: these edges let a flipped comparison or a dropped call pass unnoticed)."""
from __future__ import annotations

import copy

import orjson
import pytest

from lorafiles.domain.enriched import MAX_ERRORS_PER_FILE, parse_enriched
from lorafiles.domain.samples import dumps_enriched, generate_conversation

CID = "3f0c4d5e-6a7b-4c8d-9e0f-1a2b3c4d5e6f"


def doc(turns: int = 6, **kw) -> dict:
    """A clean generated conversation (no quirks, input not repeated in history). With seed 7 the
    even turns are the trainable ones; turns 3.. have history."""
    return generate_conversation(7, turns=turns, repeat_input_in_history=False, **kw)


def parse(d: dict, conversation_id: str | None = CID):
    return parse_enriched(dumps_enriched(d), source="mem://x.json", conversation_id=conversation_id)


def warnings(d: dict, **kw) -> dict[str, str]:
    parsed = parse(d, **kw)
    assert parsed.ok, [e.line() for e in parsed.report.errors]
    return {w.code: w.message for w in parsed.report.warnings}


def test_the_clean_sample_has_only_the_name_warning():
    # the baseline every edge below is compared with: the generated id is not CID
    assert set(warnings(doc())) == {"dataset_name_mismatch"}
    assert set(warnings(doc(), conversation_id=None)) == set()


def test_a_target_ending_in_a_backslash_then_spaces_is_still_truncated():
    d = doc()
    d["training_pairs"][1]["target_response"] = "and the next step is \\  \n"
    w = warnings(d)
    assert "truncated_target" in w
    assert d["training_pairs"][1]["id"] in w["truncated_target"]
    assert w["truncated_target"].startswith("1 target response(s)")


def test_double_escaped_newlines_are_counted_per_text():
    d = doc()
    d["training_pairs"][0]["target_response"] = "first\\nsecond"
    d["training_pairs"][1]["current_user_input"] = "a\\nb"
    d["training_pairs"][3]["target_response"] = "c\\nd\\ne"  # one text, two escapes: counted once
    w = warnings(d)
    assert "in 3 text(s)" in w["double_escaped_newline"], w["double_escaped_newline"]


@pytest.mark.parametrize("score,low", [(2.5, False), (2.4, True), (2.6, False)])
def test_low_quality_is_strictly_below_two_and_a_half(score, low):
    w = warnings(doc(quality=score))
    assert ("low_quality" in w) is low
    if low:
        assert "2.40 is below 2.5" in w["low_quality"]


@pytest.mark.parametrize("score,ok", [(10.0, True), (7.5, True), (5.5, True), (10.01, False), (-0.1, False)])
def test_quality_scores_range_from_zero_to_ten(score, ok):
    parsed = parse(doc(quality=score))
    assert parsed.ok is ok, [e.line() for e in parsed.report.errors]
    if not ok:
        assert {e.field for e in parsed.report.errors} == {f"training_pairs[{i}].training_metadata.quality_score"
                                                           for i in range(6)}


@pytest.mark.parametrize("role", [None, ""])
def test_history_items_with_an_empty_or_missing_role_are_counted(role):
    d = doc()
    d["training_pairs"][2]["conversation_history"][0]["role"] = role
    d["training_pairs"][4]["conversation_history"][3]["role"] = role
    assert warnings(d)["history_without_role"] == "2 history item(s) have no role"


@pytest.mark.parametrize("value", [None, ""])
def test_empty_scaffolding_values_count_as_missing(value):
    d = doc()
    d["training_pairs"][2]["conversation_metadata"]["training_topic_key"] = value
    assert warnings(d)["missing_scaffolding_keys"].startswith("1 pair(s) lack scaffolding keys")


def test_repeated_input_is_checked_against_the_last_history_item_only():
    d = doc()
    last = d["training_pairs"][5]
    assert last["target_response"] is not None and len(last["conversation_history"]) >= 2
    last["current_user_input"] = last["conversation_history"][0]["content"]  # the first item: not a repeat
    assert "input_repeats_history" not in warnings(d)
    last["current_user_input"] = last["conversation_history"][-1]["content"]
    assert warnings(d)["input_repeats_history"] == "current_user_input repeats the last history item in 1 target pair(s)"


def test_an_unrecognised_dataset_name_is_a_warning_when_the_database_names_the_conversation():
    d = doc()
    d["dataset_metadata"]["dataset_name"] = "some_other_naming_scheme"
    parsed = parse(d)
    assert parsed.ok and not parsed.report.errors
    assert [w.code for w in parsed.report.warnings] == ["dataset_name_unrecognised"]
    assert parsed.report.conversation_id == CID
    # without the database's id it cannot be imported
    refused = parse(d, conversation_id=None)
    assert not refused.ok and [e.code for e in refused.report.errors] == ["no_conversation_id"]


def test_shape_errors_are_listed_up_to_twenty_then_summarised():
    assert MAX_ERRORS_PER_FILE == 20
    d = doc(turns=13)
    for p in d["training_pairs"]:  # two shape errors per pair: 26
        p["turn_number"] = str(p["turn_number"])
        p["system_prompt"] = None
    parsed = parse(d)
    messages = [e.message for e in parsed.report.errors]
    assert len(messages) == 20, messages
    assert parsed.report.errors_omitted == 6  # the rest are counted, not listed
    assert all(e.code == "wrong_shape" for e in parsed.report.errors)


def test_exactly_twenty_shape_errors_are_all_listed_without_a_summary():
    d = doc(turns=10)
    for p in d["training_pairs"]:
        p["turn_number"] = str(p["turn_number"])
        p["system_prompt"] = None
    messages = [e.message for e in parse(d).report.errors]
    assert len(messages) == 20 and parse(d).report.errors_omitted == 0


def test_validation_never_rewrites_the_pairs():
    d = doc()
    d["training_pairs"][1]["target_response"] = "ends badly \\ "
    raw = copy.deepcopy(d)
    parsed = parse(d)
    assert orjson.dumps(parsed.pairs) == orjson.dumps(raw["training_pairs"])


# ---------------------------------------------------------------------------- scaffolding precedence

PAIR = {"persona_key": "pair_persona", "persona_name": "Pat Pair", "emotional_arc_key": "pair_arc",
        "emotional_arc": "Pair Arc", "training_topic_key": "pair_topic", "training_topic": "Pair Topic"}
PARAMS = {"persona_key": "ip_persona", "persona_name": "Ivy Params", "emotional_arc_key": "ip_arc",
          "emotional_arc_name": "Params Arc", "training_topic_key": "ip_topic", "training_topic_name": "Params Topic"}
SNAPSHOT = {"persona": {"persona_key": "snap_persona", "name": "Sam Snapshot"},
            "emotional_arc": {"arc_key": "snap_arc", "name": "Snapshot Arc"},
            "training_topic": {"topic_key": "snap_topic", "name": "Snapshot Topic"}}
ROW = {"persona_key": "row_persona", "emotional_arc_key": "row_arc", "topic_key": "row_topic"}


def scaffolded(with_params: bool) -> dict:
    d = doc()
    for p in d["training_pairs"]:  # every pair says the same; the first one is read
        p["conversation_metadata"].update({
            "client_persona": "Pat Pair - The Pair Persona", "persona_archetype": "pair_persona",
            "emotional_arc_key": "pair_arc", "emotional_arc": "Pair Arc",
            "training_topic_key": "pair_topic", "training_topic": "Pair Topic"})
    if with_params:
        d["input_parameters"] = dict(PARAMS)
    else:
        d.pop("input_parameters", None)
    return d


def test_scaffolding_comes_from_the_first_pair_when_nothing_else_says():
    assert parse(scaffolded(False)).scaffolding().as_dict() == PAIR


def test_input_parameters_come_before_the_pairs():
    assert parse(scaffolded(True)).scaffolding().as_dict() == {
        "persona_key": "ip_persona", "persona_name": "Ivy Params", "emotional_arc_key": "ip_arc",
        "emotional_arc": "Params Arc", "training_topic_key": "ip_topic", "training_topic": "Params Topic"}


def test_the_database_snapshot_comes_before_the_file():
    got = parse(scaffolded(True)).scaffolding({"scaffolding_snapshot": SNAPSHOT}).as_dict()
    assert got == {"persona_key": "snap_persona", "persona_name": "Sam Snapshot", "emotional_arc_key": "snap_arc",
                   "emotional_arc": "Snapshot Arc", "training_topic_key": "snap_topic",
                   "training_topic": "Snapshot Topic"}


def test_the_rows_key_columns_come_first_and_names_still_come_from_the_snapshot():
    got = parse(scaffolded(True)).scaffolding({**ROW, "scaffolding_snapshot": SNAPSHOT}).as_dict()
    assert got == {"persona_key": "row_persona", "persona_name": "Sam Snapshot", "emotional_arc_key": "row_arc",
                   "emotional_arc": "Snapshot Arc", "training_topic_key": "row_topic",
                   "training_topic": "Snapshot Topic"}


def test_empty_values_fall_through_to_the_next_source():
    hint = {"persona_key": "", "emotional_arc_key": None, "topic_key": "",
            "scaffolding_snapshot": {"persona": {"persona_key": "", "name": ""}, "emotional_arc": {},
                                     "training_topic": None}}
    d = scaffolded(True)
    d["input_parameters"].update({"persona_key": "", "emotional_arc_name": ""})
    got = parse(d).scaffolding(hint).as_dict()
    assert got == {"persona_key": "pair_persona", "persona_name": "Ivy Params", "emotional_arc_key": "ip_arc",
                   "emotional_arc": "Pair Arc", "training_topic_key": "ip_topic", "training_topic": "Params Topic"}


def test_a_persona_without_a_dash_is_named_whole_and_a_blank_one_not_at_all():
    d = scaffolded(False)
    d["training_pairs"][0]["conversation_metadata"]["client_persona"] = "  Pat Pair  "
    assert parse(d).scaffolding().persona_name == "Pat Pair"
    d["training_pairs"][0]["conversation_metadata"]["client_persona"] = " - The Nobody"
    assert parse(d).scaffolding().persona_name is None


def test_a_refused_file_has_no_scaffolding_of_its_own():
    refused = parse_enriched(b"[]", source="mem://x.json", conversation_id=CID)
    assert refused.scaffolding().as_dict() == {k: None for k in PAIR}
    assert refused.scaffolding(ROW).as_dict() == {**{k: None for k in PAIR}, "persona_key": "row_persona",
                                                   "emotional_arc_key": "row_arc", "training_topic_key": "row_topic"}


# ---------------------------------------------------------------------------- the report's exact records
# Each problem's code, field and message are what the CLI prints and the API returns per conversation.

def test_every_warning_is_reported_with_its_field_and_message():
    d = doc()
    d["dataset_metadata"]["dataset_name"] = "other"
    p = d["training_pairs"]
    p[1]["target_response"] = "cut \\"
    p[3]["target_response"] = "also cut \\"
    p[5]["target_response"] = "a\\nb"
    p[2]["conversation_history"][0]["role"] = ""
    p[5]["current_user_input"] = p[5]["conversation_history"][-1]["content"]
    p[4]["conversation_metadata"]["training_topic"] = ""
    for q in p:
        if q["target_response"] is not None:
            q["training_metadata"]["quality_score"] = 2.0
    parsed = parse(d)
    assert parsed.ok
    got = [(w.code, w.field, w.message, w.severity) for w in parsed.report.warnings]
    assert got == [
        ("dataset_name_unrecognised", "dataset_metadata.dataset_name",
         "dataset_name 'other' is not fp_conversation_<uuid>", "warning"),
        ("truncated_target", "target_response",
         f"2 target response(s) end in a backslash (truncated): {p[1]['id']}, {p[3]['id']}", "warning"),
        ("double_escaped_newline", "", "literal backslash-n (double-escaped newline) in 1 text(s); kept as written",
         "warning"),
        ("history_without_role", "conversation_history", "1 history item(s) have no role", "warning"),
        ("input_repeats_history", "current_user_input",
         "current_user_input repeats the last history item in 1 target pair(s)", "warning"),
        ("missing_scaffolding_keys", "conversation_metadata", "1 pair(s) lack scaffolding keys (persona_archetype, "
         "emotional_arc, emotional_arc_key, training_topic, training_topic_key)", "warning"),
        ("low_quality", "training_metadata.quality_score", "mean quality score 2.00 is below 2.5", "warning"),
    ]


def test_blocking_errors_are_reported_with_their_field_and_message():
    d = doc()
    for q in d["training_pairs"]:
        q["target_response"] = None
    d["training_pairs"][1]["turn_number"] = 7
    assert [(e.code, e.field, e.message, e.severity) for e in parse(d).report.errors] == [
        ("non_sequential_turns", "training_pairs", "turn_number values 1, 7, 3, 4, 5, 6 are not 1..6", "error"),
        ("no_trainable_pair", "training_pairs", "no training pair has a target_response", "error")]
    d = doc()
    d["training_pairs"][1]["training_metadata"]["quality_score"] = None
    pid = d["training_pairs"][1]["id"]
    assert [(e.code, e.field, e.message) for e in parse(d).report.errors] == [
        ("missing_quality_score", "training_pairs[1].training_metadata.quality_score",
         f"pair {pid} has a target but no quality_score")]


def test_a_dataset_name_naming_another_conversation_is_reported_with_both_ids():
    d = doc()
    other = "00000000-0000-4000-8000-000000000000"
    d["dataset_metadata"]["dataset_name"] = f"fp_conversation_{other.upper()}"
    parsed = parse(d)
    assert parsed.file_uuid == other  # compared in lower case
    assert [(w.code, w.field, w.message) for w in parsed.report.warnings] == [
        ("dataset_name_mismatch", "dataset_metadata.dataset_name",
         f"dataset_name names {other}; the database id {CID} is used")]
    d["dataset_metadata"]["dataset_name"] = f"fp_conversation_{CID.upper()}"
    assert parse(d, conversation_id=CID.upper()).report.warnings == []
