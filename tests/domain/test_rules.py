"""Business rules: eligibility, selection check, file names, quality tier."""
from __future__ import annotations

import pytest

from lorafiles.domain.rules import (MAX_SELECTION, check_file_name, check_selection, is_eligible, name_key,
                                    quality_tier)

# every value the CHECK constraint allows (existing-schema.md), plus junk
STATUSES = ["not_started", "validation_failed", "validated", "enrichment_in_progress", "enriched",
            "normalization_failed", "completed", "failed", "", None, "COMPLETED", " completed"]
PATH = "owner/conv/enriched.json"


@pytest.mark.parametrize("status", STATUSES)
def test_only_completed_with_a_path_is_eligible(status):
    assert is_eligible(status, PATH) is (status == "completed")


@pytest.mark.parametrize("path", [None, ""])
def test_completed_without_a_path_is_not_eligible(path):
    assert is_eligible("completed", path) is False


def row(status="completed", path=PATH):
    return {"enrichment_status": status, "enriched_file_path": path}


def codes(problems):
    return [(p.conversation_id, p.code) for p in problems]


def test_clean_selection_has_no_problem():
    assert check_selection(["a", "b"], {"a": row(), "b": row()}) == []


def test_every_offending_id_is_named_in_request_order():
    found = {"ok": row(), "enriched": row("enriched"), "nopath": row(path=None), "member": row()}
    problems = check_selection(
        ["ok", "ghost", "enriched", "nopath", "member", "ok", "ghost"], found, already_in_file={"member"})
    assert codes(problems) == [
        ("ghost", "not_found"),
        ("enriched", "not_eligible"),
        ("nopath", "not_eligible"),
        ("member", "already_in_file"),
        ("ok", "repeated_in_request"),
        ("ghost", "repeated_in_request"),
    ]
    by = {(p.conversation_id, p.code): p.message for p in problems}
    assert "'enriched'" in by[("enriched", "not_eligible")] and "completed" in by[("enriched", "not_eligible")]
    assert "enriched_file_path" in by[("nopath", "not_eligible")]
    for p in problems:
        assert p.message and p.as_dict() == {"conversation_id": p.conversation_id, "code": p.code, "message": p.message}


@pytest.mark.parametrize("status", [s for s in STATUSES if s != "completed"])
def test_not_eligible_reason_names_the_status(status):
    [p] = check_selection(["c"], {"c": row(status)})
    assert p.code == "not_eligible"
    assert repr(status) in p.message


def test_another_owners_conversation_is_reported_as_not_found():
    # the caller passes only the owner's rows: someone else's id is simply absent
    [p] = check_selection(["theirs"], {})
    assert (p.conversation_id, p.code) == ("theirs", "not_found")


def test_ineligible_and_already_in_file_are_both_reported():
    problems = check_selection(["x"], {"x": row("validated")}, already_in_file=["x"])
    assert codes(problems) == [("x", "not_eligible"), ("x", "already_in_file")]


def test_empty_selection_is_refused():
    [p] = check_selection([], {})
    assert p.code == "empty_selection"


def test_max_selection_is_80():
    assert MAX_SELECTION == 80
    ids = [f"c{i}" for i in range(80)]
    assert check_selection(ids, {c: row() for c in ids}) == []


def test_81_is_too_many_and_other_problems_still_listed():
    ids = [f"c{i}" for i in range(81)]
    found = {c: row() for c in ids[1:]}
    problems = check_selection(ids, found)
    assert [p.code for p in problems] == ["too_many", "not_found"]
    assert "81" in problems[0].message and "80" in problems[0].message
    assert problems[1].conversation_id == "c0"


def test_repeats_count_against_the_limit_too():
    ids = ["a"] * 81
    problems = check_selection(ids, {"a": row()})
    assert [p.code for p in problems].count("too_many") == 1
    assert [p.code for p in problems].count("repeated_in_request") == 80


# ---------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", [None, "", " ", "\t\n"])
def test_empty_name_is_refused(name):
    [p] = check_file_name(name)
    assert (p.code, p.field) == ("invalid_name", "name")


@pytest.mark.parametrize("name", ["a", "x" * 255, " " + "x" * 255 + " ", "Été — 2026 ✓"])
def test_names_up_to_255_characters_are_fine(name):
    assert check_file_name(name) == []


@pytest.mark.parametrize("name", ["x" * 256, "é" * 256, "x" * 1000])
def test_name_of_256_characters_is_refused(name):
    [p] = check_file_name(name)
    assert p.code == "invalid_name" and "255" in p.message


def test_names_compare_ignoring_case_and_surrounding_space():
    assert name_key("  My File ") == name_key("my file") == "my file"


# ---------------------------------------------------------------------------- quality tier

@pytest.mark.parametrize("score,tier", [
    (5.0, "seed_dataset"), (4.5, "seed_dataset"), (4.49, "production"), (4.4999999, "production"),
    (3.5, "production"), (3.49, "experimental"),
    (2.5, "experimental"), (2.49, "rejected"), (1.0, "rejected"), (0, "rejected"), (None, "rejected"),
    (3, "experimental"), (4.5000001, "seed_dataset"),
])
def test_quality_tier_boundaries(score, tier):
    assert quality_tier(score) == tier


