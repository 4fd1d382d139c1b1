"""The ONE quality formula: avg/min/max over trainable pairs, human_reviewed percentage."""
from __future__ import annotations

import itertools

import orjson
import pytest

from lorafiles.domain.enriched import Scaffolding, parse_enriched
from lorafiles.domain.samples import generate_conversation
from lorafiles.domain.summary import ConversationStats, SummaryAccumulator, conversation_stats


def stats(scores, reviewed=0, pairs=None, persona="anxious_planner", arc="shame_to_acceptance",
          topic="grandparent_529") -> ConversationStats:
    return ConversationStats(
        pairs=pairs if pairs is not None else 2 * len(scores), training_pairs=len(scores),
        quality_sum=float(sum(scores)), quality_count=len(scores),
        quality_min=min(scores) if scores else None, quality_max=max(scores) if scores else None,
        human_reviewed=reviewed, quality_tier="experimental",
        persona_key=persona, emotional_arc_key=arc, training_topic_key=topic)


A = stats([3, 4, 5], reviewed=1)                 # mean 4.0 over 3 pairs
B = stats([2, 2.5], reviewed=1, persona=None)    # mean 2.25 over 2 pairs
C = stats([4.25], reviewed=0, pairs=3, arc=None, topic=None)


def test_summary_is_over_pairs_not_a_mean_of_conversation_means():
    acc = SummaryAccumulator().extend([A, B, C])
    # pairs: 3, 4, 5, 2, 2.5, 4.25 -> 20.75 / 6 = 3.4583 (the mean of the means would be 3.5)
    assert acc.quality_summary() == {
        "avg_quality_score": 3.46,
        "min_quality_score": 2,
        "max_quality_score": 5,
        "human_reviewed_count": 2,
        "human_reviewed_percentage": 33.3,  # 2 of 6 trainable pairs
    }
    assert (acc.conversations, acc.training_pairs, acc.pairs) == (3, 6, 6 + 4 + 3)


@pytest.mark.parametrize("order", list(itertools.permutations([A, B, C])))
def test_summary_does_not_depend_on_order(order):
    assert SummaryAccumulator().extend(order).quality_summary() == SummaryAccumulator().extend([A, B, C]).quality_summary()


def test_percentage_rounds_to_one_decimal_and_all_reviewed_is_100():
    assert SummaryAccumulator().extend([stats([3] * 3, reviewed=2)]).quality_summary()["human_reviewed_percentage"] == 66.7
    assert SummaryAccumulator().extend([stats([3] * 7, reviewed=7)]).quality_summary()["human_reviewed_percentage"] == 100.0


def test_empty_summary():
    assert SummaryAccumulator().quality_summary() == {
        "avg_quality_score": None, "min_quality_score": None, "max_quality_score": None,
        "human_reviewed_count": 0, "human_reviewed_percentage": 0.0}


def test_scaffolding_distribution_counts_conversations_with_unknown_for_missing_keys():
    acc = SummaryAccumulator().extend([A, B, C, stats([3], persona="pragmatic_optimist")])
    assert acc.scaffolding_distribution() == {
        "personas": {"anxious_planner": 2, "pragmatic_optimist": 1, "unknown": 1},
        "emotional_arcs": {"shame_to_acceptance": 3, "unknown": 1},
        "training_topics": {"grandparent_529": 3, "unknown": 1},
    }
    for counts in acc.scaffolding_distribution().values():
        assert list(counts) == sorted(counts)
        assert sum(counts.values()) == acc.conversations


def test_stats_round_trip_through_a_row():
    assert ConversationStats.from_row({**A.as_dict(), "extra": "ignored"}) == A


def test_conversation_stats_count_only_trainable_pairs():
    doc = generate_conversation("summary", turns=6, repeat_input_in_history=False)
    scores = iter([4.0, 5.0, 2.0])
    for p in doc["training_pairs"]:
        if p["target_response"] is None:   # user turns: must not count
            p["training_metadata"]["quality_score"] = 1
            p["training_metadata"]["human_reviewed"] = True
        else:
            p["training_metadata"]["quality_score"] = next(scores)
    doc["training_pairs"][1]["training_metadata"]["human_reviewed"] = True
    parsed = parse_enriched(orjson.dumps(doc), source="g")
    assert parsed.ok
    s = conversation_stats(parsed, Scaffolding(persona_key="p"))
    assert (s.pairs, s.training_pairs) == (6, 3)
    assert (s.quality_sum, s.quality_count, s.quality_min, s.quality_max) == (11.0, 3, 2.0, 5.0)
    assert s.human_reviewed == 1
    assert s.quality_score == pytest.approx(11 / 3)
    assert s.quality_tier == "production"
    assert s.persona_key == "p"
    summary = SummaryAccumulator().extend([s]).quality_summary()
    assert summary == {"avg_quality_score": 3.67, "min_quality_score": 2.0, "max_quality_score": 5.0,
                       "human_reviewed_count": 1, "human_reviewed_percentage": 33.3}


def test_a_conversation_without_a_trainable_pair_has_no_quality_and_is_rejected():
    # (parse_enriched refuses such a file, but its stats stay well defined: nothing to average)
    doc = generate_conversation("no-targets", turns=4)
    for p in doc["training_pairs"]:
        p["target_response"] = None
    parsed = parse_enriched(orjson.dumps(doc), source="g")
    assert [e.code for e in parsed.report.errors] == ["no_trainable_pair"] and len(parsed.pairs) == 4
    s = conversation_stats(parsed, Scaffolding())
    assert (s.pairs, s.training_pairs, s.quality_sum, s.quality_count) == (4, 0, 0, 0)
    assert (s.quality_min, s.quality_max, s.quality_score, s.human_reviewed) == (None, None, None, 0)
    assert s.quality_tier == "rejected"
    acc = SummaryAccumulator().extend([s, stats([4.0])])
    assert acc.quality_summary()["min_quality_score"] == acc.quality_summary()["max_quality_score"] == 4.0
