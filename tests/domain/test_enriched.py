"""parse_enriched on the real fixture files and on generated defects.

Accepted files must carry exactly the warnings an independent reading of the bytes finds
(quirk_scan, standard library only); refused files must name the problem.
"""
from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.samples import dumps_enriched, generate_conversation

from quirk_scan import expected_warning_codes, load, names, params, scan, targets

ENRICHED = names("enriched")
CORPUS = names("corpus")
LEGACY = names("legacy")


def _parse(path: Path, **kw):
    return parse_enriched(path.read_bytes(), source=str(path), **kw)


def _codes(problems) -> set[str]:
    return {p.code for p in problems}


# ---------------------------------------------------------------------------- real files accepted

@pytest.mark.parametrize("folder,name", params("enriched", lambda n: ("enriched", n))
                         + params("corpus", lambda n: ("corpus", n)))
def test_real_v4_file_is_accepted_with_exactly_the_warnings_it_deserves(shared_fixtures, folder, name):
    path = shared_fixtures / folder / name
    doc = load(path)
    parsed = _parse(path)

    assert parsed.ok, [e.line() for e in parsed.report.errors]
    assert parsed.report.errors == []
    assert _codes(parsed.report.warnings) == expected_warning_codes(doc)
    # the conversation id comes from dataset_name; corpus files are named after it
    uuid = doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_")
    assert parsed.report.conversation_id == uuid.lower()
    if folder == "corpus":
        assert parsed.report.conversation_id == Path(name).stem
    # the decoded pairs are the file's, untouched
    assert parsed.pairs == doc["training_pairs"]
    assert [orjson.dumps(p) for p in parsed.pairs] == [orjson.dumps(p) for p in doc["training_pairs"]]


@pytest.mark.parametrize("name", params("enriched") + params("corpus"))
def test_truncated_target_warning_names_every_truncated_pair(shared_fixtures, name):
    folder = "enriched" if name in ENRICHED else "corpus"
    path = shared_fixtures / folder / name
    truncated = scan(load(path))["truncated"]
    warning = [w for w in _parse(path).report.warnings if w.code == "truncated_target"]
    if not truncated:
        assert warning == []
        return
    assert len(warning) == 1
    assert warning[0].message.startswith(f"{len(truncated)} target response(s)")
    for pair_id in truncated:
        assert pair_id in warning[0].message


def test_readme_quirk_counts_hold_for_the_enriched_folder(shared_fixtures):
    """Cross-check of the independent scan against fixtures/README.md."""
    by_name = {n: _parse(shared_fixtures / "enriched" / n) for n in ENRICHED}
    warned = {code: {n for n, p in by_name.items() if code in _codes(p.report.warnings)}
              for code in ("truncated_target", "double_escaped_newline", "input_repeats_history",
                           "missing_scaffolding_keys", "history_without_role")}
    assert warned["truncated_target"] == {"service-david-shame-to-acceptance-grandparent-529.json",
                                          "service-marcus-shame-to-acceptance-grandparent-529.json"}
    assert warned["missing_scaffolding_keys"] == {n for n in ENRICHED if n.startswith("older-")}
    assert len(warned["missing_scaffolding_keys"]) == 4
    assert warned["input_repeats_history"] == set(ENRICHED)  # every file repeats the input in history
    assert warned["double_escaped_newline"] == {
        "service-david-shame-to-acceptance-grandparent-529.json",
        "service-david-shame-to-acceptance-hiding-financial-problems.json",
        "service-jennifer-shame-to-acceptance-grandparent-529.json",
        "service-jennifer-shame-to-acceptance-hiding-financial-problems.json",
        "service-marcus-shame-to-acceptance-grandparent-529.json",
        "service-marcus-shame-to-acceptance-hiding-financial-problems.json",
    }
    assert warned["history_without_role"] == set()
    # extra input_parameters is accepted (every service-* file has it) and kept in the raw dict
    for n in ENRICHED:
        assert ("input_parameters" in by_name[n].raw) == n.startswith("service-")


