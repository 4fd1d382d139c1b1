"""Rendering: the streamed Full JSON and the JSONL, checked against independent serialisations."""
from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.render import (FileHeader, MemberMeta, render_fragments, write_training_json,
                                     write_training_jsonl)
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.domain.summary import SummaryAccumulator, conversation_stats

from quirk_scan import names, scan, targets

JSONL_KEYS = ["id", "conversation_id", "turn_number", "conversation_metadata", "system_prompt",
              "conversation_history", "current_user_input", "emotional_context", "target_response",
              "training_metadata"]


@dataclass
class Rendered:
    json: bytes
    jsonl: bytes
    header: FileHeader
    metas: list[MemberMeta]
    inputs: list[dict]  # the decoded input files, read with the standard library


def render(blobs: list[tuple[str, bytes]], name: str = "Test file") -> Rendered:
    """Do what publishing does, in memory: parse, fragments, header, stream."""
    acc, metas, json_frags, jsonl_frags, profile = SummaryAccumulator(), [], [], [], None
    for i, (cid, blob) in enumerate(blobs):
        parsed = parse_enriched(blob, source=f"conversation-files/owner/{cid}/enriched.json", conversation_id=cid)
        assert parsed.ok, [e.line() for e in parsed.report.errors]
        sc = parsed.scaffolding()
        st = conversation_stats(parsed, sc)
        acc.add(st)
        meta = MemberMeta(conversation_id=cid, source_file=f"conversation-files/owner/{cid}/enriched.json",
                          created_date=parsed.dataset_metadata.get("created_date"),
                          batch_id=None if i % 2 else "7a310918-3ebd-445d-94e0-5a19c3998b2d",
                          total_turns=st.pairs, quality_tier=st.quality_tier, scaffolding=sc)
        metas.append(meta)
        j, jl = render_fragments(parsed, meta)
        json_frags.append(j)
        jsonl_frags.append(jl)
        profile = profile or parsed.consultant_profile
    header = FileHeader(file_name=name, file_version=1, created_date="2026-11-01T09:30:00Z",
                        last_updated="2026-11-01T09:30:00Z", target_model="llama-3.1-8b",
                        vertical="financial_planning_consultant", total_conversations=acc.conversations,
                        total_training_pairs=acc.training_pairs, total_turns=acc.pairs,
                        quality_summary=acc.quality_summary(), scaffolding_distribution=acc.scaffolding_distribution(),
                        consultant_profile=profile or {})
    out_json, out_jsonl = io.BytesIO(), io.BytesIO()
    write_training_json(out_json, header, iter(json_frags))
    write_training_jsonl(out_jsonl, name, acc.training_pairs, iter(jsonl_frags))
    return Rendered(out_json.getvalue(), out_jsonl.getvalue(), header, metas, [json.loads(b) for _, b in blobs])


def _tier(mean: float | None) -> str:
    """The v4 quality tiers, written out here (not lorafiles.domain.rules)."""
    if mean is None:
        return "rejected"
    return next(t for bound, t in ((4.5, "seed_dataset"), (3.5, "production"), (2.5, "experimental"),
                                   (float("-inf"), "rejected")) if mean >= bound)


def expected_quality_summary(docs: list[dict]) -> dict:
    """avg/min/max over trainable pairs and the reviewed share, from the decoded inputs alone."""
    pairs = [p for d in docs for p in targets(d)]
    scores = [float(p["training_metadata"]["quality_score"]) for p in pairs]
    reviewed = sum(1 for p in pairs if p["training_metadata"].get("human_reviewed") is True)
    return {"avg_quality_score": round(sum(scores) / len(scores), 2), "min_quality_score": min(scores),
            "max_quality_score": max(scores), "human_reviewed_count": reviewed,
            "human_reviewed_percentage": round(100.0 * reviewed / len(pairs), 1)}


