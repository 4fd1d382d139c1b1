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


class TrainingPolicy(BaseModel):
    """How one training file's exports are built (stored with the file, declared in the manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    target_model: str = Field("mistral-7b-instruct-v0.2", min_length=1)
    max_length: int = Field(2048, ge=128, le=131072)
    over_length: OverLength = "drop_turn"
    min_quality: float | None = Field(None, ge=0, le=10)
    fix_literal_escapes: bool = True

    def canonical_json(self) -> bytes:
        """All fields, sorted keys, no whitespace (floats as floats: `3` and `3.0` are the same policy)."""
        return orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)

    def digest(self) -> str:
        """sha256 hex of `canonical_json()`: equal policies have equal digests."""
        return hashlib.sha256(self.canonical_json()).hexdigest()
