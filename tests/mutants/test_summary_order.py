"""The scaffolding distribution is part of the file's bytes (Full JSON header, database row): its
keys must come out sorted whatever order the members were added in, so the same members always
give the same bytes."""
from __future__ import annotations

import orjson

from lorafiles.domain.summary import ConversationStats, SummaryAccumulator


def member(persona: str | None, arc: str | None, topic: str | None) -> ConversationStats:
    return ConversationStats(pairs=2, training_pairs=1, quality_sum=3.0, quality_count=1, quality_min=3.0,
                             quality_max=3.0, human_reviewed=0, quality_tier="experimental",
                             persona_key=persona, emotional_arc_key=arc, training_topic_key=topic)


MEMBERS = [member("zeta_saver", "shame_to_acceptance", "retirement_catch_up"),
           member("anxious_planner", None, "eldercare_costs"),
           member("mid_career", "fear_to_confidence", None),
           member("anxious_planner", "anger_to_trust", "college_529")]


def test_every_distribution_is_sorted_by_key_with_unknown_in_its_place():
    dist = SummaryAccumulator().extend(reversed(MEMBERS)).scaffolding_distribution()
    assert list(dist) == ["personas", "emotional_arcs", "training_topics"]
    assert list(dist["personas"]) == ["anxious_planner", "mid_career", "zeta_saver"]
    assert list(dist["emotional_arcs"]) == ["anger_to_trust", "fear_to_confidence", "shame_to_acceptance", "unknown"]
    assert list(dist["training_topics"]) == ["college_529", "eldercare_costs", "retirement_catch_up", "unknown"]
    assert dist["personas"] == {"anxious_planner": 2, "mid_career": 1, "zeta_saver": 1}


def test_the_same_members_in_any_order_give_the_same_bytes():
    a = SummaryAccumulator().extend(MEMBERS).scaffolding_distribution()
    b = SummaryAccumulator().extend(reversed(MEMBERS)).scaffolding_distribution()
    assert orjson.dumps(a) == orjson.dumps(b)
