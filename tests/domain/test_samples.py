"""Tests for the seeded synthetic enriched-conversation generator (lorafiles.domain.samples)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lorafiles.domain.samples import (
    QUIRKS, SCAFFOLDING_KEYS, conversation_uuid, dumps_enriched, generate_conversation,
    generate_conversations, write_sample_dir,
)

from shared_fixtures import REASON, ROOT as FIXTURES
REAL = FIXTURES / "enriched" / "service-david-fear-to-confidence-eldercare-costs.json"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _targets(doc):
    return [p["target_response"] for p in doc["training_pairs"] if p["target_response"] is not None]


# --- determinism -------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 42, "demo", "7:3"])
def test_same_seed_is_byte_identical(seed):
    assert dumps_enriched(generate_conversation(seed)) == dumps_enriched(generate_conversation(seed))


def test_same_seed_with_quirks_and_target_bytes_is_byte_identical():
    kw = {"quirks": ["truncated_backslash", "double_escaped_newline"], "target_bytes": 50_000}
    assert dumps_enriched(generate_conversation(5, **kw)) == dumps_enriched(generate_conversation(5, **kw))


def test_different_seeds_differ_and_stream_is_deterministic():
    a = [dumps_enriched(d) for d in generate_conversations(12, seed=3)]
    b = [dumps_enriched(d) for d in generate_conversations(12, seed=3)]
    c = [dumps_enriched(d) for d in generate_conversations(12, seed=4)]
    assert a == b
    assert len(set(a)) == 12 and set(a).isdisjoint(c)


def test_conversation_id_default_is_seeded_uuid_and_override_keeps_content():
    doc = generate_conversation(9)
    cid = doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_")
    assert UUID_RE.match(cid) and cid == conversation_uuid(9)
    other = generate_conversation(9, conversation_id="11111111-2222-4333-8444-555555555555")
    assert other["dataset_metadata"]["dataset_name"] == "fp_conversation_11111111-2222-4333-8444-555555555555"
    assert other["training_pairs"] == doc["training_pairs"]


# --- shape -------------------------------------------------------------------------------

def _kind(v):
    if isinstance(v, bool) or v is None:
        return type(v).__name__
    return "number" if isinstance(v, int | float) else type(v).__name__


def _shape(doc):
    """Key sets (and value kinds) at every level of an Individual JSON document."""
    pair = doc["training_pairs"][1]
    hist = pair["conversation_history"][0]
    cp = doc["consultant_profile"]
    return {
        "top": set(doc),
        "dataset_metadata": {(k, _kind(v)) for k, v in doc["dataset_metadata"].items()},
        "consultant_profile": {(k, _kind(v)) for k, v in cp.items()},
        "core_philosophy": set(cp["core_philosophy"]),
        "communication_style": {(k, _kind(v)) for k, v in cp["communication_style"].items()},
        "input_parameters": {(k, _kind(v)) for k, v in doc["input_parameters"].items()},
        "pair": {(k, _kind(v)) for k, v in pair.items()},
        "conversation_metadata": {(k, _kind(v)) for k, v in pair["conversation_metadata"].items()},
        "history_item": {(k, _kind(v)) for k, v in hist.items()},
        "emotional_state": {(k, _kind(v)) for k, v in hist["emotional_state"].items()},
        "emotional_context": set(pair["emotional_context"]),
        "detected_emotions": {(k, _kind(v)) for k, v in pair["emotional_context"]["detected_emotions"].items()},
        "training_metadata": {(k, _kind(v)) for k, v in pair["training_metadata"].items()},
        "quality_criteria": {(k, _kind(v)) for k, v in pair["training_metadata"]["quality_criteria"].items()},
        "pair_order": list(pair), "metadata_order": list(pair["conversation_metadata"]),
        "top_order": list(doc),
    }


@pytest.mark.skipif(not REAL.exists(), reason=REASON)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_shape_matches_real_service_file(seed):
    real = json.loads(REAL.read_bytes())
    ours = generate_conversation(seed)
    assert _shape(ours) == _shape(real)
    # user pairs (odd turns) have a null target in the real file as in ours
    for doc in (real, ours):
        assert doc["training_pairs"][0]["target_response"] is None


@pytest.mark.parametrize("seed", range(25))
def test_structure_like_service(seed):
    doc = generate_conversation(seed)
    meta, pairs = doc["dataset_metadata"], doc["training_pairs"]
    assert meta["total_turns"] == len(pairs) and 4 <= len(pairs) <= 10
    assert meta["version"] == "1.0.0" and meta["total_conversations"] == 1
    assert meta["quality_tier"] == "experimental"
    code = pairs[0]["conversation_id"]
    assert not UUID_RE.match(code)
    for i, p in enumerate(pairs, 1):
        assert p["turn_number"] == i and p["id"] == f"{code}_turn{i}" and p["conversation_id"] == code
        assert p["training_metadata"]["conversation_turn"] == i
        assert p["training_metadata"]["quality_score"] == 3
        assert len(p["conversation_history"]) == i - 1
        assert [h["turn"] for h in p["conversation_history"]] == list(range(1, i))
        assert [h["role"] for h in p["conversation_history"]] == ["user", "assistant"] * ((i - 1) // 2) + ["user"] * ((i - 1) % 2)
        assert (p["target_response"] is None) == (i % 2 == 1)
        if i % 2 == 0:  # the real service always repeats the input as the last history item
            assert p["current_user_input"] == p["conversation_history"][-1]["content"]
            assert p["target_response"] == pairs[i]["conversation_history"][i - 1]["content"] if i < len(pairs) else True
        emo = p["emotional_context"]["detected_emotions"]
        assert 0 <= emo["intensity"] <= 1 and emo["valence"] in {"negative", "positive", "mixed"}
        assert set(p["conversation_metadata"]) >= set(SCAFFOLDING_KEYS)
    assert pairs[0]["conversation_history"] == []
    text = dumps_enriched(doc).decode("utf-8")
    assert "→" in text and "—" in text
    for t in _targets(doc):
        assert "\\n" not in t and not t.rstrip().endswith("\\") and "\n\n" in t


def test_repeat_input_in_history_can_be_switched_off():
    doc = generate_conversation(4, repeat_input_in_history=False)
    for p in doc["training_pairs"]:
        if p["target_response"] is not None and p["conversation_history"]:
            assert p["current_user_input"] != p["conversation_history"][-1]["content"]
            assert len(p["conversation_history"]) == p["turn_number"] - 2
    quirked = generate_conversation(4, repeat_input_in_history=False, quirks=["input_repeats_history"])
    assert quirked == generate_conversation(4)


def test_parameters_turns_date_and_choices():
    doc = generate_conversation(1, turns=6, created_date="2025-12-02", persona="anxious_planner",
                                arc="couple_conflict_to_alignment", topic="grandparent_529")
    assert len(doc["training_pairs"]) == 6 and doc["dataset_metadata"]["created_date"] == "2025-12-02"
    m = doc["training_pairs"][0]["conversation_metadata"]
    assert m["persona_archetype"] == "anxious_planner" and m["client_persona"].startswith("Jennifer Martinez")
    assert m["emotional_arc"] == "Couple Conflict → Alignment" and m["training_topic_key"] == "grandparent_529"
    assert doc["training_pairs"][0]["conversation_id"] == "conflict_resolution"
    assert doc["input_parameters"]["persona_id"] == generate_conversation(2, persona="anxious_planner")["input_parameters"]["persona_id"]
    with pytest.raises(ValueError):
        generate_conversation(1, quirks=["no_such_quirk"])
    with pytest.raises(ValueError):
        generate_conversation(1, topic="bitcoin")


# --- serialisation ------------------------------------------------------------------------

def test_dumps_like_json_stringify():
    doc = generate_conversation(11)
    raw = dumps_enriched(doc)
    assert not raw.endswith(b"\n") and raw.startswith(b'{\n  "dataset_metadata": {\n    "dataset_name"')
    assert "→".encode() in raw and b"\\u2192" not in raw
    assert json.loads(raw) == doc
    assert raw == json.dumps(doc, indent=2, ensure_ascii=False).encode("utf-8")


def test_write_sample_dir(tmp_path):
    paths = write_sample_dir(tmp_path / "out", 5, seed=2)
    assert len(paths) == 5 and all(p.parent == tmp_path / "out" for p in paths)
    docs = list(generate_conversations(5, seed=2))
    for p, d in zip(paths, docs):
        assert p.name == d["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_") + ".json"
        assert p.read_bytes() == dumps_enriched(d)
    legacy = write_sample_dir(tmp_path / "legacy", 2, seed=2, quirks=["wrong_shape"])
    assert [p.stem for p in legacy] == [p.stem for p in paths[:2]]


# --- quirks -------------------------------------------------------------------------------

def test_quirk_truncated_backslash():
    doc = generate_conversation(3, quirks=["truncated_backslash"])
    cut = [t for t in _targets(doc) if t.rstrip().endswith("\\")]
    assert cut
    later = [h["content"] for p in doc["training_pairs"] for h in p["conversation_history"]]
    assert cut[0] in later or len(_targets(doc)) == 1  # history shows the same truncated text


def test_quirk_double_escaped_newline():
    doc = generate_conversation(3, quirks=["double_escaped_newline"])
    assert all("\\n" in t and "\n" not in t for t in _targets(doc))
    assert any("\\n" in h["content"] for p in doc["training_pairs"] for h in p["conversation_history"])


def test_quirk_history_without_role():
    doc = generate_conversation(3, quirks=["history_without_role"])
    items = [h for p in doc["training_pairs"] for h in p["conversation_history"]]
    assert any("role" not in h for h in items) and any("role" in h for h in items)


def test_quirk_missing_scaffolding_keys():
    doc = generate_conversation(3, quirks=["missing_scaffolding_keys"])
    assert "input_parameters" not in doc
    for p in doc["training_pairs"]:
        assert set(p["conversation_metadata"]) == {"client_persona", "client_background", "session_context",
                                                   "conversation_phase", "expected_outcome"}


def test_quirk_low_and_varied_quality_and_quality_parameter():
    low = generate_conversation(3, quirks=["low_quality"])
    scores = [p["training_metadata"]["quality_score"] for p in low["training_pairs"]]
    assert set(scores) == {2}
    crit = [v for p in low["training_pairs"] for v in p["training_metadata"]["quality_criteria"].values()]
    assert all(1.7 <= v <= 2.3 for v in crit)
    varied = {p["training_metadata"]["quality_score"] for s in range(30)
              for p in generate_conversation(s, quirks=["varied_quality"])["training_pairs"]}
    assert min(varied) >= 2.0 and max(varied) <= 5.0 and max(varied) - min(varied) > 1.5
    best = generate_conversation(3, quality=4.7)
    assert {p["training_metadata"]["quality_score"] for p in best["training_pairs"]} == {4.7}
    assert best["dataset_metadata"]["quality_tier"] == "seed_dataset"
    assert generate_conversation(3, quality=3.8)["dataset_metadata"]["quality_tier"] == "production"


def test_quirk_non_sequential_turns():
    doc = generate_conversation(3, quirks=["non_sequential_turns"])
    numbers = [p["turn_number"] for p in doc["training_pairs"]]
    assert numbers != list(range(1, len(numbers) + 1))


def test_quirk_no_trainable_pair():
    doc = generate_conversation(3, quirks=["no_trainable_pair"])
    assert _targets(doc) == [] and len(doc["training_pairs"]) >= 4


def test_quirk_wrong_shape():
    doc = generate_conversation(3, quirks=["wrong_shape"])
    assert set(doc) == {"conversation_metadata", "turns"}
    assert [t["role"] for t in doc["turns"][:2]] == ["user", "assistant"]
    assert set(doc["turns"][0]["emotional_context"]) == {"primary_emotion", "secondary_emotion", "intensity"}


def test_every_quirk_is_accepted_and_deterministic():
    for quirk in sorted(QUIRKS):
        assert dumps_enriched(generate_conversation(8, quirks=[quirk])) == dumps_enriched(
            generate_conversation(8, quirks=[quirk]))


# --- size ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [20_000, 50_000, 120_000, 400_000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_target_bytes_within_25_percent(target, seed):
    size = len(dumps_enriched(generate_conversation(seed, target_bytes=target)))
    assert 0.75 * target <= size <= 1.25 * target, size


def test_target_bytes_with_fixed_turns():
    doc = generate_conversation(5, turns=8, target_bytes=60_000)
    assert len(doc["training_pairs"]) == 8
    assert 45_000 <= len(dumps_enriched(doc)) <= 75_000