def expected_document(r: Rendered) -> dict:
    """The v4 Full JSON document, built from the rendering's *inputs* (header fields, member facts,
    decoded files) with the key order of the format written out here, not with the code under test
    (FileHeader.training_file_metadata, MemberMeta.as_dict)."""
    h = r.header
    metadata = {
        "file_name": h.file_name, "version": "4.0.0", "file_version": h.file_version,
        "created_date": h.created_date, "last_updated": h.last_updated, "format_spec": "brightrun-lora-v4",
        "target_model": h.target_model, "vertical": h.vertical,
        "total_conversations": len(r.inputs),
        "total_training_pairs": sum(len(targets(d)) for d in r.inputs),
        "total_turns": sum(len(d["training_pairs"]) for d in r.inputs),
        "quality_summary": h.quality_summary, "scaffolding_distribution": h.scaffolding_distribution,
    }
    conversations = []
    for m, doc in zip(r.metas, r.inputs):
        scores = [float(p["training_metadata"]["quality_score"]) for p in targets(doc)]
        sc = m.scaffolding
        conversations.append({"conversation_metadata": {
            "conversation_id": m.conversation_id, "source_file": m.source_file,
            "created_date": doc["dataset_metadata"].get("created_date"), "batch_id": m.batch_id,
            "total_turns": len(doc["training_pairs"]), "quality_tier": _tier(sum(scores) / len(scores)),
            "scaffolding": {"persona_key": sc.persona_key, "persona_name": sc.persona_name,
                            "emotional_arc_key": sc.emotional_arc_key, "emotional_arc": sc.emotional_arc,
                            "training_topic_key": sc.training_topic_key, "training_topic": sc.training_topic},
        }, "training_pairs": doc["training_pairs"]})
    return {"training_file_metadata": metadata, "consultant_profile": h.consultant_profile,
            "conversations": conversations}


def test_the_header_figures_are_the_inputs_figures(rendered):
    # the header handed to the renderer (from SummaryAccumulator) agrees with a plain reading of the files
    assert rendered.header.quality_summary == expected_quality_summary(rendered.inputs)
    for key in ("personas", "emotional_arcs", "training_topics"):
        dist = rendered.header.scaffolding_distribution[key]
        assert list(dist) == sorted(dist) and sum(dist.values()) == len(rendered.inputs)


def uuid_of(doc: dict) -> str:
    return doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_")


def fixture_blobs(directory: Path, file_names: list[str]) -> list[tuple[str, bytes]]:
    blobs = [(directory / n).read_bytes() for n in file_names]
    return [(uuid_of(json.loads(b)), b) for b in blobs]


def generated_blobs(n: int = 5) -> list[tuple[str, bytes]]:
    quirks = [["truncated_backslash", "double_escaped_newline"], [], ["history_without_role"],
              ["missing_scaffolding_keys"], ["varied_quality"]]
    docs = [generate_conversation(f"render-{i}", quirks=quirks[i % len(quirks)]) for i in range(n)]
    return [(uuid_of(d), dumps_enriched(d)) for d in docs]


@pytest.fixture(scope="module")
def generated() -> Rendered:
    return render(generated_blobs())


@functools.lru_cache(maxsize=None)
def _render_enriched_folder(directory: Path) -> Rendered:
    return render(fixture_blobs(directory, names("enriched")))


@pytest.fixture
def real(shared_fixtures: Path) -> Rendered:
    """All 16 real enriched files in one file (rendered once per session)."""
    return _render_enriched_folder(shared_fixtures / "enriched")


@pytest.fixture(params=["generated", "real"])
def rendered(request) -> Rendered:
    return request.getfixturevalue(request.param)


# ---------------------------------------------------------------------------- Full JSON

def test_full_json_is_byte_identical_to_one_orjson_dump(rendered):
    assert rendered.json == orjson.dumps(expected_document(rendered), option=orjson.OPT_INDENT_2) + b"\n"


def test_full_json_is_plain_2_space_indented_json(rendered):
    # an independent formatter (the standard library) gives the same bytes
    doc = json.loads(rendered.json)
    assert rendered.json == json.dumps(doc, indent=2, ensure_ascii=False).encode() + b"\n"
    lines = rendered.json.decode().split("\n")
    assert lines[0] == "{" and lines[1] == '  "training_file_metadata": {' and lines[-2:] == ["}", ""]
    assert "\t" not in rendered.json.decode()
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        assert indent % 2 == 0


