"""The dataset-quality part of publishing a version (issue 12), hooked into `publish.VersionWriter`:
assigns each member its split as it streams past, writes every export once per split, folds the
duplicates and coverage, and at the end gives the report's `dataset_quality`, the manifest's
`dataset` section and the dataset card (`README.md`). The rules live in `lorafiles.domain.quality`."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

import orjson

from ..domain import bundle
from ..domain.exports import EXPORT_FORMATS, TrainingPolicy
from ..domain.quality import SPLITS, DatasetQuality
from ..domain.quality.card import render_card
from .common import ARTIFACTS, SPLIT_ARTIFACTS


class DatasetFiles:
    def __init__(self, folder: Path, policy: TrainingPolicy, open_out: Callable[[Path], Any]) -> None:
        self.policy = policy
        self.quality = DatasetQuality(validation_fraction=policy.validation_fraction, split_seed=policy.split_seed,
                                      exact_duplicates=policy.exact_duplicates,
                                      coverage_min_per_cell=policy.coverage_min_per_cell)
        self.names = [SPLIT_ARTIFACTS[fmt][s] for fmt in EXPORT_FORMATS for s in SPLITS]
        self.outs = {name: open_out(folder / ARTIFACTS[name][0]) for name in self.names}
        self.expected = {name: 0 for name in self.names}
        self.tokens = {fmt: {s: 0 for s in SPLITS} for fmt in EXPORT_FORMATS}

    def add(self, entry: Mapping[str, Any], jsonl_lines: bytes, exports: bytes) -> dict[str, Any]:
        """Place one member; {split, excluded} for its manifest entry."""
        records = [orjson.loads(line) for line in jsonl_lines.splitlines() if line.strip()]
        stats = entry["export_stats"]
        split, reason = self.quality.add(
            entry["conversation_id"], persona=entry.get("persona_key"), arc=entry.get("emotional_arc_key"),
            topic=entry.get("training_topic_key"), records=records,
            example_tokens=[total for total, _ in stats["tokens"]["openai"]])
        if reason is None:
            for fmt in EXPORT_FORMATS:
                name = SPLIT_ARTIFACTS[fmt][split]
                self.outs[name].write(bundle.section(exports, entry["exports_layout"], fmt))
                self.expected[name] += len(stats["tokens"][fmt])
                self.tokens[fmt][split] += sum(trainable for _, trainable in stats["tokens"][fmt])
        return {"split": split, **({"excluded": reason} if reason else {})}

    def close(self) -> dict[str, Any]:
        """Close the split files (their lines checked against the members' statistics); the dataset section."""
        for name, out in self.outs.items():
            out.close()
            if out.lines != self.expected[name]:
                raise RuntimeError(f"{name} has {out.lines} lines, its members' statistics {self.expected[name]}")
        self.result = self.quality.result()
        return self.result

    def manifest_section(self, artifacts: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        r = self.result
        return {"policy": r["policy"],
                "splits": {"conversations": r["splits"]["conversations"], "method": r["splits"]["method"],
                           "seed": r["splits"]["seed"], "validation_fraction": r["splits"]["validation_fraction"],
                           "largest_stratum_count_deviation": r["splits"]["largest_stratum_count_deviation"],
                           "largest_stratum_share_deviation": r["splits"]["largest_stratum_share_deviation"],
                           "fallbacks": r["splits"]["fallbacks"],
                           "lines": {fmt: {s: artifacts[SPLIT_ARTIFACTS[fmt][s]]["lines"] for s in SPLITS}
                                     for fmt in EXPORT_FORMATS},
                           "trainable_tokens": self.tokens},
                "exclusions": r["exclusions"],
                "duplicates": {"exact_responses": r["duplicates"]["exact_responses"]["duplicate_responses"],
                               "exact_conversations": r["duplicates"]["exact_conversations"]["duplicate_conversations"],
                               "near_response_pairs": r["duplicates"]["near_responses"]["pairs"],
                               "near_threshold": r["duplicates"]["near_responses"]["threshold"],
                               "leakage": r["duplicates"]["leakage"]["count"]},
                "coverage": {"cells": {f"{c['persona']} x {c['arc']} x {c['topic']}": c["conversations"]
                                       for c in r["coverage"]["table"]},
                             "empty_cells": r["coverage"]["empty_cells"]},
                "warnings": [w["code"] for w in r["warnings"]]}

    def card(self, *, file_id: str, file_name: str, version: int, model: Mapping[str, Any],
             export_figures: Mapping[str, Any], source_warnings: Mapping[str, int],
             artifacts: Mapping[str, Mapping[str, Any]]) -> bytes:
        return render_card(file_id=file_id, file_name=file_name, version=version, formats=EXPORT_FORMATS,
                           policy=self.policy.model_dump(mode="json"), model=model, dataset=self.result,
                           export_figures=export_figures, split_tokens=self.tokens,
                           source_warnings=source_warnings,
                           artifacts={k: v for k, v in artifacts.items() if k not in _NOT_IN_CARD}).encode()


# The card's checksums cover the data files and configs; the files that name their version
# (training.json, report.json) and the manifest are listed, with every checksum, in manifest.json.
_NOT_IN_CARD = ("card", "manifest", "json", "report")
