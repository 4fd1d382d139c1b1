"""Dataset quality of a version (issue 12), pure domain code: splits by conversation (`splits`),
duplicates and leakage (`duplicates`), coverage (`coverage`), the dataset card (`card`) and the
diff of two versions (`diff`). `DatasetQuality` folds the members in file order, one at a time.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from .coverage import CoverageCounter
from .duplicates import DuplicateFinder
from .splits import SPLITS, TRAIN, VALIDATION, SplitAssigner, split_hash, stratum_of

EXCLUSION_REASONS = ("exact_duplicate_conversation",)
DATASET_POLICY_FIELDS = ("validation_fraction", "split_seed", "exact_duplicates", "coverage_min_per_cell")

__all__ = ["DATASET_POLICY_FIELDS", "EXCLUSION_REASONS", "SPLITS", "TRAIN", "VALIDATION", "DatasetQuality",
           "SplitAssigner", "split_hash", "stratum_of"]


def conversation_text(records: list[Mapping[str, Any]]) -> str:
    """The whole conversation as its last trainable pair holds it (history, input, target)."""
    if not records:
        return ""
    last = records[-1]
    parts = [str(h.get("content") or "") for h in (last.get("conversation_history") or []) if isinstance(h, Mapping)]
    cui = str(last.get("current_user_input") or "")
    if not parts or parts[-1] != cui:
        parts.append(cui)
    parts.append(str(last.get("target_response") or ""))
    return "\n".join(parts)


def _score(record: Mapping[str, Any]) -> float | None:
    meta = record.get("training_metadata")
    value = meta.get("quality_score") if isinstance(meta, Mapping) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class DatasetQuality:
    """Feed every member in file order with `add`; `result()` gives the version's dataset section."""

    def __init__(self, *, validation_fraction: float, split_seed: str, exact_duplicates: str = "report",
                 coverage_min_per_cell: int | None = None) -> None:
        if exact_duplicates not in ("report", "exclude"):
            raise ValueError(f"exact_duplicates must be report or exclude, not {exact_duplicates!r}")
        self.policy = {"validation_fraction": validation_fraction, "split_seed": split_seed,
                       "exact_duplicates": exact_duplicates, "coverage_min_per_cell": coverage_min_per_cell}
        self.splits = SplitAssigner(validation_fraction, split_seed)
        self.duplicates = DuplicateFinder()
        self.coverage = CoverageCounter(coverage_min_per_cell)
        self.excluded: list[dict[str, Any]] = []

    def add(self, conversation_id: str, *, persona: str | None, arc: str | None, topic: str | None,
            records: list[Mapping[str, Any]], example_tokens: Iterable[int]) -> tuple[str, str | None]:
        """(split, exclusion reason or None) of one member. `records` are its v4 JSONL records."""
        split = self.splits.assign(conversation_id, stratum_of(arc, topic))
        text = conversation_text(records)
        reason = None
        if self.policy["exact_duplicates"] == "exclude":
            first = self.duplicates.first_copy_of(text)
            if first is not None:
                reason = "exact_duplicate_conversation"
                self.excluded.append({"conversation_id": conversation_id, "split": split, "reason": reason,
                                      "copy_of": first})
        self.duplicates.add(conversation_id, split,
                            [(int(r.get("turn_number") or 0), str(r.get("target_response") or "")) for r in records],
                            text)
        self.coverage.add(split, persona, arc, topic, [(int(r.get("turn_number") or 0), _score(r)) for r in records],
                          example_tokens)
        return split, reason

    def result(self) -> dict[str, Any]:
        by_reason = {r: sum(e["reason"] == r for e in self.excluded) for r in EXCLUSION_REASONS}
        coverage = self.coverage.result()
        duplicates = self.duplicates.result()
        warnings = list(coverage["warnings"])
        if duplicates["leakage"]["count"]:
            warnings.append({"code": "split_leakage", "count": duplicates["leakage"]["count"],
                             "message": f"{duplicates['leakage']['count']} duplicate(s) cross the train/validation "
                                        "split (listed under duplicates.leakage)"})
        for note in self.splits.result()["fallbacks"]:
            warnings.append({"code": "split_fallback", "message": note})
        return {"policy": self.policy, "splits": self.splits.result(), "duplicates": duplicates,
                "coverage": coverage, "exclusions": {"by_reason": by_reason, "listed": self.excluded},
                "warnings": warnings}
