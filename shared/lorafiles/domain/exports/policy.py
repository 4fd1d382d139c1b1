"""The per-file training policy and the export format names."""
from __future__ import annotations

import hashlib
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

EXPORT_FORMATS = ("openai", "trl", "axolotl", "sharegpt")
EXPORT_FILES = {
    "openai": "openai.jsonl",
    "trl": "trl.jsonl",
    "axolotl": "axolotl.jsonl",
    "sharegpt": "sharegpt.jsonl",
}
OverLength = Literal["drop_turn", "trim_history", "fail"]
ExactDuplicates = Literal["report", "exclude"]
# Dataset-quality settings (issue 12): they decide splits, exclusions and warnings of a version,
# not how a conversation renders, so they are not part of the render digest.
DATASET_FIELDS = ("validation_fraction", "split_seed", "exact_duplicates", "coverage_min_per_cell")


class TrainingPolicy(BaseModel):
    """How one training file's exports are built (stored with the file, declared in the manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_model: str = Field("mistral-7b-instruct-v0.2", min_length=1)
    max_length: int = Field(2048, ge=128, le=131072)
    over_length: OverLength = "drop_turn"
    min_quality: float | None = Field(None, ge=0, le=10)
    fix_literal_escapes: bool = True
    validation_fraction: float = Field(0.1, ge=0, lt=1)  # 0 turns splits off
    split_seed: str = Field("lorafiles", min_length=1, max_length=200)
    exact_duplicates: ExactDuplicates = "report"  # `exclude`: a later exact copy of a conversation leaves the splits
    coverage_min_per_cell: int | None = Field(None, ge=1)  # persona x arc x topic, warned when unmet

    def canonical_json(self) -> bytes:
        """Every rendering field (all but DATASET_FIELDS), sorted keys, no whitespace (floats as
        floats: `3` and `3.0` are the same policy)."""
        return orjson.dumps(self.model_dump(mode="json", exclude=set(DATASET_FIELDS)), option=orjson.OPT_SORT_KEYS)

    def digest(self) -> str:
        """sha256 hex of `canonical_json()`: equal policies have equal digests."""
        return hashlib.sha256(self.canonical_json()).hexdigest()
