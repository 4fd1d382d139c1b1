"""The dataset-quality rules one by one (lorafiles.domain.quality: splits, coverage, duplicates,
card), on small hand-made inputs whose right answers are worked out here from the documented rules,
not read back from the code. tests/quality checks the same rules on published versions."""
from __future__ import annotations

import hashlib
import random
from fractions import Fraction
from typing import Any

import pytest
import yaml

from lorafiles.domain.quality import DatasetQuality, conversation_text
from lorafiles.domain.quality import card as card_mod
from lorafiles.domain.quality import duplicates as dup_mod
from lorafiles.domain.quality.coverage import CoverageCounter, _bin
from lorafiles.domain.quality.duplicates import NEAR_THRESHOLD, DuplicateFinder, normalise, words
from lorafiles.domain.quality.splits import SplitAssigner, split_hash, stratum_of


# ---------------------------------------------------------------------------- splits
def test_split_hash_is_the_first_8_bytes_of_sha256_of_seed_nul_id():
    digest = hashlib.sha256(b"s33d\x00conv-1").digest()
    assert split_hash("s33d", "conv-1") == int.from_bytes(digest[:8], "big") / 2**64
    assert split_hash("s33d", "conv-1") != split_hash("other", "conv-1")
    assert all(0 <= split_hash("x", str(i)) < 1 for i in range(200))


def test_stratum_names_unknown_keys():
    assert stratum_of("arc", "topic") == "arc x topic"
    assert stratum_of(None, "topic") == "unknown x topic"
    assert stratum_of("arc", "") == "arc x unknown"


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_fraction_outside_0_1_is_refused(fraction: float):
    with pytest.raises(ValueError, match=rf"^validation_fraction must be in \[0, 1\), not {fraction}$"):
        SplitAssigner(fraction, "s")


def test_a_conversation_is_never_assigned_twice():
    a = SplitAssigner(0.5, "s")
    a.assign("c1", "x")
    with pytest.raises(ValueError, match="^conversation c1 is assigned twice$"):
        a.assign("c1", "y")


def reference_split(ids_strata: list[tuple[str, str]], f: Fraction, seed: str) -> list[str]:
    """The rule exactly as splits.py's docstring states it, written again."""
    n: dict[str, int] = {}
    v: dict[str, int] = {}
    total = val = 0
    out = []
    for cid, s in ids_strata:
        to_val = False
        if f and total:
            d = f * (n.get(s, 0) + 1) - v.get(s, 0)
            g = f * (total + 1) - val
            if g >= 1 and d > 0:
                to_val = True
            elif g <= 0 and d < 1:
                to_val = False
            else:
                h = hashlib.sha256(f"{seed}\x00{cid}".encode()).digest()
                to_val = Fraction(int.from_bytes(h[:8], "big"), 2**64) < min(Fraction(1), max(Fraction(0), d))
        n[s] = n.get(s, 0) + 1
        total += 1
        if to_val:
            v[s] = v.get(s, 0) + 1
            val += 1
        out.append("validation" if to_val else "train")
    return out


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_the_assignment_is_the_stated_rule_stays_within_the_bound_and_never_moves(fraction: float):
    rng = random.Random(fraction)
    strata = [f"arc{a} x topic{t}" for a in range(3) for t in range(4)]
    items = [(f"conv-{rng.getrandbits(40):x}", rng.choice(strata)) for _ in range(400)]
    a = SplitAssigner(fraction, "seed-1")
    got = [a.assign(c, s) for c, s in items]
    assert got == reference_split(items, Fraction(str(fraction)), "seed-1")
    assert got[0] == "train"
    f = Fraction(str(fraction))
    for s in strata:  # the stated bound, in every stratum, and at every prefix of the file
        placed = [g for (c, st), g in zip(items, got) if st == s]
        for k in range(1, len(placed) + 1):
            assert abs(Fraction(placed[:k].count("validation")) - f * k) < 1, (s, k)
    assert abs(Fraction(got.count("validation")) - f * len(got)) <= 1
    # adding conversations never moves the ones already placed; the same order gives the same result
    again = SplitAssigner(fraction, "seed-1")
    assert [again.assign(c, s) for c, s in items[:150]] == got[:150]


