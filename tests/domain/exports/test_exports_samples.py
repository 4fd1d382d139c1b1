"""Invariants on every line of exports built from generated conversations (samples.py)."""
import itertools

import orjson
import pytest
from exports_helpers import FakeModel
from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.exports import (
    EXPORT_FORMATS,
    TrainingPolicy,
    build_member_exports,
    view_of,
)
from lorafiles.domain.exports.checks import openai_format_errors
from lorafiles.domain.samples import dumps_enriched, generate_conversation

QUIRK_SETS = [(), ("truncated_backslash",), ("double_escaped_newline",), ("history_without_role",),
              ("varied_quality",), ("truncated_backslash", "double_escaped_newline", "history_without_role",
                                    "missing_scaffolding_keys", "varied_quality")]
POLICIES = [TrainingPolicy(max_length=limit, over_length=mode, min_quality=q)
            for limit, mode, q in itertools.product((256, 700, 2048), ("drop_turn", "trim_history"), (None, 3.0))]
CASES = [(seed, quirks, repeat) for seed in range(4) for quirks in QUIRK_SETS for repeat in (True, False)]


def check_line(fmt, line, limit, counts):
    messages, trained = view_of(fmt, line)
    assert messages[0]["role"] == "system" and messages[1]["role"] == "user"
    body = messages[1:]
    assert [m["role"] for m in body] == ["user", "assistant"] * (len(body) // 2) and len(body) % 2 == 0
    assert trained[-1] and body[-1]["role"] == "assistant"
    assert all(not t or m["role"] == "assistant" for m, t in zip(messages, trained))
    assert all(m["content"].strip() for m in messages)
    total, trainable = counts
    assert total <= limit and trainable > 0
    if fmt == "openai":
        assert openai_format_errors(line) == {}
        assert all(("weight" in m) == (m["role"] == "assistant") and m.get("weight", 0) in (0, 1)
                   for m in line["messages"])
    elif fmt == "trl":
        assert line["prompt"][-1]["role"] == "user"
        assert [m["role"] for m in line["completion"]] == ["assistant"]
    elif fmt == "axolotl":
        assert all(isinstance(m["train"], bool) for m in line["messages"])
    else:
        assert [c["from"] for c in line["conversations"]] == ["human", "gpt"] * (len(line["conversations"]) // 2)
        assert all(trained[1:][i] for i, m in enumerate(body) if m["role"] == "assistant")


@pytest.mark.parametrize("seed, quirks, repeat", CASES)
def test_invariants_on_every_line(seed, quirks, repeat):
    doc = generate_conversation(f"exports:{seed}", quirks=quirks, repeat_input_in_history=repeat)
    parsed = parse_enriched(dumps_enriched(doc), source="sample")
    assert parsed.ok, parsed.report.errors
    model = FakeModel()
    for policy in POLICIES:
        r = build_member_exports("c", parsed.pairs, policy, model)
        assert r.ok, (policy, r.errors)
        for fmt in EXPORT_FORMATS:
            lines = [orjson.loads(x) for x in r.lines[fmt].splitlines()]
            assert len(lines) == r.stats["lines"][fmt] == len(r.stats["tokens"][fmt])
            for line, counts in zip(lines, r.stats["tokens"][fmt]):
                check_line(fmt, line, policy.max_length, counts)
        # every trainable pair is either trained (one TRL line each) or listed as excluded
        assert r.stats["lines"]["trl"] == r.stats["trained_turns"]
        assert r.stats["trained_turns"] + len(r.stats["exclusions"]) == r.stats["trainable_pairs"]
        assert r.stats["lines"]["openai"] == r.stats["lines"]["axolotl"]
        if "double_escaped_newline" in quirks:
            assert b"\\\\n" not in r.lines["openai"] and r.stats["changes"]["literal_escapes_fixed"] > 0
        if "history_without_role" in quirks:
            assert r.stats["changes"]["role_inferred"] >= 1
        if repeat:
            assert r.stats["changes"]["repeated_user_input_removed"] == r.stats["trainable_pairs"]
        truncated = sum(1 for p in parsed.pairs if (p["target_response"] or "").rstrip().endswith("\\"))
        assert sum(e["reason"] == "truncated_target" for e in r.stats["exclusions"]) == truncated
        if policy.over_length == "drop_turn":
            assert r.stats["lines"]["openai"] <= 1