# ---------------------------------------------------------------------------- names: issue 9 item 9

@pytest.mark.parametrize("a,b", [
    ("Straße", "STRASSE"), ("ΣΑΣ", "σας"), ("Σίσυφος", "ΣΊΣΥΦΟΣ"),
    ("\u00c9lan", "E\u0301lan"),                        # NFC and NFD
    ("ﬁnal", "FINAL"), ("Ｅｌｅｎａ", "Elena"),            # compatibility forms (NFKC)
    ("Elena\u200bv1", "Elenav1"), ("Elena\u00a0v1", "elena v1"), ("Elena   v1", "Elena v1"),
])
def test_names_are_the_same_on_their_nfkc_casefolded_key(a, b):
    assert name_key(a) == name_key(b)


@pytest.mark.parametrize("a,b", [("Strasse", "Strase"), ("e\u0301", "ė"), ("Elena v1", "Elena v2"), ("σα", "σας")])
def test_different_names_have_different_keys(a, b):
    assert name_key(a) != name_key(b)


@pytest.mark.parametrize("name", [
    "line\nbreak", "carriage\rreturn", "tab\there", "nul\x00", "bell\x07", "del\x7f", "c1\x85x", "esc\x1b[31m",
    "evil\u202egnp.exe", "lre\u202ax", "iso\u2066x\u2069", "rlm\u200fx", "alm\u061cx",
    "para\u2029graph", "line\u2028sep", "surrogate\udcff",
])
def test_control_and_bidi_characters_are_refused(name):
    [p] = check_file_name(name)
    assert (p.code, p.field) == ("invalid_name", "name"), p
    assert "must not contain" in p.message


@pytest.mark.parametrize("name", ["\u200b", "\u200b\u200c\u200d", "\u2060\ufeff", "\u00ad", "\u3164", "\u2800\u2800",
                                  "\u0301", "\u034f", "\ufe0f", "\U000e0041"])
def test_invisible_only_names_are_refused(name):
    [p] = check_file_name(name)
    assert p.code == "invalid_name" and "visible" in p.message


@pytest.mark.parametrize("name", ["👨\u200d👩\u200d👧 family", "עברית", "العربية 2026", "Ré\u0301sumé", "ｆｕｌｌ"])
def test_visible_names_with_joiners_and_rtl_scripts_are_fine(name):
    assert check_file_name(name) == []


HOSTILE = ["a\r\nSet-Cookie: x=1", "evil\u202egnp.json", "x\u2066y\u2069", "\u200fz", "nul\x00x", "q\"uote\\", "a/b",
           "Préstamos\r\n\u202e", "\u2028", ""]


@pytest.mark.parametrize("name", HOSTILE)
def test_download_names_and_content_disposition_carry_no_crlf_or_bidi(name):
    from urllib.parse import unquote

    from lorafiles.domain.rules import BIDI_CONTROLS, content_disposition, download_name

    saved = download_name(name, "jsonl")
    header = content_disposition(saved)
    star = header.partition("filename*=UTF-8''")[2]
    for text in (saved, header, unquote(star)):
        assert not any(c in text for c in "\r\n\x00\u2028\u2029"), repr(text)
        assert not any(c in BIDI_CONTROLS for c in text), repr(text)
        assert "/" not in text.replace("UTF-8''", "")
    assert saved.endswith(".jsonl") and len(saved) > len(".jsonl")
    assert header.startswith('attachment; filename="')


# ---------------------------------------------------------------------------- exact messages (issue 14)
# Clients show these messages as written (and the API docs quote them): each is asserted in full.

def test_ineligibility_reasons_are_worded_exactly():
    from lorafiles.domain.rules import ineligibility_reason

    assert ineligibility_reason("validated", PATH) == "enrichment_status is 'validated', not 'completed'"
    assert ineligibility_reason(None, PATH) == "enrichment_status is None, not 'completed'"
    assert ineligibility_reason("completed", "") == "enriched_file_path is empty"
    assert ineligibility_reason("completed", None) == "enriched_file_path is empty"
    assert ineligibility_reason("completed", PATH) is None


def test_every_selection_problem_is_worded_exactly():
    ids = ["ghost", "x", "x", "member", "late"] + [f"c{i}" for i in range(77)]  # 82 ids
    found = {"x": row(), "member": row(), "late": row(path="")} | {f"c{i}": row() for i in range(77)}
    problems = check_selection(ids, found, already_in_file=["member"])
    assert [p.as_dict() for p in problems] == [
        {"conversation_id": "", "code": "too_many", "message": "82 conversations selected; at most 80 per request"},
        {"conversation_id": "ghost", "code": "not_found", "message": "no such conversation"},
        {"conversation_id": "x", "code": "repeated_in_request", "message": "selected more than once in this request"},
        {"conversation_id": "member", "code": "already_in_file", "message": "already in this training file"},
        {"conversation_id": "late", "code": "not_eligible", "message": "enriched_file_path is empty"},
    ]