def test_fraction_zero_puts_everything_in_train_and_says_why():
    a = SplitAssigner(0, "s")
    assert {a.assign(f"c{i}", "x") for i in range(20)} == {"train"}
    r = a.result()
    assert r["conversations"] == {"train": 20, "validation": 0}
    assert r["fallbacks"] == [] and r["within_bound"] is True  # off is not a fallback


def test_a_file_too_small_for_a_validation_conversation_says_so():
    a = SplitAssigner(0.1, "s")
    a.assign("c0", "arc x t0")  # the file's first conversation always trains
    r = a.result()
    assert r["conversations"] == {"train": 1, "validation": 0}
    assert r["fallbacks"][0] == ("no validation split: 1 conversation(s) x 0.1 gives no validation conversation; "
                                 "every conversation trains")
    assert r["fallbacks"][1].startswith("1 of 1 strata hold fewer than 1/0.1 = 10 conversations")


def test_the_result_table_of_a_worked_example():
    # f = 1/2 over two strata, in the order A A B A B B; the rule's answer comes from reference_split
    a = SplitAssigner(0.5, "s")
    order = [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A"), ("b2", "B"), ("b3", "B")]
    got = [a.assign(c, s) for c, s in order]
    assert got == reference_split(order, Fraction(1, 2), "s")
    r = a.result()
    n_val = got.count("validation")
    assert r["conversations"] == {"train": 6 - n_val, "validation": n_val}
    for s in ("A", "B"):
        v = sum(g == "validation" for (c, st), g in zip(order, got) if st == s)
        row = r["strata"][s]
        assert (row["conversations"], row["train"], row["validation"]) == (3, 3 - v, v)
        assert row["expected_validation"] == 1.5
        assert row["count_deviation"] == abs(v - 1.5)
        whole = 3 / 6
        shares = [(3 - v) / (6 - n_val), v / n_val]
        assert row["share_deviation"] == round(max(abs(x - whole) for x in shares), 4)
    assert r["largest_stratum_count_deviation"] == max(r["strata"][s]["count_deviation"] for s in "AB")
    assert r["largest_stratum_share_deviation"] == max(r["strata"][s]["share_deviation"] for s in "AB")
    assert r["file_validation_deviation"] == abs(n_val - 3)
    assert r["within_bound"] is (r["largest_stratum_count_deviation"] < 1)
    assert r["fallbacks"] == []  # strata of 3 >= 1/0.5
    assert r["seed"] == "s" and r["validation_fraction"] == 0.5
    assert r["stated_bound"] == "in every stratum |validation - 0.5 x size| < 1 conversation"


# ---------------------------------------------------------------------------- coverage
@pytest.mark.parametrize(("value", "width", "label"), [(0.0, 0.5, "0-0.5"), (2.49, 0.5, "2-2.5"), (2.5, 0.5, "2.5-3"),
                                                       (255, 256, "0-256"), (256, 256, "256-512"), (9.99, 0.5, "9.5-10")])
def test_bins(value: float, width: float, label: str):
    assert _bin(value, width) == label


def test_coverage_counts_cells_names_empty_ones_and_warns_below_the_minimum():
    c = CoverageCounter(minimum_per_cell=2)
    c.add("train", "p1", "a1", "t1", [(1, 3.0), (2, None), (10, 4.5)], [100, 300])
    c.add("validation", "p1", "a1", "t1", [(1, 2.5)], [600])
    c.add("train", "p2", None, "t1", [(9, 10.0)], [])
    r = c.result()
    assert r["dimensions"] == {"persona": ["p1", "p2"], "arc": ["a1", "unknown"], "topic": ["t1"]}
    assert r["cells"] == 4 and r["filled_cells"] == 2
    assert r["empty_cells"] == ["p1 x unknown x t1", "p2 x a1 x t1"]
    rows = {(x["persona"], x["arc"], x["topic"]): (x["conversations"], x["train"], x["validation"]) for x in r["table"]}
    assert rows == {("p1", "a1", "t1"): (2, 1, 1), ("p1", "unknown", "t1"): (0, 0, 0),
                    ("p2", "a1", "t1"): (0, 0, 0), ("p2", "unknown", "t1"): (1, 1, 0)}
    assert [(w["cell"], w["conversations"]) for w in r["warnings"]] == [
        ("p1 x unknown x t1", 0), ("p2 x a1 x t1", 0), ("p2 x unknown x t1", 1)]
    assert r["warnings"][2]["message"] == "p2 x unknown x t1 has 1 conversation(s), below the file's minimum of 2"
    assert r["warnings"][2]["code"] == "coverage_below_minimum" and r["minimum_per_cell"] == 2
    h = r["histograms"]
    assert list(h["turn_depth"]["train"].items()) == [("1", 1), ("2", 1), ("9", 1), ("10", 1)]  # numeric order
    assert h["turn_depth"]["validation"] == {"1": 1}
    assert list(h["quality_score"]["train"].items()) == [("3-3.5", 1), ("4.5-5", 1), ("10-10.5", 1)]
    assert h["quality_score"]["validation"] == {"2.5-3": 1}
    assert h["tokens_per_example"] == {"train": {"0-256": 1, "256-512": 1}, "validation": {"512-768": 1}}


def test_coverage_without_a_minimum_warns_of_nothing():
    c = CoverageCounter()
    c.add("train", "p", "a", "t", [], [])
    c.add("train", "q", "a", "t", [], [])
    r = c.result()
    assert r["warnings"] == [] and r["minimum_per_cell"] is None and r["empty_cells"] == []


# ---------------------------------------------------------------------------- duplicates
def test_normalise_reads_literal_escapes_folds_case_and_unicode_and_collapses_space():
    assert normalise('Hello\\nWorld\\t \\"Ok\\"  ') == 'hello world "ok"'
    assert normalise("Stra\u00dfe  \ufb01ne\u00a0X") == "strasse fine x"
    assert words("it's a 401k, ok?") == ["it's", "a", "401k", "ok"]


def _text(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(["plan", "save", "budget", "fund", "retire", "invest", "debt", "goal", "rate",
                                "tax", "income", "house", "loan", "card", "roth", "match"]) + str(rng.randrange(50))
                    for _ in range(n))


def test_exact_and_near_duplicates_and_leakage_across_splits():
    base = _text(120, 1)
    edited = base.split(" ")
    edited[60] = "notably"
    near = " ".join(edited) + " Truly."
    other = _text(120, 2)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, base), (2, other)], "conv one")
    d.add("c2", "validation", [(1, base.upper() + "  ")], "conv two")  # exact after normalising, other split
    d.add("c3", "validation", [(3, near)], "CONV ONE")  # near copy of base; conversation = c1's (normalised)
    d.add("c4", "train", [(1, _text(120, 3))], "conv four")
    r = d.result()
    ex = r["exact_responses"]
    assert (ex["groups"], ex["duplicate_responses"], ex["cross_split_groups"]) == (1, 1, 1)
    assert ex["listed"] == [{"copies": 2, "cross_split": True, "responses": [
        {"conversation_id": "c1", "turn_number": 1, "split": "train"},
        {"conversation_id": "c2", "turn_number": 1, "split": "validation"}]}]
    assert r["exact_conversations"]["groups"] == 1 and r["exact_conversations"]["duplicate_conversations"] == 1
    assert r["exact_conversations"]["listed"] == [[{"conversation_id": "c1", "split": "train"},
                                                   {"conversation_id": "c3", "split": "validation"}]]
    nr = r["near_responses"]
    assert nr["threshold"] == NEAR_THRESHOLD
    # the near copy matches base once (c1's): c2's exact copy is not indexed again
    assert [(p["a"]["conversation_id"], p["b"]["conversation_id"]) for p in nr["listed"]] == [("c1", "c3")]
    assert nr["pairs"] == 1 and nr["cross_split_pairs"] == 1 and nr["same_conversation_pairs"] == 0
    assert NEAR_THRESHOLD <= nr["listed"][0]["similarity"] < 1
    kinds = sorted(leak["kind"] for leak in r["leakage"]["listed"])
    assert kinds == ["exact_conversation", "exact_response", "near_response"] and r["leakage"]["count"] == 3
    assert r["assistant_responses"] == 5
    assert d.first_copy_of("Conv  one") == "c1" and d.first_copy_of("conv five") is None


