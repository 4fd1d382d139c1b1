"""Per-conversation statistics and the ONE formula for a file's figures.

Quality figures are computed over *trainable* pairs (pairs with a non-null target_response,
i.e. the JSONL lines): avg/min/max of `training_metadata.quality_score`, and the count and
percentage of those pairs marked `human_reviewed`. The database row and the JSON both use
`SummaryAccumulator`, so they cannot disagree.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from .enriched import ParsedConversation, Scaffolding
from .rules import quality_tier

UNKNOWN = "unknown"


@dataclass(frozen=True)
class ConversationStats:
    pairs: int
    training_pairs: int
    quality_sum: float
    quality_count: int
    quality_min: float | None
    quality_max: float | None
    human_reviewed: int
    quality_tier: str
    persona_key: str | None = None
    persona_name: str | None = None
    emotional_arc_key: str | None = None
    emotional_arc: str | None = None
    training_topic_key: str | None = None
    training_topic: str | None = None

    @property
    def quality_score(self) -> float | None:
        return self.quality_sum / self.quality_count if self.quality_count else None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ConversationStats":
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


def conversation_stats(parsed: ParsedConversation, scaffolding: Scaffolding) -> ConversationStats:
    targets = [p for p in parsed.pairs if p.get("target_response") is not None]
    scores = [float(p["training_metadata"]["quality_score"]) for p in targets]
    mean = sum(scores) / len(scores) if scores else None
    return ConversationStats(
        pairs=len(parsed.pairs),
        training_pairs=len(targets),
        quality_sum=sum(scores),
        quality_count=len(scores),
        quality_min=min(scores) if scores else None,
        quality_max=max(scores) if scores else None,
        human_reviewed=sum(1 for p in targets if p["training_metadata"].get("human_reviewed") is True),
        quality_tier=quality_tier(mean),
        **scaffolding.__dict__,
    )


class SummaryAccumulator:
    """Folds conversation stats one at a time (constant memory in the number of conversations)."""

    def __init__(self) -> None:
        self.conversations = 0
        self.pairs = 0
        self.training_pairs = 0
        self._sum = 0.0
        self._count = 0
        self._min: float | None = None
        self._max: float | None = None
        self._reviewed = 0
        self._personas: Counter[str] = Counter()
        self._arcs: Counter[str] = Counter()
        self._topics: Counter[str] = Counter()

    def add(self, s: ConversationStats) -> None:
        self.conversations += 1
        self.pairs += s.pairs
        self.training_pairs += s.training_pairs
        self._sum += s.quality_sum
        self._count += s.quality_count
        if s.quality_min is not None:
            self._min = s.quality_min if self._min is None else min(self._min, s.quality_min)
        if s.quality_max is not None:
            self._max = s.quality_max if self._max is None else max(self._max, s.quality_max)
        self._reviewed += s.human_reviewed
        self._personas[s.persona_key or UNKNOWN] += 1
        self._arcs[s.emotional_arc_key or UNKNOWN] += 1
        self._topics[s.training_topic_key or UNKNOWN] += 1

    def extend(self, stats: Iterable[ConversationStats]) -> "SummaryAccumulator":
        for s in stats:
            self.add(s)
        return self

    def quality_summary(self) -> dict[str, Any]:
        return {
            "avg_quality_score": round(self._sum / self._count, 2) if self._count else None,
            "min_quality_score": self._min,
            "max_quality_score": self._max,
            "human_reviewed_count": self._reviewed,
            "human_reviewed_percentage": round(100.0 * self._reviewed / self.training_pairs, 1)
            if self.training_pairs else 0.0,
        }

    def scaffolding_distribution(self) -> dict[str, dict[str, int]]:
        return {
            "personas": dict(sorted(self._personas.items())),
            "emotional_arcs": dict(sorted(self._arcs.items())),
            "training_topics": dict(sorted(self._topics.items())),
        }
