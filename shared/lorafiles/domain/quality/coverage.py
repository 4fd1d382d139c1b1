"""Coverage of a version: persona x arc x topic counts with the empty cells named, histograms of
turn depth, quality score and tokens per example per split, and per-cell minimums as warnings."""
from __future__ import annotations

from collections import Counter
from itertools import product
from typing import Any, Iterable

from .splits import SPLITS, UNKNOWN

QUALITY_BIN = 0.5
TOKEN_BIN = 256


def _bin(value: float, width: float) -> str:
    low = (value // width) * width
    return f"{low:g}-{low + width:g}"


class CoverageCounter:
    def __init__(self, minimum_per_cell: int | None = None) -> None:
        self.minimum = minimum_per_cell
        self.cells: Counter[tuple[str, str, str]] = Counter()
        self.cells_by_split = {s: Counter() for s in SPLITS}
        self.depth = {s: Counter() for s in SPLITS}
        self.quality = {s: Counter() for s in SPLITS}
        self.tokens = {s: Counter() for s in SPLITS}

    def add(self, split: str, persona: str | None, arc: str | None, topic: str | None,
            turns: Iterable[tuple[int, float | None]], example_tokens: Iterable[int]) -> None:
        """One conversation: its (turn number, quality score) per assistant target, its examples' tokens."""
        cell = (persona or UNKNOWN, arc or UNKNOWN, topic or UNKNOWN)
        self.cells[cell] += 1
        self.cells_by_split[split][cell] += 1
        for turn, score in turns:
            self.depth[split][str(turn)] += 1
            if score is not None:
                self.quality[split][_bin(float(score), QUALITY_BIN)] += 1
        for tokens in example_tokens:
            self.tokens[split][_bin(tokens, TOKEN_BIN)] += 1

    def result(self) -> dict[str, Any]:
        personas = sorted({c[0] for c in self.cells})
        arcs = sorted({c[1] for c in self.cells})
        topics = sorted({c[2] for c in self.cells})
        table, empty, under = [], [], []
        for cell in product(personas, arcs, topics):
            n = self.cells.get(cell, 0)
            row = {"persona": cell[0], "arc": cell[1], "topic": cell[2], "conversations": n,
                   **{s: self.cells_by_split[s].get(cell, 0) for s in SPLITS}}
            table.append(row)
            if n == 0:
                empty.append(f"{cell[0]} x {cell[1]} x {cell[2]}")
            if self.minimum is not None and n < self.minimum:
                under.append({"code": "coverage_below_minimum", "cell": f"{cell[0]} x {cell[1]} x {cell[2]}",
                              "conversations": n, "minimum": self.minimum,
                              "message": f"{cell[0]} x {cell[1]} x {cell[2]} has {n} conversation(s), "
                                         f"below the file's minimum of {self.minimum}"})

        def hist(counter: Counter[str], numeric_key=float) -> dict[str, int]:
            return {k: counter[k] for k in sorted(counter, key=lambda k: numeric_key(k.split("-")[0]))}

        return {
            "dimensions": {"persona": personas, "arc": arcs, "topic": topics},
            "cells": len(table), "filled_cells": len(table) - len(empty), "empty_cells": empty,
            "table": table, "minimum_per_cell": self.minimum, "warnings": under,
            "histograms": {
                "turn_depth": {s: hist(self.depth[s], int) for s in SPLITS},
                "quality_score": {s: hist(self.quality[s]) for s in SPLITS},
                "tokens_per_example": {s: hist(self.tokens[s]) for s in SPLITS},
            },
            "histogram_notes": {"turn_depth": "turn_number of each assistant target (v4 pairs)",
                                "quality_score": f"training_metadata.quality_score of each target, bins of {QUALITY_BIN}",
                                "tokens_per_example": f"total tokens of each openai example in the target model's "
                                                      f"template, bins of {TOKEN_BIN}"},
        }