def test_duplicates_within_one_split_are_not_leakage():
    base = _text(80, 5)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, base)], "same")
    d.add("c2", "train", [(1, base)], "same")
    r = d.result()
    assert r["exact_responses"]["cross_split_groups"] == 0 and r["leakage"] == {"count": 0, "listed": []}
    assert r["exact_conversations"]["duplicate_conversations"] == 1


def test_dissimilar_responses_are_not_near_duplicates():
    d = DuplicateFinder()
    for i in range(6):
        d.add(f"c{i}", "train", [(1, _text(100, 100 + i))], f"conversation {i}")
    assert d.result()["near_responses"]["pairs"] == 0


def test_openers_and_phrases_are_counted_seen_twice_and_ordered_by_count_then_text():
    d = DuplicateFinder()
    responses = ["First take a breath and then we plan", "First take a breath and then we save",
                 "First take a breath, please, now", "Zebra opener goes here today ok",
                 "Zebra opener goes here today ok yes", "Alpha opener goes here today ok",
                 "Alpha opener goes here today again", "one two"]
    for i, text in enumerate(responses):
        d.add(f"c{i}", "train", [(1, text)], f"text {i}")
    r = d.result()
    assert [o["opener"] for o in r["top_openers"]] == ["alpha opener goes here today", "first take a breath and",
                                                       "zebra opener goes here today"]
    assert all(o["count"] == 2 for o in r["top_openers"])
    phrases = {p["phrase"]: p["responses"] for p in r["top_phrases"]}
    assert phrases["first take a breath and then"] == 2
    assert phrases["zebra opener goes here today ok"] == 2
    assert "one two" not in phrases and all(c >= 2 for c in phrases.values())
    assert r["phrase_counting"] == "exact"