def test_readme_quirk_counts_hold_for_the_corpus(shared_fixtures):
    """README: 72 files, 212 targets in 447 pairs; 19 truncated targets in 9 files; double-escaped
    newlines in 24 files; the input repeats the last history item in 212/212 target pairs."""
    docs = {n: load(shared_fixtures / "corpus" / n) for n in CORPUS}
    assert len(docs) == 72
    assert sum(len(d["training_pairs"]) for d in docs.values()) == 447
    assert sum(len(targets(d)) for d in docs.values()) == 212
    scans = {n: scan(d) for n, d in docs.items()}
    assert sum(len(s["truncated"]) for s in scans.values()) == 19
    assert sum(1 for s in scans.values() if s["truncated"]) == 9
    assert sum(1 for s in scans.values() if s["double_escaped"]) == 24
    assert sum(len(s["repeats"]) for s in scans.values()) == 212

    reports = {n: _parse(shared_fixtures / "corpus" / n).report for n in CORPUS}
    assert sum(1 for r in reports.values() if "truncated_target" in _codes(r.warnings)) == 9
    assert sum(1 for r in reports.values() if "double_escaped_newline" in _codes(r.warnings)) == 24
    assert all("input_repeats_history" in _codes(r.warnings) for r in reports.values())
    assert not any(r.errors for r in reports.values())


def test_database_id_is_the_authority_and_a_mismatch_is_a_warning(shared_fixtures):
    path = shared_fixtures / "corpus" / CORPUS[0]
    other = "0e0e0e0e-1111-4222-8333-444444444444"
    parsed = _parse(path, conversation_id=other)
    assert parsed.ok
    assert parsed.report.conversation_id == other
    assert "dataset_name_mismatch" in _codes(parsed.report.warnings)
    same = _parse(path, conversation_id=Path(CORPUS[0]).stem.upper())
    assert "dataset_name_mismatch" not in _codes(same.report.warnings)


# ---------------------------------------------------------------------------- legacy files refused

@pytest.mark.parametrize("name", params("legacy"))
def test_every_legacy_file_is_refused_with_a_clear_error(shared_fixtures, name):
    path = shared_fixtures / "legacy" / name
    parsed = _parse(path)  # never raises
    assert not parsed.ok
    assert parsed.model is None
    assert parsed.pairs == []
    assert parsed.report.errors, "a refused file must say why"
    assert parsed.report.source == str(path)
    for e in parsed.report.errors:
        assert e.severity == "error"
        assert e.code in {"wrong_shape", "invalid_json"}
        assert e.message.strip()
        line = e.line(name)
        assert line.startswith(f"{name}: error: {e.code}") and "\n" not in line


def test_minimal_turns_file_is_wrong_shape_naming_what_is_missing(shared_fixtures):
    parsed = _parse(shared_fixtures / "legacy" / "minimal-conversation-metadata-turns.json")
    [error] = parsed.report.errors
    assert error.code == "wrong_shape"
    for key in ("dataset_metadata", "consultant_profile", "training_pairs"):
        assert key in error.message
    assert "turns" in error.message  # shows what the file has instead


def test_v3_seed_with_roleless_history_is_wrong_shape_at_the_broken_items(shared_fixtures):
    path = shared_fixtures / "legacy" / "seed-v3-convo-05-history-without-role.json"
    doc = load(path)
    broken = [f"training_pairs[{i}].conversation_history[{j}].content"
              for i, p in enumerate(doc["training_pairs"])
              for j, h in enumerate(p["conversation_history"]) if "content" not in h]
    assert len(broken) == 2  # README: 2 history items have no content
    parsed = _parse(path)
    assert _codes(parsed.report.errors) == {"wrong_shape"}
    assert sorted(e.field for e in parsed.report.errors) == sorted(broken)


def test_invalid_json_names_line_and_column(shared_fixtures):
    path = shared_fixtures / "legacy" / "seed-v3-convo-10-invalid-json.json"
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(path.read_bytes())
    parsed = _parse(path)
    [error] = parsed.report.errors
    assert error.code == "invalid_json"
    assert f"line {info.value.lineno}" in error.message and f"column {info.value.colno}" in error.message
    assert "line 420" in error.message and "column 52" in error.message


# ---------------------------------------------------------------------------- generated defects

