"""Train/validation splits by conversation: stable, stratified, never moving a placed conversation.

A conversation's split depends only on (seed, its id) and on the conversations that joined the
file before it (members in position order, then a job's new ones in request order):

* `u` = the first 8 bytes of sha256(seed NUL conversation id) as a fraction of 2**64;
* in its stratum (emotional arc x training topic) with `n` members and `v` of them in validation
  so far, the stratum deficit is d = f*(n+1) - v, the file's deficit g = f*(N+1) - V;
* it goes to validation when u < clamp(d, 0, 1), except that the file's deficit tips the balance
  where the stratum allows it: g >= 1 and d > 0 forces validation, g <= 0 and d < 1 forces train;
* the file's first conversation always trains (a split never leaves train empty).

Consequences (checked by the tests): a conversation's split never changes when conversations are
added after it, a rebuild gives the same assignment, and in every stratum the validation count
stays strictly within one conversation of f x the stratum's size (the *stated bound*,
`STRATUM_BOUND`). Strata smaller than 1/f cannot hold their share exactly; the file's deficit then
keeps the whole validation size near f x N, and the result says so (`fallbacks`).
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

TRAIN, VALIDATION = "train", "validation"
SPLITS = (TRAIN, VALIDATION)
UNKNOWN = "unknown"
STRATUM_BOUND = 1  # |validation count - f x stratum size| < 1 in every stratum
METHOD = ("sequential stratified: u = sha256(seed NUL conversation_id)[:8] / 2**64; validation iff "
          "u < clamp(f*(n+1) - v, 0, 1) in the conversation's arc x topic stratum, the file's deficit "
          "tipping the balance where the stratum allows; placed conversations never move")


def split_hash(seed: str, conversation_id: str) -> float:
    """A stable fraction in [0, 1) of (seed, conversation id)."""
    digest = hashlib.sha256(f"{seed}\x00{conversation_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def stratum_of(arc: str | None, topic: str | None) -> str:
    return f"{arc or UNKNOWN} x {topic or UNKNOWN}"


@dataclass
class SplitAssigner:
    """Assign conversations one at a time, in file order."""

    fraction: float
    seed: str
    _f: Fraction = field(init=False)
    _n: Counter = field(default_factory=Counter)
    _v: Counter = field(default_factory=Counter)
    _seen: set = field(default_factory=set)
    total: int = 0
    validation: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), not {self.fraction}")
        self._f = Fraction(str(self.fraction))

    def assign(self, conversation_id: str, stratum: str) -> str:
        if conversation_id in self._seen:
            raise ValueError(f"conversation {conversation_id} is assigned twice")
        self._seen.add(conversation_id)
        n, v = self._n[stratum], self._v[stratum]
        to_validation = False
        if self._f and self.total > 0:
            d = self._f * (n + 1) - v
            g = self._f * (self.total + 1) - self.validation
            if g >= 1 and d > 0:
                to_validation = True
            elif g <= 0 and d < 1:
                to_validation = False
            else:
                to_validation = Fraction(split_hash(self.seed, conversation_id)) < min(Fraction(1), max(Fraction(0), d))
        self._n[stratum] += 1
        self.total += 1
        if to_validation:
            self._v[stratum] += 1
            self.validation += 1
            return VALIDATION
        return TRAIN

    def result(self) -> dict[str, Any]:
        """Sizes, the per-stratum table, the largest deviations and the fallbacks, JSON-ready."""
        f, total, val = self._f, self.total, self.validation
        train = total - val
        strata = {}
        worst_count = Fraction(0)
        worst_share = 0.0
        for s in sorted(self._n):
            n, v = self._n[s], self._v[s]
            whole = n / total
            share_t = (n - v) / train if train else None
            share_v = v / val if val else None
            count_dev = abs(Fraction(v) - f * n)
            share_dev = max(abs(x - whole) for x in (share_t, share_v) if x is not None) if total else 0.0
            worst_count = max(worst_count, count_dev)
            worst_share = max(worst_share, share_dev)
            strata[s] = {"conversations": n, "train": n - v, "validation": v,
                         "expected_validation": round(float(f * n), 4), "count_deviation": round(float(count_dev), 4),
                         "share_deviation": round(share_dev, 4)}
        fallbacks = []
        if f and val == 0:
            fallbacks.append(f"no validation split: {total} conversation(s) x {self.fraction} gives no validation "
                             "conversation; every conversation trains")
        small = [s for s in strata if f and self._n[s] < 1 / f]
        if f and small:
            fallbacks.append(f"{len(small)} of {len(strata)} strata hold fewer than 1/{self.fraction} = "
                             f"{float(1 / f):g} conversations: they cannot hold their validation share exactly, "
                             "so the validation size is balanced across the file (the file's deficit) while each "
                             "stratum stays within one conversation of its share")
        return {"method": METHOD, "seed": self.seed, "validation_fraction": self.fraction,
                "stratify_by": "emotional_arc_key x training_topic_key",
                "conversations": {TRAIN: train, VALIDATION: val},
                "file_validation_deviation": round(float(abs(Fraction(val) - f * total)), 4),
                "stated_bound": f"in every stratum |validation - {self.fraction} x size| < {STRATUM_BOUND} conversation",
                "largest_stratum_count_deviation": round(float(worst_count), 4),
                "largest_stratum_share_deviation": round(worst_share, 4),
                "within_bound": worst_count < STRATUM_BOUND, "strata": strata, "fallbacks": fallbacks}