def test_a_phrase_repeated_inside_one_response_counts_once():
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "we will save more money now " * 3)], "x")
    assert d.result()["top_phrases"] == []


def test_phrase_counting_turns_lossy_past_its_bound_and_says_so(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dup_mod, "_PHRASE_KEYS_MAX", 10)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, _text(40, 9)), (2, "a b c d e f g")], "x")
    d.add("c2", "train", [(1, "a b c d e f g")], "y")
    r = d.result()
    assert r["phrase_counting"].startswith("lossy: phrases seen once were dropped ")
    assert {"phrase": "a b c d e f", "responses": 2} in r["top_phrases"]


def test_top_lists_hold_at_most_ten():
    d = DuplicateFinder()
    for k in range(12):
        for j in range(2 + k):
            d.add(f"c{k}-{j}", "train", [(1, f"opener{k} w w w w extra{j}")], f"t{k}-{j}")
    tops = d.result()["top_openers"]
    assert len(tops) == 10 and tops[0] == {"opener": "opener11 w w w w", "count": 13}
    assert [t["count"] for t in tops] == sorted((t["count"] for t in tops), reverse=True)


# ---------------------------------------------------------------------------- the whole section
def test_conversation_text_is_history_input_and_target_of_the_last_pair():
    records = [{"conversation_history": [{"role": "user", "content": "hi"}], "current_user_input": "hi",
                "target_response": "first"},
               {"conversation_history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "first"}],
                "current_user_input": "more?", "target_response": "second"}]
    assert conversation_text(records) == "hi\nfirst\nmore?\nsecond"
    assert conversation_text([{"conversation_history": [], "current_user_input": "q", "target_response": "a"}]) == "q\na"
    assert conversation_text([]) == ""


def _records(text: str, score: float | None = 3.0) -> list[dict[str, Any]]:
    return [{"turn_number": 1, "conversation_history": [], "current_user_input": "question",
             "target_response": text, "training_metadata": {"quality_score": score}}]