def test_full_json_counts_follow_the_formats(rendered):
    doc = json.loads(rendered.json)
    meta = doc["training_file_metadata"]
    assert meta["version"] == "4.0.0" and meta["format_spec"] == "brightrun-lora-v4"
    assert meta["total_conversations"] == len(doc["conversations"]) == len(rendered.inputs)
    assert meta["total_training_pairs"] == sum(len(targets(d)) for d in rendered.inputs)
    assert meta["total_turns"] == sum(len(d["training_pairs"]) for d in rendered.inputs)
    for key in ("personas", "emotional_arcs", "training_topics"):
        assert sum(meta["scaffolding_distribution"][key].values()) == len(rendered.inputs)


def test_full_json_pairs_are_the_input_pairs_unchanged(rendered):
    doc = json.loads(rendered.json)
    for conv, src, m in zip(doc["conversations"], rendered.inputs, rendered.metas):
        assert conv["training_pairs"] == src["training_pairs"]
        # also the same types and key order (3 stays 3, not 3.0)
        assert [orjson.dumps(p) for p in conv["training_pairs"]] == [orjson.dumps(p) for p in src["training_pairs"]]
        assert conv["conversation_metadata"]["conversation_id"] == m.conversation_id == uuid_of(src)
        assert list(conv["conversation_metadata"]) == ["conversation_id", "source_file", "created_date", "batch_id",
                                                       "total_turns", "quality_tier", "scaffolding"]
        assert conv["conversation_metadata"]["total_turns"] == len(src["training_pairs"])


def test_empty_file_streams_like_one_dump():
    r = render([])
    assert r.json == orjson.dumps(expected_document(r), option=orjson.OPT_INDENT_2) + b"\n"
    assert json.loads(r.json)["conversations"] == []
    assert r.jsonl.count(b"\n") == 1


# ---------------------------------------------------------------------------- JSONL

def jsonl_lines(r: Rendered) -> list[bytes]:
    assert r.jsonl.endswith(b"\n")
    return r.jsonl[:-1].split(b"\n")


def test_jsonl_has_one_compact_line_per_target_pair(rendered):
    lines = jsonl_lines(rendered)
    meta = json.loads(lines[0])
    n_targets = sum(len(targets(d)) for d in rendered.inputs)
    assert meta == {"_meta": {"file_name": "Test file", "total_pairs": n_targets, "version": "4.0.0"}}
    assert len(lines) - 1 == n_targets == meta["_meta"]["total_pairs"]
    assert meta["_meta"]["total_pairs"] == json.loads(rendered.json)["training_file_metadata"]["total_training_pairs"]
    for line in lines:
        # compact: exactly what a compact standard-library dump gives, no pretty printing
        assert line == json.dumps(json.loads(line), separators=(",", ":"), ensure_ascii=False).encode()


def test_jsonl_records_are_the_target_pairs_in_file_order(rendered):
    expected = []
    for doc in rendered.inputs:
        cid = uuid_of(doc)
        for p in targets(doc):
            expected.append({"id": f"{p['id']}_{cid[:8]}", "conversation_id": cid, "turn_number": p["turn_number"],
                             **{k: p[k] for k in JSONL_KEYS[3:]}})
    records = [json.loads(line) for line in jsonl_lines(rendered)[1:]]
    assert records == expected
    assert all(list(r) == JSONL_KEYS for r in records)
    assert all(r["target_response"] is not None for r in records)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids)


def test_same_template_pair_ids_stay_unique_across_conversations():
    docs = [generate_conversation(f"same-{i}", arc="confusion_to_clarity", turns=4) for i in range(3)]
    r = render([(uuid_of(d), dumps_enriched(d)) for d in docs])
    records = [json.loads(line) for line in jsonl_lines(r)[1:]]
    assert {rec["id"].rsplit("_", 1)[0] for rec in records} == {"educational_turn2", "educational_turn4"}
    assert len({rec["id"] for rec in records}) == 6