@pytest.mark.parametrize("quirk,code", [
    ("truncated_backslash", "truncated_target"),
    ("double_escaped_newline", "double_escaped_newline"),
    ("history_without_role", "history_without_role"),
    ("input_repeats_history", "input_repeats_history"),
    ("missing_scaffolding_keys", "missing_scaffolding_keys"),
    ("low_quality", "low_quality"),
])
def test_generated_accepted_quirk_is_a_warning(quirk, code):
    doc = generate_conversation(f"quirk-{quirk}", quirks=[quirk], repeat_input_in_history=False)
    parsed = parse_enriched(dumps_enriched(doc), source="generated")
    assert parsed.ok, [e.line() for e in parsed.report.errors]
    assert _codes(parsed.report.warnings) == {code} == expected_warning_codes(doc)
    assert parsed.pairs == doc["training_pairs"]


def test_clean_generated_conversation_has_no_problem():
    doc = generate_conversation("clean", repeat_input_in_history=False)
    parsed = parse_enriched(dumps_enriched(doc), source="generated")
    assert parsed.ok
    assert parsed.report.errors == [] and parsed.report.warnings == []


def test_history_without_role_counts_every_roleless_item():
    doc = generate_conversation("roles", quirks=["history_without_role"], turns=6, repeat_input_in_history=False)
    for p in doc["training_pairs"]:
        for h in p["conversation_history"]:
            h.pop("role", None)
    n = sum(len(p["conversation_history"]) for p in doc["training_pairs"])
    [w] = [w for w in parse_enriched(orjson.dumps(doc), source="g").report.warnings if w.code == "history_without_role"]
    assert w.message.startswith(f"{n} history item")


@pytest.mark.parametrize("quirk,code", [
    ("non_sequential_turns", "non_sequential_turns"),
    ("no_trainable_pair", "no_trainable_pair"),
    ("wrong_shape", "wrong_shape"),
])
def test_generated_blocking_defect_is_refused(quirk, code):
    doc = generate_conversation(f"block-{quirk}", quirks=[quirk])
    parsed = parse_enriched(dumps_enriched(doc), source="generated")
    assert not parsed.ok
    assert code in _codes(parsed.report.errors)


@pytest.mark.parametrize("data,code", [
    (b"", "invalid_json"),
    (b"\xff\xfe not utf-8", "invalid_json"),
    (b'{"dataset_metadata": {', "invalid_json"),
    (b"[]", "wrong_shape"),
    (b'"a string"', "wrong_shape"),
    (b"null", "wrong_shape"),
])
def test_garbage_is_refused_not_raised(data, code):
    parsed = parse_enriched(data, source="garbage")
    assert not parsed.ok
    assert _codes(parsed.report.errors) == {code}


def _good() -> dict:
    return generate_conversation("mutations", turns=4, repeat_input_in_history=False)


def _mutate(fn) -> dict:
    doc = _good()
    fn(doc)
    return doc


@pytest.mark.parametrize("mutation,code,field", [
    (lambda d: d.__setitem__("training_pairs", []), "wrong_shape", "training_pairs"),
    (lambda d: d["training_pairs"][1].__setitem__("turn_number", "2"), "wrong_shape", "training_pairs[1].turn_number"),
    (lambda d: d["training_pairs"][0].pop("system_prompt"), "wrong_shape", "training_pairs[0].system_prompt"),
    (lambda d: d["training_pairs"][1]["training_metadata"].pop("quality_score"), "missing_quality_score",
     "training_pairs[1].training_metadata.quality_score"),
    (lambda d: d["dataset_metadata"].__setitem__("dataset_name", "conversation_5"), "no_conversation_id",
     "dataset_metadata.dataset_name"),
    (lambda d: d["training_pairs"].reverse(), "non_sequential_turns", "training_pairs"),
])
def test_blocking_defect_names_the_field(mutation, code, field):
    parsed = parse_enriched(orjson.dumps(_mutate(mutation)), source="mutated")
    assert not parsed.ok
    assert (code, field) in {(e.code, e.field) for e in parsed.report.errors}


def test_unknown_open_set_values_and_extra_keys_are_accepted():
    def widen(d):
        for p in d["training_pairs"]:
            p["conversation_metadata"]["emotional_arc_key"] = "crisis_to_referral"
            p["conversation_metadata"]["conversation_phase"] = "crisis_detection_and_referral"
            p["response_strategy"] = {"x": 1}
        d["input_parameters"]["something_new"] = True
    parsed = parse_enriched(orjson.dumps(_mutate(widen)), source="wide")
    assert parsed.ok and parsed.report.warnings == []
