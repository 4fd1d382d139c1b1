"""Duplicates tuned for synthetic data: exact and near copies of assistant responses, exact copies
of whole conversations, overused openers and phrases, and duplicates across splits (leakage).

Near duplicates use MinHash + LSH from `rensa` (MIT, Rust, no dependencies): each response's set
of word 5-grams (fewer than five words: its words) is signed with `NUM_PERM` permutations; LSH
(`NUM_BANDS` bands) proposes candidates and a pair is a near duplicate when the MinHash estimate
of its Jaccard similarity is at least `NEAR_THRESHOLD` (and the texts are not exactly equal).

Normalisation (`normalise`): literal backslash escapes as the exports read them, Unicode NFKC,
case folding, whitespace collapsed. Memory grows with the number of assistant turns (one
signature of NUM_PERM 32-bit values each, plus a digest per response and conversation).
"""
from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from typing import Any, Iterable

from rensa import RMinHash, RMinHashLSH

NEAR_THRESHOLD = 0.8
NUM_PERM = 128
NUM_BANDS = 16  # 8 rows per band: candidates from Jaccard ~0.71 up, then checked against NEAR_THRESHOLD
MINHASH_SEED = 1
SHINGLE = 5
OPENER_WORDS = 5
PHRASE_WORDS = 6
TOP = 10
LISTED = 50  # pairs listed per kind in the report (all are counted)
_PHRASE_KEYS_MAX = 500_000
_WORD = re.compile(r"\w+(?:'\w+)?")
_LITERAL = {"\\n": "\n", "\\t": "\t", '\\"': '"'}
LIBRARY = {"name": "rensa", "licence": "MIT", "method": "MinHash (RMinHash) + LSH (RMinHashLSH)",
           "num_perm": NUM_PERM, "num_bands": NUM_BANDS, "seed": MINHASH_SEED,
           "shingles": f"word {SHINGLE}-grams of the normalised text", "threshold": NEAR_THRESHOLD,
           "similarity": "MinHash estimate of the Jaccard similarity of the shingle sets"}


def normalise(text: str) -> str:
    for literal, real in _LITERAL.items():
        text = text.replace(literal, real)
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def words(normalised: str) -> list[str]:
    return _WORD.findall(normalised)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _grams(ws: list[str], n: int) -> Iterable[str]:
    """The word n-grams of `ws` in order (none when it has fewer than n words)."""
    return map(" ".join, zip(*(ws[k:] for k in range(n))))


def _shingles(ws: list[str]) -> list[str]:
    if len(ws) < SHINGLE:
        return ws or [""]
    return list(_grams(ws, SHINGLE))