# ---------------------------------------------------------------------------- quirks survive

def test_real_quirks_survive_byte_for_byte(real):
    records = [json.loads(line) for line in jsonl_lines(real)[1:]]
    by_id = {r["id"]: r for r in records}
    full = json.loads(real.json)
    truncated_seen = escaped_seen = 0
    for doc, conv in zip(real.inputs, full["conversations"]):
        cid = uuid_of(doc)
        s = scan(doc)
        for pid in s["truncated"]:
            out = by_id[f"{pid}_{cid[:8]}"]["target_response"]
            src = next(p["target_response"] for p in doc["training_pairs"] if p["id"] == pid)
            assert out == src and out.rstrip().endswith("\\")
            truncated_seen += 1
        for p_in, p_out in zip(doc["training_pairs"], conv["training_pairs"]):
            for key in ("target_response", "current_user_input"):
                if isinstance(p_in[key], str) and "\\n" in p_in[key]:
                    assert p_out[key] == p_in[key]
                    assert orjson.dumps(p_out[key]) == orjson.dumps(p_in[key])
                    assert "\\\\n" in orjson.dumps(p_out[key]).decode()  # still an escaped backslash + n
                    escaped_seen += 1
    assert truncated_seen == 4   # README: 2 + 2 truncated targets in enriched/
    assert escaped_seen > 0


def test_generated_quirks_survive(generated):
    records = [json.loads(line) for line in jsonl_lines(generated)[1:]]
    first = generated.inputs[0]  # truncated_backslash + double_escaped_newline
    cid = uuid_of(first)
    mine = [r for r in records if r["conversation_id"] == cid]
    assert any(r["target_response"].endswith("\\") for r in mine)
    assert any("\\n" in r["target_response"] for r in mine)
    assert [r["target_response"] for r in mine] == [p["target_response"] for p in targets(first)]


# ---------------------------------------------------------------------------- determinism

def test_same_inputs_give_byte_identical_outputs():
    a, b = render(generated_blobs()), render(generated_blobs())
    assert a.json == b.json and a.jsonl == b.jsonl


def test_same_real_inputs_give_byte_identical_outputs(real, shared_fixtures):
    again = render(fixture_blobs(shared_fixtures / "enriched", names("enriched")))
    assert again.json == real.json and again.jsonl == real.jsonl


def _one_generated_member():
    """(conversation id, enriched bytes, parsed, its member metadata) of one generated conversation."""
    cid, blob = generated_blobs(1)[0]
    parsed = parse_enriched(blob, source="s", conversation_id=cid)
    sc = parsed.scaffolding()
    st = conversation_stats(parsed, sc)
    meta = MemberMeta(conversation_id=cid, source_file="s", created_date=None, batch_id=None, total_turns=st.pairs,
                      quality_tier=st.quality_tier, scaffolding=sc)
    return cid, blob, parsed, meta


def test_fragment_rendering_is_deterministic():
    cid, blob, parsed, meta = _one_generated_member()
    assert render_fragments(parsed, meta) == render_fragments(parse_enriched(blob, source="s", conversation_id=cid), meta)


# ---------------------------------------------------------------------------- JSONL ids (issue 9 item 11)

def test_jsonl_id_suffixes_keep_8_characters_unless_an_earlier_id_shares_them():
    from lorafiles.domain.render import jsonl_id_suffixes

    a, b, c = ("c0ffee00-1111-4111-8111-111111111111", "c0ffee00-2222-4222-8222-222222222222",
               "c0ffee00-2222-4333-8333-333333333333")
    other = "d0d0d0d0-4444-4444-8444-444444444444"
    assert jsonl_id_suffixes([a, other]) == {a: "c0ffee00", other: "d0d0d0d0"}
    assert jsonl_id_suffixes([a, b, other, c]) == {a: "c0ffee00", b: "c0ffee00-2", other: "d0d0d0d0",
                                                   c: "c0ffee00-2222-43"}
    # appending never changes an earlier suffix; the order decides who keeps the short form
    assert jsonl_id_suffixes([b, a]) == {b: "c0ffee00", a: "c0ffee00-1"}
    for n in range(1, 4):
        assert {k: v for k, v in jsonl_id_suffixes([a, b, c][:n]).items()} == \
            {k: v for k, v in jsonl_id_suffixes([a, b, c]).items() if k in [a, b, c][:n]}


