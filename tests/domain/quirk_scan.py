"""Helpers shared by the domain tests: the real fixture files and an independent quirk scan.

The quirk scan reads the decoded JSON with the standard library only (no lorafiles code), so the
parser's warnings are checked against a second, independent reading of the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shared_fixtures import ROOT as FIXTURES
SCAFFOLDING_KEYS = ("persona_archetype", "emotional_arc", "emotional_arc_key", "training_topic", "training_topic_key")


from shared_fixtures import names, params  # noqa: E402,F401  (file names of one fixture folder)


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["training_pairs"] if p["target_response"] is not None]


def texts(doc: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for p in doc["training_pairs"]:
        out += [p["target_response"], p["current_user_input"]]
        out += [h.get("content") for h in p["conversation_history"]]
    return [t for t in out if isinstance(t, str)]


def scan(doc: dict[str, Any]) -> dict[str, Any]:
    """What a careful reader finds in a v4 file, computed without lorafiles."""
    tgt = targets(doc)
    scores = [p["training_metadata"]["quality_score"] for p in tgt]
    return {
        "truncated": [p["id"] for p in tgt if p["target_response"].rstrip().endswith("\\")],
        "double_escaped": sum(1 for t in texts(doc) if "\\n" in t),
        "roleless": sum(1 for p in doc["training_pairs"] for h in p["conversation_history"] if not h.get("role")),
        "repeats": [p["id"] for p in tgt
                    if p["conversation_history"] and p["current_user_input"] == p["conversation_history"][-1]["content"]],
        "lacking_scaffolding": sum(1 for p in doc["training_pairs"]
                                   if any(not p["conversation_metadata"].get(k) for k in SCAFFOLDING_KEYS)),
        "low_quality": bool(scores) and sum(scores) / len(scores) < 2.5,
    }


def expected_warning_codes(doc: dict[str, Any]) -> set[str]:
    s = scan(doc)
    codes = set()
    if s["truncated"]:
        codes.add("truncated_target")
    if s["double_escaped"]:
        codes.add("double_escaped_newline")
    if s["roleless"]:
        codes.add("history_without_role")
    if s["repeats"]:
        codes.add("input_repeats_history")
    if s["lacking_scaffolding"]:
        codes.add("missing_scaffolding_keys")
    if s["low_quality"]:
        codes.add("low_quality")
    return codes


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_bytes())
