"""Version-wide export figures, folded from the members' compact `stats` (never from the lines).

Memory is constant in the number of conversations apart from the per-line token pairs (two
machine integers per line and format), which the percentiles need.

Percentiles are *nearest-rank*: over the n values sorted ascending, the p-th percentile is the
value at 1-based rank ceil(p * n / 100) (so p50 of [1, 2, 3, 4] is 2, p100 is the maximum);
min, max and the percentiles are always values that occur; the mean is rounded to 2 decimals.
"""
from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .build import CHANGE_KINDS, EXCLUSION_REASONS
from .checks import CHECK_NAMES
from .policy import EXPORT_FORMATS

PERCENTILE_METHOD = "nearest-rank: the value at 1-based rank ceil(p*n/100) of the n values sorted ascending"
PERCENTILES = (50, 95, 99)


def nearest_rank(sorted_values: Sequence[int], p: int) -> int:
    """The p-th percentile (0 < p <= 100) of non-empty ascending values, nearest-rank method."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < p <= 100:
        raise ValueError("p must be in (0, 100]")
    rank = max(1, -(-p * len(sorted_values) // 100))
    return sorted_values[rank - 1]


def distribution(values: Iterable[int]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"min": None, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    out: dict[str, Any] = {"min": ordered[0], "max": ordered[-1], "mean": round(sum(ordered) / len(ordered), 2)}
    for p in PERCENTILES:
        out[f"p{p}"] = nearest_rank(ordered, p)
    return out


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


class ExportAccumulator:
    """Add member stats one at a time; `result()` gives the version's export figures."""

    def __init__(self) -> None:
        self.conversations = 0
        self._total = {fmt: array("q") for fmt in EXPORT_FORMATS}
        self._trainable = {fmt: array("q") for fmt in EXPORT_FORMATS}
        self._over = Counter({fmt: 0 for fmt in EXPORT_FORMATS})
        self._excluded: dict[str, list[int]] = {r: [0, 0] for r in EXCLUSION_REASONS}
        self._trims = [0, 0, 0]  # count, messages removed, context tokens removed
        self._changes: Counter[str] = Counter({k: 0 for k in CHANGE_KINDS})
        self._checks: Counter[str] = Counter({k: 0 for k in CHECK_NAMES})
        self._max_lengths: set[int] = set()

    def add(self, stats: Mapping[str, Any]) -> None:
        self.conversations += 1
        limit = int(stats["max_length"])
        self._max_lengths.add(limit)
        for fmt in EXPORT_FORMATS:
            for total, trainable in stats["tokens"][fmt]:
                self._total[fmt].append(total)
                self._trainable[fmt].append(trainable)
                if total > limit:
                    self._over[fmt] += 1
        for e in stats["exclusions"]:
            slot = self._excluded.setdefault(e["reason"], [0, 0])
            slot[0] += 1
            slot[1] += e["trainable_tokens"]
        for t in stats["trims"]:
            self._trims[0] += 1
            self._trims[1] += t["messages_removed"]
            self._trims[2] += t["context_tokens_removed"]
        self._changes.update(stats["changes"])
        self._checks.update(stats["checks"])

    def extend(self, many: Iterable[Mapping[str, Any]]) -> ExportAccumulator:
        for stats in many:
            self.add(stats)
        return self

    def result(self) -> dict[str, Any]:
        excluded_tokens = sum(tokens for _, tokens in self._excluded.values())
        formats = {}
        for fmt in EXPORT_FORMATS:
            formats[fmt] = {
                "lines": len(self._total[fmt]),
                "total_tokens": distribution(self._total[fmt]),
                "trainable_tokens": distribution(self._trainable[fmt]),
                "examples_over_max_length": self._over[fmt],
                "training_tokens_per_epoch": sum(self._total[fmt]),
                "trainable_tokens_per_epoch": sum(self._trainable[fmt]),
                "trainable_tokens_excluded": excluded_tokens,
                "context_tokens_trimmed": self._trims[2],
            }
        return _sorted({
            "conversations": self.conversations,
            "max_length": (next(iter(self._max_lengths)) if len(self._max_lengths) == 1
                           else sorted(self._max_lengths) or None),
            "formats": formats,
            "exclusions": {r: {"count": c, "trainable_tokens": t} for r, (c, t) in self._excluded.items()},
            "trims": {"count": self._trims[0], "messages_removed": self._trims[1],
                      "context_tokens_removed": self._trims[2]},
            "changes": dict(self._changes),
            "checks": dict(self._checks),
            "percentiles": PERCENTILE_METHOD,
        })