def test_the_empty_selection_problem_names_no_conversation():
    assert [p.as_dict() for p in check_selection([], {"a": row()})] == [
        {"conversation_id": "", "code": "empty_selection", "message": "select at least one conversation"}]


def _name_problems(name):
    return [p.model_dump() for p in check_file_name(name)]


def _invalid(message):
    return [{"code": "invalid_name", "message": message, "severity": "error", "field": "name"}]


@pytest.mark.parametrize("name,message", [
    (None, "name must not be empty"),
    ("  ", "name must not be empty"),
    ("x" * 256, "name is longer than 255 characters"),
    ("a\nb", "name must not contain control characters"),
    ("a\udcffb", "name must not contain unpaired surrogates (not valid Unicode text)"),
    ("a\u2028b", "name must not contain line or paragraph separators"),
    ("a\u2029b", "name must not contain line or paragraph separators"),
    ("a\u202eb", "name must not contain bidirectional control characters"),
    # every reason once, in alphabetical order, however often and in whatever order they occur
    ("\udcff\u2028\t\u202e\n\u2066", "name must not contain bidirectional control characters or control characters "
                                     "or line or paragraph separators or unpaired surrogates (not valid Unicode text)"),
    ("\u200b\u2800", "name must contain a visible character"),
])
def test_file_name_problems_are_worded_exactly_and_name_the_field(name, message):
    assert _name_problems(name) == _invalid(message)


@pytest.mark.parametrize("name", ["X", "XX", "7", "2026", "!", "…", "+", "$", "€", "✓", "a\u0301"])
def test_a_letter_digit_punctuation_or_symbol_alone_is_a_visible_name(name):
    # (categories L, N, P and S show something; marks, separators, format and blank symbols do not)
    assert check_file_name(name) == []


@pytest.mark.parametrize("name", ["\u0301", "\u2800", "\u200d", "\u0301\u3000\u2800", "\u0301\u2800\u200b"])
def test_marks_spaces_blank_symbols_and_format_characters_alone_are_not_visible(name):
    assert _name_problems(name) == _invalid("name must contain a visible character")


def test_runs_of_spaces_count_once_in_the_name_key():
    assert name_key("  A  \t B\u3000\u00a0C ") == "a b c"
    assert name_key("a\u200b  \u200bb") == "a b"


# ---------------------------------------------------------------------------- download names (issue 14)

@pytest.mark.parametrize("name,extension,saved", [
    ("Elena v1", "jsonl", "Elena v1.jsonl"),
    ("Elena v1", "", "Elena v1"),
    ("XYZ", "json", "XYZ.json"),                                    # nothing else changes
    ("a\nb\rc\td\x00e", "jsonl", "a_b_c_d_e.jsonl"),                # controls become "_"
    ("a/b\\c", "json", "a_b_c.json"),                               # path separators too
    ("evil\u202egnp.exe", "json", "evilgnp.exe.json"),              # bidi controls are dropped ...
    ("x\u2066y\u2069z\u200fw\u061cv", "", "xyzwv"),
    ("a\u200bb\u2060c\ufeffd\u00ade", "", "abcde"),                 # ... and so are invisible characters
    ("a\u0600b\ufff9c\U000110bdd", "", "a_b_c_d"),                  # other format characters become "_"
    ("a\u2028b\udcffc", "", "a_b_c"),                               # separators, surrogates: "_"
    ("  many   spaces\u3000here \t", "txt", "many spaces here _.txt"),  # whitespace runs: one space; TAB: "_"
    ("E\u0301lan", "", "\u00c9lan"),                                 # NFC
    ("", "jsonl", "training-file.jsonl"),                           # nothing left: a name all the same
    ("\u200b\u202e", "", "training-file"),
    (" \u200b ", "json", "training-file.json"),
])
def test_download_name_is_the_name_made_safe(name, extension, saved):
    from lorafiles.domain.rules import download_name

    assert download_name(name, extension) == saved
    if not extension:
        assert download_name(name) == saved  # no extension unless asked for


@pytest.mark.parametrize("name,header", [
    ("Elena v1.jsonl", 'attachment; filename="Elena v1.jsonl"'),
    ('say "hi".json', 'attachment; filename="say \\"hi\\".json"'),
    ("a\\b\r\nSet-Cookie: x=1", 'attachment; filename="a_b__Set-Cookie: x=1"'),
    ("Résumé 训练.jsonl", "attachment; filename=\"R?sum? ??.jsonl\"; "
                         "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E8%AE%AD%E7%BB%83.jsonl"),
    ('é"/\u202e.json', "attachment; filename=\"?\\\"_.json\"; filename*=UTF-8''%C3%A9%22_.json"),
])
def test_content_disposition_is_exact(name, header):
    from lorafiles.domain.rules import content_disposition

    assert content_disposition(name) == header