def test_jsonl_id_suffixes_are_distinct_for_any_ids():
    import random

    from lorafiles.domain.render import jsonl_id_suffixes

    rng = random.Random(11)
    for _ in range(200):
        head = "".join(rng.choice("ab") for _ in range(8))
        ids = list(dict.fromkeys(head + "".join(rng.choice("ab-") for _ in range(rng.randint(0, 6)))
                                 for _ in range(rng.randint(2, 12))))
        ids += ["ab", "abab", head[:3]]  # shorter than 8, and prefixes of others
        suffixes = jsonl_id_suffixes(ids)
        assert len(set(suffixes.values())) == len(set(ids)), ids
        assert suffixes == jsonl_id_suffixes(ids)  # deterministic


@pytest.mark.parametrize("ids,suffixes", [
    # the first longer prefix that no earlier id of the prefix shares: 9 characters ...
    (["abcdefghX1", "abcdefghY2"], ["abcdefgh", "abcdefghY"]),
    # ... up to the whole id
    (["abcdefghiA", "abcdefghiB"], ["abcdefgh", "abcdefghiB"]),
    # a prefix ending in "-" is passed over, unless it is the whole id
    (["abcdefghX", "abcdefgh-Y"], ["abcdefgh", "abcdefgh-Y"]),
    (["abcdefghX", "abcdefgh-"], ["abcdefgh", "abcdefgh-"]),
    # an id that is a prefix of an earlier one: "~2", or the next number nobody uses
    (["abcdefghiZ", "abcdefghi"], ["abcdefgh", "abcdefghi~2"]),
    (["abcdefghiZ", "abcdefghi~Q", "abcdefghi~2", "abcdefghi"], ["abcdefgh", "abcdefghi~", "abcdefghi~2", "abcdefghi~3"]),
    (["abcdefghiZ", "abcdefghi~Q", "abcdefghi~2", "abcdefghi~3", "abcdefghi"],
     ["abcdefgh", "abcdefghi~", "abcdefghi~2", "abcdefghi~3", "abcdefghi~4"]),
    # ids shorter than 8 characters are their own suffix
    (["abc", "abcdefghij", "ab"], ["abc", "abcdefgh", "ab"]),
])
def test_jsonl_id_suffixes_follow_the_documented_rule_exactly(ids, suffixes):
    from lorafiles.domain.render import jsonl_id_suffixes

    assert jsonl_id_suffixes(ids) == dict(zip(ids, suffixes))


def test_a_repeated_conversation_id_keeps_its_first_suffix_and_the_rest_still_get_theirs():
    from lorafiles.domain.render import jsonl_id_suffixes

    a, b = "c0ffee00-1111-4111-8111-111111111111", "c0ffee00-2222-4222-8222-222222222222"
    assert jsonl_id_suffixes([a, a, b, a, b]) == jsonl_id_suffixes([a, b]) == {a: "c0ffee00", b: "c0ffee00-2"}


def test_render_fragments_use_the_given_id_suffix():
    from lorafiles.domain.render import jsonl_records

    cid, blob, parsed, meta = _one_generated_member()
    pair_ids = [p["id"] for p in targets(json.loads(blob))]
    _, default = render_fragments(parsed, meta)
    _, longer = render_fragments(parsed, meta, id_suffix=cid[:10])
    assert [json.loads(line)["id"] for line in default.splitlines()] == [f"{p}_{cid[:8]}" for p in pair_ids]
    assert [json.loads(line)["id"] for line in longer.splitlines()] == [f"{p}_{cid[:10]}" for p in pair_ids]
    assert [r["id"] for r in jsonl_records(parsed, cid, "zz")] == [f"{p}_zz" for p in pair_ids]
    assert [r["id"] for r in jsonl_records(parsed, cid)] == [f"{p}_{cid[:8]}" for p in pair_ids]