def test_the_exclude_policy_excludes_later_exact_copies_only_and_counts_them():
    q = DatasetQuality(validation_fraction=0.5, split_seed="s", exact_duplicates="exclude")
    placed = [q.add(cid, persona="p", arc="a", topic="t", records=_records(text), example_tokens=[10])
              for cid, text in (("c1", "same answer"), ("c2", "Same  answer"), ("c3", "different"))]
    assert [reason for _, reason in placed] == [None, "exact_duplicate_conversation", None]
    r = q.result()
    assert r["exclusions"]["by_reason"] == {"exact_duplicate_conversation": 1}
    assert r["exclusions"]["listed"] == [{"conversation_id": "c2", "split": placed[1][0],
                                          "reason": "exact_duplicate_conversation", "copy_of": "c1"}]
    report = DatasetQuality(validation_fraction=0.5, split_seed="s")
    assert all(report.add(c, persona="p", arc="a", topic="t", records=_records("same"), example_tokens=[])[1] is None
               for c in ("c1", "c2"))
    with pytest.raises(ValueError, match="^exact_duplicates must be report or exclude, not 'drop'$"):
        DatasetQuality(validation_fraction=0.1, split_seed="s", exact_duplicates="drop")


def test_leakage_and_fallbacks_become_warnings():
    q = DatasetQuality(validation_fraction=0.5, split_seed="s")
    splits = [q.add(f"c{i}", persona="p", arc="a", topic="t", records=_records("copied text"), example_tokens=[1])[0]
              for i in range(4)]
    assert set(splits) == {"train", "validation"}
    r = q.result()
    codes = [w["code"] for w in r["warnings"]]
    assert "split_leakage" in codes
    leak = next(w for w in r["warnings"] if w["code"] == "split_leakage")
    assert leak["count"] == r["duplicates"]["leakage"]["count"] > 0
    assert leak["message"] == (f"{leak['count']} duplicate(s) cross the train/validation split "
                               "(listed under duplicates.leakage)")
    small = DatasetQuality(validation_fraction=0.1, split_seed="s")
    small.add("c1", persona="p", arc="a", topic="t", records=_records("x"), example_tokens=[1])
    assert [w["code"] for w in small.result()["warnings"]] == ["split_fallback", "split_fallback"]


# ---------------------------------------------------------------------------- the card
@pytest.mark.parametrize(("n", "category"), [(0, "n<1K"), (999, "n<1K"), (1_000, "1K<n<10K"), (9_999, "1K<n<10K"),
                                             (10_000, "10K<n<100K"), (99_999, "10K<n<100K"),
                                             (100_000, "100K<n<1M"), (999_999, "100K<n<1M"), (1_000_000, "n>1M")])
def test_size_category(n: int, category: str):
    assert card_mod.size_category(n) == category


def _artifacts(lines: dict[str, tuple[int, int]]) -> dict[str, dict[str, Any]]:
    out = {}
    for fmt, (train, val) in lines.items():
        for split, n in (("train", train), ("validation", val)):
            out[f"{fmt}_{split}"] = {"file": f"{fmt}.{split}.jsonl", "lines": n, "size": 100 * n + 7,
                                     "sha256": f"{n:064x}"}
    return out


def test_front_matter_declares_only_non_empty_splits_with_their_counts_and_bytes():
    arts = _artifacts({"openai": (9, 1), "trl": (20, 0), "sharegpt": (0, 0)})
    text = card_mod.front_matter(pretty_name='My "file" (v2)', formats=("openai", "trl", "sharegpt"), artifacts=arts,
                                 conversations=10)
    assert text.startswith("---\n") and text.endswith("\n---\n")
    doc = yaml.safe_load(text.strip().strip("-"))
    assert doc["pretty_name"] == 'My "file" (v2)' and doc["size_categories"] == ["n<1K"]
    assert doc["configs"] == [
        {"config_name": "openai", "default": True, "data_files": [{"split": "train", "path": "openai.train.jsonl"},
                                                                  {"split": "validation",
                                                                   "path": "openai.validation.jsonl"}]},
        {"config_name": "trl", "data_files": [{"split": "train", "path": "trl.train.jsonl"}]}]
    assert doc["dataset_info"] == [
        {"config_name": "openai", "splits": [{"name": "train", "num_bytes": 907, "num_examples": 9},
                                             {"name": "validation", "num_bytes": 107, "num_examples": 1}],
         "download_size": 1014, "dataset_size": 1014},
        {"config_name": "trl", "splits": [{"name": "train", "num_bytes": 2007, "num_examples": 20}],
         "download_size": 2007, "dataset_size": 2007}]