class DuplicateFinder:
    """Feed conversations in file order (`add`), then read `result()`.

    A response is named (conversation id, turn number). `split` is the conversation's split."""

    def __init__(self) -> None:
        self._responses: list[tuple[str, int, str]] = []  # (conversation, turn, split)
        self._response_digest: dict[str, list[int]] = defaultdict(list)
        self._conversation_digest: dict[str, list[tuple[str, str]]] = defaultdict(list)
        self._lsh = RMinHashLSH(NEAR_THRESHOLD, NUM_PERM, NUM_BANDS)
        self._sigs: list[RMinHash] = []
        self._near: list[tuple[int, int, float]] = []
        self._openers: Counter[str] = Counter()
        self._phrases: Counter[str] = Counter()
        self._phrases_pruned = 0

    def first_copy_of(self, conversation_text: str) -> str | None:
        """The earlier conversation whose normalised text equals this one's, if any."""
        earlier = self._conversation_digest.get(_digest(normalise(conversation_text)))
        return earlier[0][0] if earlier else None

    def add(self, conversation_id: str, split: str, responses: Iterable[tuple[int, str]],
            conversation_text: str) -> None:
        self._conversation_digest[_digest(normalise(conversation_text))].append((conversation_id, split))
        for turn, text in responses:
            norm = normalise(text)
            index = len(self._responses)
            self._responses.append((conversation_id, turn, split))
            digest = _digest(norm)
            exact_before = bool(self._response_digest.get(digest))
            self._response_digest[digest].append(index)
            ws = words(norm)
            sig = RMinHash(NUM_PERM, MINHASH_SEED)
            sig.update(_shingles(ws))
            self._sigs.append(sig)
            if not exact_before:  # an exact copy is listed as exact, not near
                for other in sorted(self._lsh.query(sig)):
                    similarity = sig.jaccard(self._sigs[other])
                    if similarity >= NEAR_THRESHOLD:
                        self._near.append((other, index, round(similarity, 4)))
                self._lsh.insert(index, sig)
            if ws:
                self._openers[" ".join(ws[:OPENER_WORDS])] += 1
            self._phrases.update(set(_grams(ws, PHRASE_WORDS)))
            if len(self._phrases) > _PHRASE_KEYS_MAX:  # lossy counting: phrases seen once are dropped
                self._phrases = Counter({k: c for k, c in self._phrases.items() if c > 1})
                self._phrases_pruned += 1

    def _name(self, index: int) -> dict[str, Any]:
        cid, turn, split = self._responses[index]
        return {"conversation_id": cid, "turn_number": turn, "split": split}

    def result(self) -> dict[str, Any]:
        exact_groups = [ix for ix in self._response_digest.values() if len(ix) > 1]
        exact_groups.sort(key=lambda ix: ix[0])
        exact_listed, exact_cross = [], 0
        for ix in exact_groups:
            splits = {self._responses[i][2] for i in ix}
            exact_cross += len(splits) > 1
            exact_listed.append({"copies": len(ix), "cross_split": len(splits) > 1,
                                 "responses": [self._name(i) for i in ix]})
        conv_groups = sorted((g for g in self._conversation_digest.values() if len(g) > 1), key=lambda g: g[0][0])
        near = [{"a": self._name(a), "b": self._name(b), "similarity": s,
                 "same_conversation": self._responses[a][0] == self._responses[b][0],
                 "cross_split": self._responses[a][2] != self._responses[b][2]} for a, b, s in self._near]
        leakage = ([{"kind": "exact_conversation", "conversations": [c for c, _ in g]}
                    for g in conv_groups if len({s for _, s in g}) > 1]
                   + [{"kind": "exact_response", "responses": e["responses"]} for e in exact_listed if e["cross_split"]]
                   + [{"kind": "near_response", **n} for n in near if n["cross_split"]])
        return {
            "library": LIBRARY, "normalisation": "literal \\n \\t \\\" read as characters, NFKC, casefold, whitespace collapsed",
            "assistant_responses": len(self._responses),
            "exact_responses": {"groups": len(exact_groups),
                                "duplicate_responses": sum(len(ix) - 1 for ix in exact_groups),
                                "cross_split_groups": exact_cross, "listed": exact_listed[:LISTED]},
            "exact_conversations": {"groups": len(conv_groups),
                                    "duplicate_conversations": sum(len(g) - 1 for g in conv_groups),
                                    "listed": [[{"conversation_id": c, "split": s} for c, s in g]
                                               for g in conv_groups[:LISTED]]},
            "near_responses": {"threshold": NEAR_THRESHOLD, "pairs": len(near),
                               "cross_split_pairs": sum(n["cross_split"] for n in near),
                               "same_conversation_pairs": sum(n["same_conversation"] for n in near),
                               "listed": near[:LISTED]},
            "leakage": {"count": len(leakage), "listed": leakage[:LISTED]},
            "top_openers": [{"opener": o, "count": c} for o, c in _top(self._openers)],
            "top_phrases": [{"phrase": p, "responses": c} for p, c in _top(self._phrases)],
            "opener_words": OPENER_WORDS, "phrase_words": PHRASE_WORDS,
            "phrase_counting": "exact" if not self._phrases_pruned else
                               f"lossy: phrases seen once were dropped {self._phrases_pruned} time(s)",
        }


def _top(counter: Counter[str]) -> list[tuple[str, int]]:
    """The TOP most frequent (seen at least twice), ties by text: deterministic."""
    return sorted(((k, c) for k, c in counter.items() if c > 1), key=lambda kc: (-kc[1], kc[0]))[:TOP]
