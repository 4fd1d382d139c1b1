"""Turn structure: repeated input, role inference, divergent histories, alternation."""
import copy

import orjson
from exports_helpers import FakeModel, make_pairs
from lorafiles.domain.exports import TrainingPolicy, build_member_exports

TEXTS = ["u one", "a one", "u two", "a two", "u three", "a three"]


def build(pairs, **policy):
    return build_member_exports("c", pairs, TrainingPolicy(**policy), FakeModel())


def openai_messages(result):
    return [orjson.loads(line)["messages"] for line in result.lines["openai"].splitlines()]


def codes(result, severity=None):
    return [p.code for p in result.problems if severity is None or p.severity == severity]


def test_dialogue_comes_from_the_last_trainable_pair_and_the_repeated_input_is_sent_once():
    r = build(make_pairs(TEXTS))
    (msgs,) = openai_messages(r)
    assert [(m["role"], m["content"]) for m in msgs] == [("system", "You are a kind advisor.")] + [
        ("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(TEXTS)]
    assert r.stats["changes"]["repeated_user_input_removed"] == 3
    assert r.stats["checks"]["repeated_user_input"] == 3
    assert codes(r).count("repeated_user_input") == 3
    assert r.ok


def test_input_not_repeated_in_history_is_appended():
    r = build(make_pairs(TEXTS, repeat=False))
    (msgs,) = openai_messages(r)
    assert [m["content"] for m in msgs[1:]] == TEXTS
    assert r.stats["changes"]["repeated_user_input_removed"] == 0
    assert "repeated_user_input" not in codes(r)


def test_input_that_differs_from_the_last_history_item_is_appended_and_breaks_alternation():
    pairs = make_pairs(TEXTS)
    pairs[5]["current_user_input"] = "a different question"  # history already ends with "u three"
    r = build(pairs)
    assert not r.ok
    err = next(p for p in r.problems if p.code == "alternation")
    assert err.severity == "error" and err.field == "training_pairs[5].current_user_input"
    assert r.lines == {f: b"" for f in r.lines}


def test_history_items_without_role_get_it_from_alternation_with_a_warning():
    pairs = make_pairs(TEXTS, roleless=(0, 1))
    for p in pairs:
        for item in p["conversation_history"][2:3]:
            item["role"] = ""  # empty string counts as missing too
    r = build(pairs)
    (msgs,) = openai_messages(r)
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3
    assert r.stats["changes"]["role_inferred"] == 3 and r.stats["checks"]["role_inferred"] == 3
    fields = [p.field for p in r.problems if p.code == "role_inferred"]
    assert fields == [f"training_pairs[5].conversation_history[{j}].role" for j in range(3)]
    assert all(p.severity == "warning" for p in r.problems if p.code == "role_inferred")
    assert r.ok


def test_unknown_history_role_is_an_error():
    pairs = make_pairs(TEXTS)
    pairs[5]["conversation_history"][1]["role"] = "consultant"
    r = build(pairs)
    assert not r.ok
    assert any(p.code == "unrecognized_role" and p.field == "training_pairs[5].conversation_history[1].role"
               for p in r.errors)


def test_earlier_pairs_that_are_prefixes_mark_their_targets_trained():
    r = build(make_pairs(TEXTS))
    (msgs,) = openai_messages(r)
    assert [m.get("weight") for m in msgs] == [None, None, 1, None, 1, None, 1]
    assert r.stats["changes"]["divergent_history_split"] == 0
    assert r.stats["lines"] == {"openai": 1, "trl": 3, "axolotl": 1, "sharegpt": 1}


def test_divergent_history_starts_a_dialogue_of_its_own():
    pairs = make_pairs(TEXTS)
    for p in pairs[4:]:  # turns 5 and 6 remember the first answer differently
        p["conversation_history"][1]["content"] = "a one, rewritten"
    r = build(pairs)
    assert r.ok
    assert r.stats["changes"]["divergent_history_split"] == 1
    first, second = openai_messages(r)
    # turns 2 and 4 agree with each other; turn 6 (the last) remembers turn 2 differently
    assert [m["content"] for m in first[1:]] == TEXTS[:4]
    assert [m.get("weight") for m in first[1:]] == [None, 1, None, 1]
    assert [m["content"] for m in second[1:]] == ["u one", "a one, rewritten", "u two", "a two", "u three", "a three"]
    assert [m.get("weight") for m in second[1:]] == [None, 0, None, 0, None, 1]
    warn = next(p for p in r.problems if p.code == "divergent_history_split")
    assert warn.severity == "warning" and warn.field == "training_pairs[3].conversation_history"


def test_a_pair_with_a_different_system_prompt_starts_its_own_dialogue():
    pairs = make_pairs(TEXTS)
    pairs[1]["system_prompt"] = "Another system prompt."
    r = build(pairs)
    assert r.ok and r.stats["changes"]["divergent_history_split"] == 1
    first, second = openai_messages(r)
    assert first[0] == {"role": "system", "content": "Another system prompt."}
    assert second[0]["content"] == "You are a kind advisor."
    assert [m.get("weight") for m in second] == [None, None, 0, None, 1, None, 1]
    assert any(p.field == "training_pairs[1].system_prompt" for p in r.problems if p.code == "divergent_history_split")


def test_leading_assistant_history_is_left_out_so_examples_start_with_user():
    pairs = make_pairs(TEXTS)
    for p in pairs:
        p["conversation_history"].insert(0, {"role": "assistant", "content": "Welcome! How can I help?"})
    r = build(pairs)
    assert r.ok
    (msgs,) = openai_messages(r)
    assert msgs[1] == {"role": "user", "content": "u one"}
    assert r.stats["changes"]["leading_assistant_dropped"] == 1
    assert "leading_assistant_dropped" in codes(r, "warning")


def test_duplicate_pair_is_exported_once_with_a_warning():
    pairs = make_pairs(TEXTS)
    pairs.insert(2, copy.deepcopy(pairs[1]))
    r = build(pairs)
    assert r.ok
    (msgs,) = openai_messages(r)
    assert len(msgs) == 7
    assert "duplicate_pair" in codes(r, "warning")
    assert r.stats["lines"]["trl"] == 3


def test_user_pairs_without_target_contribute_nothing_after_the_last_target():
    pairs = make_pairs(TEXTS + ["u four, never answered"])
    r = build(pairs)
    (msgs,) = openai_messages(r)
    assert msgs[-1] == {"role": "assistant", "content": "a three", "weight": 1}
