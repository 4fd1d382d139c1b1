"""Text fixes and the text pre-flight checks (empty, control strings/characters, invalid Unicode)."""
import orjson
import pytest
from exports_helpers import FakeModel, make_pairs
from lorafiles.domain.exports import (
    WELL_KNOWN_CONTROL_STRINGS,
    TrainingPolicy,
    build_member_exports,
)
from lorafiles.domain.exports.fixes import (
    control_characters,
    fix_literal_escapes,
    invalid_unicode,
    is_truncated,
)

TEXTS = ["u one", "a one", "u two", "a two"]


def build(pairs, model=None, **policy):
    return build_member_exports("c", pairs, TrainingPolicy(**policy), model or FakeModel())


def contents(result, fmt="openai"):
    return [m["content"] for line in result.lines[fmt].splitlines() for m in orjson.loads(line)["messages"]]


def test_fix_literal_escapes_replaces_exactly_the_three_sequences():
    assert fix_literal_escapes(r'a\nb\tc\"d\\e\x') == 'a\nb\tc"d' + r'\\e\x'  # other escapes untouched
    assert fix_literal_escapes("no escapes\n") == "no escapes\n"


def test_truncated_means_ending_in_a_backslash_after_rstrip():
    assert is_truncated("the fear of making the \\")
    assert is_truncated("cut \\  \n")
    assert not is_truncated('a quote \\"') and not is_truncated("fine.")


def test_literal_escapes_are_fixed_in_every_message_and_counted_per_message():
    texts = [r"u one\nline two", r"a one \"quoted\"", "u two", r"a two\tend"]
    pairs = make_pairs(texts, system=r"System\nprompt")
    r = build(pairs)
    assert contents(r) == ["System\nprompt", "u one\nline two", 'a one "quoted"', "u two", "a two\tend"]
    assert r.stats["changes"]["literal_escapes_fixed"] == 4
    assert r.stats["checks"]["literal_escapes"] == 4
    assert {p.field for p in r.problems if p.code == "literal_escapes"} == {
        "training_pairs[3].system_prompt", "training_pairs[1].current_user_input",
        "training_pairs[1].target_response", "training_pairs[3].target_response"}
    assert all(p.severity == "warning" for p in r.problems if p.code == "literal_escapes")
    assert pairs[3]["target_response"] == r"a two\tend"  # the input is never modified


def test_literal_escapes_are_kept_when_the_switch_is_off_but_still_reported():
    texts = [r"u one\nline two", "a one", "u two", "a two"]
    r = build(make_pairs(texts), fix_literal_escapes=False)
    assert contents(r)[1] == r"u one\nline two"
    assert r.stats["changes"]["literal_escapes_fixed"] == 0
    assert r.stats["checks"]["literal_escapes"] == 1
    assert "kept as written" in next(p.message for p in r.problems if p.code == "literal_escapes")


@pytest.mark.parametrize("where, field", [
    ("system", "training_pairs[3].system_prompt"),
    ("input", "training_pairs[3].current_user_input"),
    ("target", "training_pairs[3].target_response"),
    ("history", "training_pairs[3].conversation_history[0].content"),
])
def test_empty_or_whitespace_content_is_an_error_naming_the_field(where, field):
    pairs = make_pairs(TEXTS, repeat=False)
    p = pairs[3]
    if where == "system":
        for q in pairs:
            q["system_prompt"] = " \n "
    elif where == "input":
        p["current_user_input"] = "\t"
    elif where == "target":
        p["target_response"] = "   "
    else:
        p["conversation_history"][0]["content"] = ""
    r = build(pairs)
    assert not r.ok
    assert any(e.code == "empty_content" and e.field == field for e in r.errors), r.problems
    assert r.stats["checks"]["empty_content"] >= 1
    assert r.lines == {f: b"" for f in r.lines} and all(v == [] for v in r.stats["tokens"].values())
    if where == "target":
        assert {"pair_id": "t_turn4", "turn_number": 4, "reason": "empty_content", "trainable_tokens": 0} in r.stats["exclusions"]


def test_content_that_becomes_blank_after_the_fix_is_an_error():
    pairs = make_pairs(TEXTS)
    pairs[3]["target_response"] = r"\n\n"
    r = build(pairs)
    assert any(e.code == "empty_content" and e.field == "training_pairs[3].target_response" for e in r.errors)
    assert build(make_pairs(TEXTS[:2] + ["u two", r"\n\n"]), fix_literal_escapes=False).ok


@pytest.mark.parametrize("token", WELL_KNOWN_CONTROL_STRINGS)
def test_well_known_control_strings_in_content_are_errors(token):
    pairs = make_pairs(["u one", f"a one {token} more", "u two", "a two"])
    r = build(pairs)
    err = next(e for e in r.errors if e.code == "control_token")
    assert token in err.message and err.field == "training_pairs[1].target_response"
    assert r.stats["checks"]["control_tokens"] == 1
    assert r.lines["openai"] == b""


def test_the_models_own_control_tokens_are_checked_too():
    pairs = make_pairs(["u one <ctl>", "a one", "u two", "a two"])
    r = build(pairs)
    assert [e.field for e in r.errors if e.code == "control_token"] == ["training_pairs[1].current_user_input"]
    assert build(pairs, FakeModel(control_tokens=())).ok


def test_control_characters_are_a_warning_and_the_text_is_kept():
    pairs = make_pairs(["u one\x07 bell", "a one", "u two", "a two\x00"])
    r = build(pairs)
    assert r.ok
    warns = [p for p in r.problems if p.code == "control_characters"]
    assert [(w.severity, w.field) for w in warns] == [
        ("warning", "training_pairs[1].current_user_input"), ("warning", "training_pairs[3].target_response")]
    assert "U+0007" in warns[0].message
    assert r.stats["checks"]["control_characters"] == 2
    assert contents(r)[1] == "u one\x07 bell" and contents(r)[-1] == "a two\x00"
    assert control_characters("tab\tnew\nline\r") == []


def test_lone_surrogates_are_an_error_and_never_reach_serialisation():
    pairs = make_pairs(["u one \ud800", "a one", "u two", "a two"])
    r = build(pairs)
    assert [(e.code, e.field) for e in r.errors] == [("invalid_unicode", "training_pairs[1].current_user_input")]
    assert "U+D800" in r.errors[0].message
    assert r.stats["checks"]["invalid_unicode"] == 1
    assert r.lines["openai"] == b""
    assert invalid_unicode("fine — ok →") is None


def test_control_characters_finds_exactly_unicode_category_cc_less_newline_cr_and_tab():
    import sys
    import unicodedata

    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    expected = sorted(f"U+{ord(c):04X}" for c in every if unicodedata.category(c) == "Cc" and c not in "\n\r\t")
    assert control_characters(every) == expected and len(expected) == 62
    assert control_characters("a\x7fb\x00c\x9f\x85") == ["U+0000", "U+007F", "U+0085", "U+009F"]
