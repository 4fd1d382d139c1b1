"""Edges of the dataset-quality rules (lorafiles.domain.quality) that the unit tests in
tests/domain/test_quality_units.py leave open: the dataset card's exact wording of every figure,
the split result's table and fallbacks at their boundaries, the coverage and duplicate reports'
fixed texts and cut-offs, and the version diff's refusals and moved figures. Pure domain code, small
hand-made inputs; the expected answers are written out here from the documented rules."""
from __future__ import annotations

import copy
import random
from typing import Any

import pytest
import yaml

from lorafiles.domain.exports import EXPORT_FORMATS
from lorafiles.domain.quality import card as card_mod
from lorafiles.domain.quality import duplicates as dup_mod
from lorafiles.domain.quality.coverage import CoverageCounter
from lorafiles.domain.quality.diff import ManifestInvalid, moved, version_diff
from lorafiles.domain.quality.duplicates import DuplicateFinder, normalise
from lorafiles.domain.quality.splits import METHOD, SplitAssigner

# ---------------------------------------------------------------------------- the card

DEFECT_WORDING = {  # what the card tells a reader was done about each known defect
    "truncated_target": "target ends in a backslash: never trained on, kept as context (exports only)",
    "double_escaped_newline": "literal \\n / \\\" in the text: real characters in the exports when "
                              "fix_literal_escapes is on",
    "input_repeats_history": "current_user_input repeats the last history item: not repeated in the exports",
    "history_without_role": "history item without a role: role taken from alternation in the exports",
    "low_quality": "quality below 2.5: recorded; trained unless the policy's min_quality excludes it",
    "missing_scaffolding_keys": "scaffolding taken from the conversation row; coverage counts it as found",
    "dataset_name_unrecognised": "recorded; the conversation id comes from the database row",
}


def _art(file: str, lines: int, size: int, sha: str) -> dict[str, Any]:
    return {"file": file, "lines": lines, "size": size, "sha256": sha * 64}


def card_inputs(*, exact_duplicates: str = "report") -> dict[str, Any]:
    artifacts = {  # (key order deliberately not file-name order: the checksum table sorts by file)
        "trl_train": _art("trl.train.jsonl", 3, 310, "c"),
        "trl_validation": _art("trl.validation.jsonl", 0, 0, "d"),
        "openai_train": _art("openai.train.jsonl", 3, 300, "a"),
        "openai_validation": _art("openai.validation.jsonl", 1, 100, "b"),
        "training_config": _art("axolotl.yaml", 12, 55, "e"),
        "sharegpt_train": _art("sharegpt.train.jsonl", 2, 200, "f"),
        "sharegpt_validation": _art("sharegpt.validation.jsonl", 1, 90, "9"),
    }
    dataset = {
        "splits": {"conversations": {"train": 3, "validation": 1}, "method": "sequential stratified",
                   "stratify_by": "arc x topic", "stated_bound": "|v - 0.25 x n| < 1",
                   "largest_stratum_count_deviation": 0.75, "largest_stratum_share_deviation": 0.0833,
                   "fallbacks": ["too small", "balanced"]},
        "duplicates": {"exact_responses": {"duplicate_responses": 2},
                       "exact_conversations": {"duplicate_conversations": 1},
                       "near_responses": {"threshold": 0.8, "pairs": 4}, "leakage": {"count": 5},
                       "top_openers": [{"opener": f"opener {i}", "count": 10 - i} for i in range(6)]},
        "coverage": {"filled_cells": 2, "cells": 4, "empty_cells": ["p x a x t2", "q x a x t2"],
                     "table": [{"persona": "p", "arc": "a", "topic": "t1", "conversations": 3, "train": 2,
                                "validation": 1},
                               {"persona": "p", "arc": "a", "topic": "t2", "conversations": 0, "train": 0,
                                "validation": 0},
                               {"persona": "q", "arc": "a", "topic": "t1", "conversations": 1, "train": 1,
                                "validation": 0}],
                     "warnings": [{"message": "p x a x t2 is thin"}, {"message": "q x a x t1 is thin"}]},
        "exclusions": {"by_reason": {"exact_duplicate_conversation": 1, "other_reason": 2}},
    }
    figures = {"formats": {
        "openai": {"lines": 4, "total_tokens": {"min": 10, "mean": 20.5, "p50": 19, "p95": 30, "max": 31},
                   "trainable_tokens": {"mean": 7.25}, "trainable_tokens_per_epoch": 29,
                   "examples_over_max_length": 1},
        "trl": {"lines": 3, "total_tokens": {"min": 11, "mean": 21, "p50": 20, "p95": 32, "max": 33},
                "trainable_tokens": {"mean": 8}, "trainable_tokens_per_epoch": 24, "examples_over_max_length": 0},
        "sharegpt": {"lines": 3, "total_tokens": {"min": 9, "mean": 19.5, "p50": 18, "p95": 29, "max": 30},
                     "trainable_tokens": {"mean": 6.5}, "trainable_tokens_per_epoch": 21, "examples_over_max_length": 2}},
        "exclusions": {"over_length": {"count": 2}, "empty_target": {"count": 0}, "another": {"count": 1}},
        "changes": {"role_inferred": 3, "escapes_fixed": 0, "a_change": 1}}
    return dict(file_id="f-1", file_name="Café plans", version=7, formats=("openai", "trl", "sharegpt"),
                policy={"validation_fraction": 0.25, "exact_duplicates": exact_duplicates, "max_length": 2048},
                model={"id": "m-1", "tokenizer_id": "tok-1", "template_id": "tpl-1"}, dataset=dataset,
                export_figures=figures, split_tokens={"openai": {"train": 21, "validation": 8},
                                                      "trl": {"train": 18, "validation": 0},
                                                      "sharegpt": {"train": 15, "validation": 6}},
                source_warnings={"zz_unlisted_code": 1, **{code: i + 1 for i, code in enumerate(DEFECT_WORDING)}},
                artifacts=artifacts)


EXPECTED_FRONT = """---
pretty_name: "Café plans (v7)"
language:
- en
task_categories:
- text-generation
tags:
- lorafiles
- synthetic
- conversational
- lora
size_categories:
- "n<1K"
configs:
- config_name: openai
  default: true
  data_files:
  - split: train
    path: "openai.train.jsonl"
  - split: validation
    path: "openai.validation.jsonl"
- config_name: trl
  data_files:
  - split: train
    path: "trl.train.jsonl"
- config_name: sharegpt
  data_files:
  - split: train
    path: "sharegpt.train.jsonl"
  - split: validation
    path: "sharegpt.validation.jsonl"
dataset_info:
- config_name: openai
  splits:
  - name: train
    num_bytes: 300
    num_examples: 3
  - name: validation
    num_bytes: 100
    num_examples: 1
  download_size: 400
  dataset_size: 400
- config_name: trl
  splits:
  - name: train
    num_bytes: 310
    num_examples: 3
  download_size: 310
  dataset_size: 310
- config_name: sharegpt
  splits:
  - name: train
    num_bytes: 200
    num_examples: 2
  - name: validation
    num_bytes: 90
    num_examples: 1
  download_size: 290
  dataset_size: 290
---
"""


def expected_card(*, exact_duplicates: str = "report") -> str:
    defects = [f"| {code} | {n} | {DEFECT_WORDING.get(code, 'warning recorded per conversation in report.json')} |"
               for code, n in sorted(card_inputs()["source_warnings"].items())]
    excluded = "excluded from the splits" if exact_duplicates == "exclude" else "reported (report.json)"
    return EXPECTED_FRONT + "\n" + "\n".join([
        "# Café plans — version 7",
        "",
        "Training file `f-1`, built by lorafiles for `m-1` (tokenizer `tok-1`, template `tpl-1`). Synthetic "
        "financial-advisor conversations; every conversation, with all its turns, is in exactly one split.",
        "",
        "```python",
        "from datasets import load_dataset",
        'ds = load_dataset("path/to/v7", "openai")  # or: trl, sharegpt',
        "```",
        "",
        "## Counts",
        "",
        "|  | train | validation |",
        "|---|---|---|",
        "| conversations | 3 | 1 |",
        "| openai lines | 3 | 1 |",
        "| trl lines | 3 | 0 |",
        "| sharegpt lines | 2 | 1 |",
        "| openai trainable tokens | 21 | 8 |",
        "| trl trainable tokens | 18 | 0 |",
        "| sharegpt trainable tokens | 15 | 6 |",
        "",
        "Excluded from the splits: 3 conversation(s) (exact_duplicate_conversation: 1, other_reason: 2).",
        "",
        "## Policies",
        "",
        "| setting | value |",
        "|---|---|",
        f'| exact_duplicates | `"{exact_duplicates}"` |',
        "| max_length | `2048` |",
        "| validation_fraction | `0.25` |",
        "",
        "Split: sequential stratified. Stratified by arc x topic; |v - 0.25 x n| < 1; largest stratum deviation: "
        "0.75 conversation(s) (0.0833 as a share of a split).",
        "",
        "- fallback: too small",
        "- fallback: balanced",
        "",
        "## Token statistics (whole file, target model's template)",
        "",
        "| format | lines | min | mean | p50 | p95 | max | trainable mean | trainable / epoch | over max_length |",
        "|---|---|---|---|---|---|---|---|---|---|",
        "| openai | 4 | 10 | 20.5 | 19 | 30 | 31 | 7.25 | 29 | 1 |",
        "| trl | 3 | 11 | 21 | 20 | 32 | 33 | 8 | 24 | 0 |",
        "| sharegpt | 3 | 9 | 19.5 | 18 | 29 | 30 | 6.5 | 21 | 2 |",
        "",
        "## Coverage (persona x arc x topic)",
        "",
        "2 of 4 cells hold a conversation; 2 are empty.",
        "",
        "| persona | arc | topic | conversations | train | validation |",
        "|---|---|---|---|---|---|",
        "| p | a | t1 | 3 | 2 | 1 |",
        "| q | a | t1 | 1 | 1 | 0 |",
        "",
        "Empty cells: p x a x t2; q x a x t2.",
        "",
        "- p x a x t2 is thin",
        "- q x a x t1 is thin",
        "",
        "## Known data defects and what was done",
        "",
        "| defect | count | what was done |",
        "|---|---|---|",
        *defects,
        "| export exclusion: another | 1 | not trained (see report.json) |",
        "| export exclusion: over_length | 2 | not trained (see report.json) |",
        "| export change: a_change | 1 | changed in the exports only |",
        "| export change: role_inferred | 3 | changed in the exports only |",
        "| exact duplicate responses | 2 | reported (report.json) |",
        f"| exact duplicate conversations | 1 | {excluded} |",
        "| near duplicate responses (Jaccard >= 0.8) | 4 | reported (report.json) |",
        "| train/validation leakage | 5 | reported (report.json) |",
        "",
        'Most used openers of assistant turns: "opener 0" (10); "opener 1" (9); "opener 2" (8); "opener 3" (7); '
        '"opener 4" (6).',
        "",
        "## Checksums (sha256)",
        "",
        "| file | bytes | lines | sha256 |",
        "|---|---|---|---|",
        f"| `axolotl.yaml` | 55 | 12 | `{'e' * 64}` |",
        f"| `openai.train.jsonl` | 300 | 3 | `{'a' * 64}` |",
        f"| `openai.validation.jsonl` | 100 | 1 | `{'b' * 64}` |",
        f"| `sharegpt.train.jsonl` | 200 | 2 | `{'f' * 64}` |",
        f"| `sharegpt.validation.jsonl` | 90 | 1 | `{'9' * 64}` |",
        f"| `trl.train.jsonl` | 310 | 3 | `{'c' * 64}` |",
        f"| `trl.validation.jsonl` | 0 | 0 | `{'d' * 64}` |",
        "",
        "`manifest.json` lists these and `training.json`, `report.json` (which name their version) with every "
        "member's source sha256 and split.",
        "",
    ])


def test_the_card_states_every_figure_in_its_fixed_wording():
    assert card_mod.render_card(**card_inputs()) == expected_card()


def test_the_card_says_exact_duplicate_conversations_were_excluded_under_the_exclude_policy():
    got = card_mod.render_card(**card_inputs(exact_duplicates="exclude"))
    assert got == expected_card(exact_duplicates="exclude")
    assert "| exact duplicate conversations | 1 | excluded from the splits |" in got


def test_the_defect_table_words_every_known_defect_and_falls_back_for_others():
    rows = [line for line in card_mod.render_card(**card_inputs()).splitlines() if line.startswith("| ")]
    for code, wording in DEFECT_WORDING.items():
        assert any(r.startswith(f"| {code} | ") and r.endswith(f" | {wording} |") for r in rows), code
    assert "| zz_unlisted_code | 1 | warning recorded per conversation in report.json |" in rows


def test_a_card_without_exclusions_fallbacks_empty_cells_warnings_or_openers_leaves_those_lines_out():
    inputs = card_inputs()
    d = copy.deepcopy(inputs["dataset"])
    d["exclusions"]["by_reason"] = {}
    d["splits"]["fallbacks"] = []
    d["coverage"]["empty_cells"] = []
    d["coverage"]["warnings"] = []
    d["duplicates"]["top_openers"] = []
    got = card_mod.render_card(**{**inputs, "dataset": d})
    assert "Excluded from the splits: 0 conversation(s).\n\n## Policies" in got
    assert "(0.0833 as a share of a split).\n\n## Token statistics" in got
    assert "| q | a | t1 | 1 | 1 | 0 |\n\n## Known data defects" in got
    assert "| train/validation leakage | 5 | reported (report.json) |\n\n## Checksums" in got
    for absent in ("fallback:", "Empty cells", "is thin", "Most used openers"):
        assert absent not in got


def test_the_front_matter_loads_as_yaml_with_the_sizes_of_the_non_empty_split_files():
    text = card_mod.render_card(**card_inputs())
    assert text.startswith(EXPECTED_FRONT)
    doc = yaml.safe_load(text.split("---\n", 2)[1])
    assert doc["pretty_name"] == "Café plans (v7)" and doc["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in doc["configs"]] == ["openai", "trl", "sharegpt"]
    assert [c.get("default") for c in doc["configs"]] == [True, None, None]


def test_a_format_without_lines_is_left_out_and_the_formats_after_it_are_still_declared():
    arts = {f"{fmt}_{s}": _art(f"{fmt}.{s}.jsonl", n, 10 * n, "0")
            for fmt, counts in (("a", (2, 1)), ("b", (0, 0)), ("c", (3, 1))) for s, n in zip(("train", "validation"), counts)}
    doc = yaml.safe_load(card_mod.front_matter(pretty_name="x", formats=("a", "b", "c"), artifacts=arts,
                                               conversations=4).split("---\n", 2)[1])
    assert [c["config_name"] for c in doc["configs"]] == ["a", "c"]
    assert [i["config_name"] for i in doc["dataset_info"]] == ["a", "c"]
    assert doc["dataset_info"][1] == {"config_name": "c", "splits": [{"name": "train", "num_bytes": 30, "num_examples": 3},
                                                                     {"name": "validation", "num_bytes": 10,
                                                                      "num_examples": 1}],
                                      "download_size": 40, "dataset_size": 40}


def test_a_split_of_one_line_is_declared_and_an_empty_one_is_not():
    arts = {"a_train": _art("a.train.jsonl", 1, 5, "1"), "a_validation": _art("a.validation.jsonl", 0, 0, "2"),
            "b_train": _art("b.train.jsonl", 1, 9, "3"), "b_validation": _art("b.validation.jsonl", 1, 8, "4")}
    text = card_mod.front_matter(pretty_name="x", formats=("a", "b"), artifacts=arts, conversations=1000)
    doc = yaml.safe_load(text.split("---\n", 2)[1])
    assert doc["size_categories"] == ["1K<n<10K"]
    assert doc["configs"] == [
        {"config_name": "a", "default": True, "data_files": [{"split": "train", "path": "a.train.jsonl"}]},
        {"config_name": "b", "data_files": [{"split": "train", "path": "b.train.jsonl"},
                                            {"split": "validation", "path": "b.validation.jsonl"}]}]
    assert doc["dataset_info"] == [
        {"config_name": "a", "splits": [{"name": "train", "num_bytes": 5, "num_examples": 1}],
         "download_size": 5, "dataset_size": 5},
        {"config_name": "b", "splits": [{"name": "train", "num_bytes": 9, "num_examples": 1},
                                        {"name": "validation", "num_bytes": 8, "num_examples": 1}],
         "download_size": 17, "dataset_size": 17}]


# ---------------------------------------------------------------------------- splits


def test_the_split_result_of_a_worked_example_with_a_stratum_exactly_one_over_f():
    # f = 1/4: stratum A holds 4 = 1/f conversations (not "small"), B 3 and C 1 (small)
    a = SplitAssigner(0.25, "s")
    order = [("a1", "A"), ("a2", "A"), ("b1", "B"), ("a3", "A"), ("c1", "C"), ("b2", "B"), ("a4", "A"), ("b3", "B")]
    assert [a.assign(c, s) for c, s in order] == ["train", "validation", "train", "train", "train", "validation",
                                                  "train", "train"]
    assert a.total == 8 and a.validation == 2
    assert a.result() == {
        "method": METHOD, "seed": "s", "validation_fraction": 0.25,
        "stratify_by": "emotional_arc_key x training_topic_key",
        "conversations": {"train": 6, "validation": 2},
        "file_validation_deviation": 0.0,
        "stated_bound": "in every stratum |validation - 0.25 x size| < 1 conversation",
        "largest_stratum_count_deviation": 0.25, "largest_stratum_share_deviation": 0.125, "within_bound": True,
        "strata": {  # shares: A 4/8 of the file, 3/6 of train, 1/2 of validation; B 3/8, 2/6, 1/2; C 1/8, 1/6, 0/2
            "A": {"conversations": 4, "train": 3, "validation": 1, "expected_validation": 1.0,
                  "count_deviation": 0.0, "share_deviation": 0.0},
            "B": {"conversations": 3, "train": 2, "validation": 1, "expected_validation": 0.75,
                  "count_deviation": 0.25, "share_deviation": 0.125},
            "C": {"conversations": 1, "train": 1, "validation": 0, "expected_validation": 0.25,
                  "count_deviation": 0.25, "share_deviation": 0.125}},
        "fallbacks": ["2 of 3 strata hold fewer than 1/0.25 = 4 conversations: they cannot hold their validation "
                      "share exactly, so the validation size is balanced across the file (the file's deficit) while "
                      "each stratum stays within one conversation of its share"]}


def test_split_figures_are_rounded_to_four_places():
    a = SplitAssigner(0.3, "s")
    got = [a.assign(f"x{i}", "ABCD"[i % 4]) for i in range(10)]
    assert got == ["train", "train", "validation", "train", "validation", "train", "train", "train", "train",
                   "validation"]
    r = a.result()
    # C: 2 of 10 in the file, 1 of 7 in train, 1 of 3 in validation: max(|1/7 - 1/5|, |1/3 - 1/5|) = 0.1333...
    assert r["strata"]["C"] == {"conversations": 2, "train": 1, "validation": 1, "expected_validation": 0.6,
                                "count_deviation": 0.4, "share_deviation": 0.1333}
    assert r["strata"]["A"]["share_deviation"] == 0.0333 and r["strata"]["A"]["expected_validation"] == 0.9
    assert r["strata"]["D"] == {"conversations": 2, "train": 2, "validation": 0, "expected_validation": 0.6,
                                "count_deviation": 0.6, "share_deviation": 0.2}
    assert (r["largest_stratum_count_deviation"], r["largest_stratum_share_deviation"]) == (0.6, 0.2)
    assert r["fallbacks"] == ["4 of 4 strata hold fewer than 1/0.3 = 3.33333 conversations: they cannot hold their "
                              "validation share exactly, so the validation size is balanced across the file (the "
                              "file's deficit) while each stratum stays within one conversation of its share"]


def test_a_share_deviation_can_come_from_the_train_side():
    # f = 1/2 over A A B: a1 trains, a2 and b1 go to validation. A is 2/3 of the file, 1/1 of train and 1/2 of
    # validation: its share deviation is |1 - 2/3| = 1/3 (train), not |1/2 - 2/3| = 1/6 (validation)
    a = SplitAssigner(0.5, "s")
    assert [a.assign(c, s) for c, s in (("c0", "A"), ("c1", "A"), ("c2", "B"))] == ["train", "validation",
                                                                                   "validation"]
    r = a.result()
    assert r["strata"]["A"] == {"conversations": 2, "train": 1, "validation": 1, "expected_validation": 1.0,
                                "count_deviation": 0.0, "share_deviation": 0.3333}
    assert r["strata"]["B"] == {"conversations": 1, "train": 0, "validation": 1, "expected_validation": 0.5,
                                "count_deviation": 0.5, "share_deviation": 0.3333}
    assert r["largest_stratum_share_deviation"] == 0.3333 and r["file_validation_deviation"] == 0.5


def test_only_train_shares_count_when_nothing_went_to_validation():
    a = SplitAssigner(0.1, "s")
    a.assign("c0", "A")
    a.assign("c1", "B")
    a.assign("c2", "B")
    r = a.result()
    assert r["conversations"] == {"train": 3, "validation": 0}
    assert r["strata"]["A"]["share_deviation"] == 0.0 and r["strata"]["B"]["share_deviation"] == 0.0
    assert r["strata"]["B"]["count_deviation"] == 0.2 and r["strata"]["B"]["expected_validation"] == 0.2
    assert r["largest_stratum_count_deviation"] == 0.2 and r["file_validation_deviation"] == 0.3
    assert r["within_bound"] is True
    assert r["fallbacks"] == [
        "no validation split: 3 conversation(s) x 0.1 gives no validation conversation; every conversation trains",
        "2 of 2 strata hold fewer than 1/0.1 = 10 conversations: they cannot hold their validation share exactly, "
        "so the validation size is balanced across the file (the file's deficit) while each stratum stays within "
        "one conversation of its share"]


def test_an_empty_file_has_no_strata_and_only_the_no_validation_fallback():
    r = SplitAssigner(0.1, "s").result()
    assert r["conversations"] == {"train": 0, "validation": 0} and r["strata"] == {}
    assert r["largest_stratum_count_deviation"] == 0.0 and r["largest_stratum_share_deviation"] == 0.0
    assert r["file_validation_deviation"] == 0.0 and r["within_bound"] is True
    assert r["fallbacks"] == ["no validation split: 0 conversation(s) x 0.1 gives no validation conversation; "
                              "every conversation trains"]
    off = SplitAssigner(0.0, "s")
    off.assign("c", "A")
    assert off.result()["fallbacks"] == [] and off.result()["strata"]["A"]["expected_validation"] == 0.0


def test_a_fraction_of_exactly_zero_is_allowed_and_one_just_below_one_sends_all_but_the_first_to_validation():
    assert SplitAssigner(0.0, "s").fraction == 0.0
    a = SplitAssigner(0.99, "s")  # from the 2nd on, g = 0.99*(N+1) - V >= 1 and d > 0: validation forced
    assert [a.assign(f"c{i}", "A") for i in range(4)] == ["train", "validation", "validation", "validation"]


def test_the_file_deficit_forces_validation_once_a_whole_conversation_is_owed():
    # f = 1/2, one stratum: the 2nd conversation has d = 1/2*2 - 0 = 1 and g = 1: validation whatever its hash;
    # after that the hash decides only inside the bound
    for seed in ("a", "b", "c", "d", "e"):
        a = SplitAssigner(0.5, seed)
        got = [a.assign(f"c{i}", "A") for i in range(6)]
        assert got[:2] == ["train", "validation"], seed
        for k in range(1, 7):  # in every prefix the validation count stays within one of half the prefix
            assert abs(got[:k].count("validation") - k / 2) < 1, (seed, k)


def test_the_file_deficit_forces_train_when_the_file_is_ahead():
    # f = 1/2, strata A and B: a1 trains (first), a2 validation (forced: d = g = 1). b1 then has d = 1/2 and
    # g = 1/2*3 - 1 = 1/2: the hash decides; whichever way, the file stays within one of half its size.
    for seed in map(str, range(20)):
        a = SplitAssigner(0.5, seed)
        got = [a.assign(c, s) for c, s in (("a1", "A"), ("a2", "A"), ("b1", "B"), ("b2", "B"), ("b3", "B"))]
        assert got[:2] == ["train", "validation"]
        # b2: if b1 went to validation, V = 2 and g = 1/2*4 - 2 = 0 <= 0 with d = 1 - 1 = 0 < 1: train forced
        if got[2] == "validation":
            assert got[3] == "train", seed
        else:  # V = 1, g = 1, d = 1: validation forced
            assert got[3] == "validation", seed


# ---------------------------------------------------------------------------- coverage


def test_the_coverage_section_in_full():
    c = CoverageCounter(minimum_per_cell=1)
    c.add("validation", None, "a", None, [(2, 0.49), (12, None), (3, 4.0)], [0, 255, 256, 1000])
    c.add("train", "p", "a", "t", [(1, 0.5)], [511, 512])
    c.add("validation", None, "a", None, [(2, 0.3)], [])
    r = c.result()
    assert r == {
        "dimensions": {"persona": ["p", "unknown"], "arc": ["a"], "topic": ["t", "unknown"]},
        "cells": 4, "filled_cells": 2, "empty_cells": ["p x a x unknown", "unknown x a x t"],
        "table": [{"persona": "p", "arc": "a", "topic": "t", "conversations": 1, "train": 1, "validation": 0},
                  {"persona": "p", "arc": "a", "topic": "unknown", "conversations": 0, "train": 0, "validation": 0},
                  {"persona": "unknown", "arc": "a", "topic": "t", "conversations": 0, "train": 0, "validation": 0},
                  {"persona": "unknown", "arc": "a", "topic": "unknown", "conversations": 2, "train": 0,
                   "validation": 2}],
        "minimum_per_cell": 1,
        "warnings": [
            {"code": "coverage_below_minimum", "cell": "p x a x unknown", "conversations": 0, "minimum": 1,
             "message": "p x a x unknown has 0 conversation(s), below the file's minimum of 1"},
            {"code": "coverage_below_minimum", "cell": "unknown x a x t", "conversations": 0, "minimum": 1,
             "message": "unknown x a x t has 0 conversation(s), below the file's minimum of 1"}],
        "histograms": {
            "turn_depth": {"train": {"1": 1}, "validation": {"2": 2, "3": 1, "12": 1}},
            "quality_score": {"train": {"0.5-1": 1}, "validation": {"0-0.5": 2, "4-4.5": 1}},
            "tokens_per_example": {"train": {"256-512": 1, "512-768": 1},
                                   "validation": {"0-256": 2, "256-512": 1, "768-1024": 1}}},
        "histogram_notes": {
            "turn_depth": "turn_number of each assistant target (v4 pairs)",
            "quality_score": "training_metadata.quality_score of each target, bins of 0.5",
            "tokens_per_example": "total tokens of each openai example in the target model's template, bins of 256"},
    }


def test_an_empty_coverage_is_empty_and_a_minimum_of_zero_warns_of_nothing():
    r = CoverageCounter(0).result()
    assert (r["cells"], r["filled_cells"], r["empty_cells"], r["table"], r["warnings"]) == (0, 0, [], [], [])
    assert r["histograms"]["turn_depth"] == {"train": {}, "validation": {}}
    c = CoverageCounter(0)
    c.add("train", "p", "a", "t", [], [])
    c.add("train", "q", "b", "u", [], [])
    assert c.result()["warnings"] == [] and c.result()["minimum_per_cell"] == 0


# ---------------------------------------------------------------------------- duplicates


VOCAB = ["plan", "save", "budget", "fund", "retire", "invest", "debt", "goal", "rate", "tax", "income", "house",
         "loan", "card", "roth", "match"]


def long_text(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(VOCAB) + str(rng.randrange(50)) for _ in range(n))


def one_word_changed(text: str) -> str:
    ws = text.split(" ")
    ws[len(ws) // 2] = "notably"
    return " ".join(ws)


def test_the_report_names_its_method_and_fixed_settings():
    r = DuplicateFinder().result()
    assert r["library"] == {"name": "rensa", "licence": "MIT", "method": "MinHash (RMinHash) + LSH (RMinHashLSH)",
                            "num_perm": 128, "num_bands": 16, "seed": 1, "shingles": "word 5-grams of the normalised text",
                            "threshold": 0.8,
                            "similarity": "MinHash estimate of the Jaccard similarity of the shingle sets"}
    assert r["normalisation"] == 'literal \\n \\t \\" read as characters, NFKC, casefold, whitespace collapsed'
    assert (r["opener_words"], r["phrase_words"], r["phrase_counting"]) == (5, 6, "exact")
    assert r["assistant_responses"] == 0 and r["leakage"] == {"count": 0, "listed": []}
    assert r["exact_responses"] == {"groups": 0, "duplicate_responses": 0, "cross_split_groups": 0, "listed": []}
    assert r["exact_conversations"] == {"groups": 0, "duplicate_conversations": 0, "listed": []}
    assert r["near_responses"] == {"threshold": 0.8, "pairs": 0, "cross_split_pairs": 0, "same_conversation_pairs": 0,
                                   "listed": []}
    assert r["top_openers"] == [] and r["top_phrases"] == []


def test_normalise_reads_a_literal_tab_and_collapses_it():
    assert normalise("a\\tb\tc") == "a b c"
    assert normalise("") == ""


def test_every_pair_is_counted_but_fifty_of_each_kind_are_listed():
    d = DuplicateFinder()
    for i in range(52):
        base = long_text(150, 1000 + i)
        d.add(f"x{i:02d}", "train", [(1, f"exact answer number {i}"), (2, base)], f"conversation {i}")
        d.add(f"y{i:02d}", "validation", [(1, f"Exact  answer number {i}"), (2, one_word_changed(base))],
              f"Conversation {i}")
    r = d.result()
    assert r["assistant_responses"] == 208
    ex = r["exact_responses"]
    assert (ex["groups"], ex["duplicate_responses"], ex["cross_split_groups"], len(ex["listed"])) == (52, 52, 52, 50)
    assert [g["responses"][0]["conversation_id"] for g in ex["listed"]] == [f"x{i:02d}" for i in range(50)]
    conv = r["exact_conversations"]
    assert (conv["groups"], conv["duplicate_conversations"], len(conv["listed"])) == (52, 52, 50)
    assert conv["listed"][49] == [{"conversation_id": "x49", "split": "train"},
                                  {"conversation_id": "y49", "split": "validation"}]
    near = r["near_responses"]
    assert (near["pairs"], near["cross_split_pairs"], near["same_conversation_pairs"], len(near["listed"])) == (
        52, 52, 0, 50)
    assert near["listed"][0]["a"] == {"conversation_id": "x00", "turn_number": 2, "split": "train"}
    assert near["listed"][0]["b"] == {"conversation_id": "y00", "turn_number": 2, "split": "validation"}
    assert r["leakage"]["count"] == 52 * 3 and len(r["leakage"]["listed"]) == 50
    assert [leak["kind"] for leak in r["leakage"]["listed"]] == ["exact_conversation"] * 50


def test_conversation_copies_are_listed_by_the_id_of_their_first_copy():
    d = DuplicateFinder()
    for cid, text in (("z1", "zed"), ("b1", "bee"), ("z2", "ZED"), ("b2", "Bee"), ("b3", "bee ")):
        d.add(cid, "train", [], text)
    conv = d.result()["exact_conversations"]
    assert conv["listed"] == [[{"conversation_id": c, "split": "train"} for c in ("b1", "b2", "b3")],
                              [{"conversation_id": c, "split": "train"} for c in ("z1", "z2")]]
    assert (conv["groups"], conv["duplicate_conversations"]) == (2, 3)
    assert d.first_copy_of("BEE") == "b1" and d.first_copy_of("zed") == "z1"


def test_exact_response_groups_are_in_file_order_and_count_their_copies():
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "second text"), (2, "first text")], "a")
    d.add("c2", "train", [(4, "First text"), (5, "second TEXT"), (6, "first text")], "b")
    ex = d.result()["exact_responses"]
    assert [(g["copies"], g["cross_split"], [(x["conversation_id"], x["turn_number"]) for x in g["responses"]])
            for g in ex["listed"]] == [(2, False, [("c1", 1), ("c2", 5)]),
                                       (3, False, [("c1", 2), ("c2", 4), ("c2", 6)])]
    assert (ex["groups"], ex["duplicate_responses"], ex["cross_split_groups"]) == (2, 3, 0)


def test_a_near_copy_inside_one_conversation_and_split_is_no_leakage():
    base = long_text(100, 77)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, base), (3, one_word_changed(base))], "c1")
    r = d.result()
    near = r["near_responses"]
    assert (near["pairs"], near["cross_split_pairs"], near["same_conversation_pairs"]) == (1, 0, 1)
    pair = near["listed"][0]
    assert pair["same_conversation"] is True and pair["cross_split"] is False
    assert (pair["a"]["turn_number"], pair["b"]["turn_number"]) == (1, 3)
    assert r["leakage"] == {"count": 0, "listed": []}


def test_short_responses_are_compared_by_their_words():
    # fewer than five words: the shingles are the words, so punctuation alone makes a near (not exact) copy
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "Save more money")], "one")
    d.add("c2", "validation", [(1, "save more, money!")], "two")
    d.add("c3", "train", [(1, "spend it all now")], "three")
    r = d.result()
    assert r["exact_responses"]["groups"] == 0
    assert [(p["a"]["conversation_id"], p["b"]["conversation_id"], p["similarity"])
            for p in r["near_responses"]["listed"]] == [("c1", "c2", 1.0)]
    assert r["leakage"]["listed"] == [{"kind": "near_response", **r["near_responses"]["listed"][0]}]


def test_an_exact_copy_is_not_also_listed_as_near_and_a_later_near_copy_pairs_with_the_first():
    base = long_text(100, 3)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, base)], "1")
    d.add("c2", "train", [(1, base)], "2")
    d.add("c3", "train", [(1, one_word_changed(base))], "3")
    near = d.result()["near_responses"]["listed"]
    assert [(p["a"]["conversation_id"], p["b"]["conversation_id"]) for p in near] == [("c1", "c3")]
    assert 0.8 <= near[0]["similarity"] < 1 and near[0]["similarity"] == round(near[0]["similarity"], 4)


def test_responses_without_words_have_no_opener():
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "!!!"), (2, "")], "1")
    d.add("c2", "train", [(1, "?"), (2, "  ")], "2")
    r = d.result()
    assert r["top_openers"] == [] and r["top_phrases"] == []


def test_openers_are_the_first_five_words_and_counted_per_response():
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "One two three four five six"), (2, "one two three four five seven")], "1")
    d.add("c2", "train", [(1, "one two three four")], "2")
    d.add("c3", "train", [(1, "One two three four")], "3")
    assert d.result()["top_openers"] == [{"opener": "one two three four", "count": 2},
                                         {"opener": "one two three four five", "count": 2}]


def test_phrases_rank_by_responses_then_text_and_only_the_top_ten_are_kept():
    d = DuplicateFinder()
    ws = [f"w{i:02d}" for i in range(17)]  # 12 six-word phrases
    d.add("c1", "train", [(1, " ".join(ws))], "1")
    d.add("c2", "train", [(1, " ".join(ws))], "2")
    d.add("c3", "train", [(1, " ".join(ws[5:]))], "3")  # the last 7 phrases a third time
    tops = d.result()["top_phrases"]
    thrice = [" ".join(ws[k:k + 6]) for k in range(5, 12)]
    twice = [" ".join(ws[k:k + 6]) for k in range(0, 5)]
    assert tops == [{"phrase": p, "responses": 3} for p in thrice] + [{"phrase": p, "responses": 2}
                                                                      for p in twice[:3]]


def test_phrase_counting_stays_exact_at_its_bound_and_turns_lossy_just_past_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dup_mod, "_PHRASE_KEYS_MAX", 10)
    ten = " ".join(f"a{i}" for i in range(15))  # 15 words: exactly 10 six-word phrases
    d = DuplicateFinder()
    d.add("c1", "train", [(1, ten)], "1")
    d.add("c2", "train", [(1, ten)], "2")
    r = d.result()
    assert r["phrase_counting"] == "exact" and len(r["top_phrases"]) == 10
    lossy = DuplicateFinder()
    lossy.add("c1", "train", [(1, ten + " a15")], "1")  # 11 phrases, each seen once: all dropped
    lossy.add("c2", "train", [(1, "b0 b1 b2 b3 b4 b5")], "2")
    lossy.add("c3", "train", [(1, "b0 b1 b2 b3 b4 b5")], "3")
    r = lossy.result()
    assert r["phrase_counting"] == "lossy: phrases seen once were dropped 1 time(s)"
    assert r["top_phrases"] == [{"phrase": "b0 b1 b2 b3 b4 b5", "responses": 2}]


def test_pruning_keeps_the_phrases_seen_twice(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dup_mod, "_PHRASE_KEYS_MAX", 3)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "k0 k1 k2 k3 k4 k5")], "1")
    d.add("c2", "train", [(1, "k0 k1 k2 k3 k4 k5")], "2")
    d.add("c3", "train", [(1, "m0 m1 m2 m3 m4 m5 m6 m7 m8")], "3")  # 4 more keys: 5 > 3, pruned to the one seen twice
    d.add("c4", "train", [(1, "k0 k1 k2 k3 k4 k5")], "4")
    r = d.result()
    assert r["top_phrases"] == [{"phrase": "k0 k1 k2 k3 k4 k5", "responses": 3}]
    assert r["phrase_counting"] == "lossy: phrases seen once were dropped 1 time(s)"


def test_phrase_counting_is_exact_up_to_its_bound_of_half_a_million_phrases():
    text = " ".join(f"w{i}" for i in range(500_005))  # exactly 500,000 six-word phrases
    at = DuplicateFinder()
    at.add("c1", "train", [(1, text)], "x")
    assert at.result()["phrase_counting"] == "exact"
    past = DuplicateFinder()
    past.add("c1", "train", [(1, text + " w")], "x")
    assert past.result()["phrase_counting"] == "lossy: phrases seen once were dropped 1 time(s)"


# ---------------------------------------------------------------------------- the version diff


def _member(cid: str, sha: str = "a", split: str | None = "train", excluded: str | None = None) -> dict[str, Any]:
    return {"conversation_id": cid, "source_file": f"src/{cid}.json", "source_sha256": sha * 64, "split": split,
            **({"excluded": excluded} if excluded else {})}


def _manifest(version: int, members: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"file": {"id": "f", "version": version}, "members": members, **extra}


def test_an_exclusion_lifted_is_named_from_its_reason_to_none():
    old = _manifest(1, [_member("c1", excluded="exact_duplicate_conversation"), _member("c2")])
    new = _manifest(2, [_member("c1"), _member("c2")])
    c = version_diff(old, new)["conversations"]
    assert c["exclusion_changed"] == [{"conversation_id": "c1", "from": "exact_duplicate_conversation", "to": None}]
    assert c["counts"]["exclusion_changed"] == 1 and c["counts"]["unchanged"] == 1
    assert c["split_changed"] == [] and c["source_changed"] == []


def test_a_split_given_up_is_named_from_its_split_to_none():
    old = _manifest(1, [_member("c1", split="validation")])
    new = _manifest(2, [_member("c1", split=None)])
    assert version_diff(old, new)["conversations"]["split_changed"] == [
        {"conversation_id": "c1", "from": "validation", "to": None}]


def test_a_removed_conversation_keeps_its_split_and_exclusion():
    old = _manifest(1, [_member("c1"), _member("c2", split="validation", excluded="x"), _member("c3")])
    new = _manifest(2, [_member("c3")])
    c = version_diff(old, new)["conversations"]
    assert c["removed"] == [{"conversation_id": "c1", "split": "train", "excluded": None},
                            {"conversation_id": "c2", "split": "validation", "excluded": "x"}]
    assert c["counts"] == {"from": 3, "to": 1, "added": 0, "removed": 2, "source_changed": 0, "split_changed": 0,
                           "exclusion_changed": 0, "unchanged": 1}


def test_a_changed_checksum_at_the_same_path_names_no_old_path():
    old = _manifest(1, [_member("c1", sha="a")])
    new = _manifest(2, [_member("c1", sha="b")])
    assert version_diff(old, new)["conversations"]["source_changed"] == [
        {"conversation_id": "c1", "source_file": "src/c1.json", "from_sha256": "a" * 64, "to_sha256": "b" * 64}]


def test_a_manifest_without_policy_or_model_sections_diffs_against_nothing():
    old = _manifest(1, [_member("c1")])
    new = _manifest(2, [_member("c1")], policy={"max_length": 10}, model={"id": "m"})
    d = version_diff(old, new)
    assert d["policy_changed"] == {"max_length": {"from": None, "to": 10}}
    assert d["model_changed"] == {"id": {"from": None, "to": "m"}}
    back = version_diff(new, old)
    assert back["policy_changed"] == {"max_length": {"from": 10, "to": None}}
    odd = _manifest(3, [_member("c1")], policy="not a mapping", model=["m"])
    assert version_diff(odd, new)["policy_changed"] == {"max_length": {"from": None, "to": 10}}
    assert version_diff(new, odd)["model_changed"] == {"id": {"from": "m", "to": None}}


def mv(a: Any, b: Any) -> dict[str, Any]:
    return {"from": a, "to": b, "change": None if a is None or b is None else b - a}


def _rich(version: int, k: int, *, dataset: bool = True) -> dict[str, Any]:
    """A manifest whose every figure differs by format, split and version (k: the version's offset)."""
    tokens = {}
    for i, fmt in enumerate(EXPORT_FORMATS):
        base = 1000 * (i + 1) + k
        tokens[fmt] = {"lines": base + 1, "trainable_tokens_per_epoch": base + 2, "training_tokens_per_epoch": base + 3,
                       "examples_over_max_length": base + 4, "trainable_tokens_excluded": base + 5,
                       "context_tokens_trimmed": base + 6,
                       "total_tokens": {"p50": base + 7, "p95": base + 8, "max": base + 9, "min": 0},
                       "trainable_tokens": {"p50": base + 10, "p95": base + 11, "max": base + 12}}
    doc: dict[str, Any] = {
        "file": {"id": "f", "version": version}, "members": [_member("c1")], "tokens": tokens,
        "exclusions": {"over_length": {"count": 1 + k, "trainable_tokens": 10 + k},
                       **({"only_old": {"count": 3, "trainable_tokens": 30}} if k == 0 else
                          {"only_new": {"count": 4, "trainable_tokens": 40}})},
        "changes": {"role_inferred": 5 + k, **({"gone": 2} if k == 0 else {"fresh": 6})},
    }
    if dataset:
        doc["dataset"] = {
            "splits": {"conversations": {"train": 20 + k, "validation": 2 + k},
                       "lines": {f: {"train": 100 * i + k, "validation": 100 * i + 50 + 2 * k}
                                 for i, f in enumerate(EXPORT_FORMATS)},
                       "trainable_tokens": {f: {"train": 7000 * (i + 1) + 3 * k, "validation": 700 * (i + 1) + 5 * k}
                                            for i, f in enumerate(EXPORT_FORMATS)},
                       "largest_stratum_count_deviation": 0.5 + k / 4},
            "duplicates": {"exact_responses": 1 + k, "exact_conversations": 2 + 2 * k, "near_response_pairs": 3 + 3 * k,
                           "leakage": 4 + 4 * k},
            "coverage": {"cells": {"p x a x t": 2 + k}, "empty_cells": ["q x a x t"] * (1 + k)},
            "exclusions": {"by_reason": {"exact_duplicate_conversation": 1 + k,
                                         **({"old_reason": 1} if k == 0 else {"new_reason": 2})}},
            "warnings": ["split_fallback"] if k == 0 else ["split_leakage"],
        }
    return doc


def test_the_diff_of_two_versions_moves_every_figure_by_format_and_split():
    old, new = _rich(1, 0), _rich(2, 1)
    d = version_diff(old, new)
    tokens = {}
    for i, fmt in enumerate(EXPORT_FORMATS):
        a, b = 1000 * (i + 1), 1000 * (i + 1) + 1
        tokens[fmt] = {name: mv(a + j, b + j) for j, name in enumerate(
            ("lines", "trainable_tokens_per_epoch", "training_tokens_per_epoch", "examples_over_max_length",
             "trainable_tokens_excluded", "context_tokens_trimmed"), start=1)}
        tokens[fmt]["total_tokens"] = {"p50": mv(a + 7, b + 7), "p95": mv(a + 8, b + 8), "max": mv(a + 9, b + 9)}
        tokens[fmt]["trainable_tokens"] = {"p50": mv(a + 10, b + 10), "p95": mv(a + 11, b + 11),
                                           "max": mv(a + 12, b + 12)}
    assert d["tokens"] == tokens
    assert d["exclusions"] == {"only_new": {"count": mv(None, 4), "trainable_tokens": mv(None, 40)},
                               "only_old": {"count": mv(3, None), "trainable_tokens": mv(30, None)},
                               "over_length": {"count": mv(1, 2), "trainable_tokens": mv(10, 11)}}
    assert list(d["exclusions"]) == ["only_new", "only_old", "over_length"]
    assert d["changes"] == {"fresh": mv(None, 6), "gone": mv(2, None), "role_inferred": mv(5, 6)}
    assert list(d["changes"]) == ["fresh", "gone", "role_inferred"]
    assert d["conversation_exclusions"] == {"exact_duplicate_conversation": mv(1, 2), "new_reason": mv(None, 2),
                                            "old_reason": mv(1, None)}
    assert list(d["conversation_exclusions"]) == ["exact_duplicate_conversation", "new_reason", "old_reason"]
    assert d["splits"] == {
        "conversations": {"train": mv(20, 21), "validation": mv(2, 3)},
        "lines": {f: {"train": mv(100 * i, 100 * i + 1), "validation": mv(100 * i + 50, 100 * i + 52)}
                  for i, f in enumerate(EXPORT_FORMATS)},
        "trainable_tokens": {f: {"train": mv(7000 * (i + 1), 7000 * (i + 1) + 3),
                                 "validation": mv(700 * (i + 1), 700 * (i + 1) + 5)} for i, f in enumerate(EXPORT_FORMATS)},
        "largest_stratum_count_deviation": mv(0.5, 0.75)}
    assert d["duplicates"] == {"exact_responses": mv(1, 2), "exact_conversations": mv(2, 4),
                               "near_response_pairs": mv(3, 6), "leakage": mv(4, 8)}
    assert d["coverage"] == {"changed_cells": [{"cell": "p x a x t", **mv(2, 3)}], "filled": [], "emptied": [],
                             "empty_cells": mv(1, 2)}
    assert d["warnings"] == {"added": ["split_leakage"], "resolved": ["split_fallback"]}
    assert d["notes"] == [] and (d["from_version"], d["to_version"]) == (1, 2)


def test_a_diff_against_a_version_without_dataset_quality_claims_no_cell_moved():
    old, new = _rich(1, 0, dataset=False), _rich(2, 1)
    d = version_diff(old, new)
    assert d["notes"] == ["the first version was published before dataset quality existed: its splits, duplicates "
                          "and coverage are unknown (regenerate the file to have them)"]
    assert d["coverage"] == {"changed_cells": [], "filled": [], "emptied": [], "empty_cells": mv(None, 2)}
    assert d["splits"]["trainable_tokens"]["openai"]["validation"] == mv(None, 705)
    assert d["splits"]["largest_stratum_count_deviation"] == mv(None, 0.75)
    assert d["conversation_exclusions"] == {"exact_duplicate_conversation": mv(None, 2), "new_reason": mv(None, 2)}
    assert d["warnings"] == {"added": ["split_leakage"], "resolved": []}
    back = version_diff(new, old)
    assert back["notes"] == ["the second version was published before dataset quality existed: its splits, "
                             "duplicates and coverage are unknown (regenerate the file to have them)"]
    assert back["coverage"] == {"changed_cells": [], "filled": [], "emptied": [], "empty_cells": mv(2, None)}
    assert back["conversation_exclusions"] == {"exact_duplicate_conversation": mv(2, None), "new_reason": mv(2, None)}


def test_the_default_labels_name_the_first_and_second_version():
    with pytest.raises(ManifestInvalid, match=r"^the first version: members is not a list$"):
        version_diff({"file": {}}, _rich(2, 1))
    with pytest.raises(ManifestInvalid, match=r"^the second version: the manifest is not a JSON object$"):
        version_diff(_rich(1, 0), None)  # type: ignore[arg-type]


def test_coverage_cells_listed_on_one_side_only_count_zero_on_the_other():
    def with_cells(version: int, cells: Any) -> dict[str, Any]:
        doc = _rich(version, 0)
        doc["dataset"]["coverage"] = {"cells": cells, "empty_cells": []}
        return doc

    d = version_diff(with_cells(1, {"a": 2, "b": 1, "e": 0}), with_cells(2, {"b": 1, "c": 3, "d": 0}))["coverage"]
    assert d["changed_cells"] == [{"cell": "a", **mv(2, 0)}, {"cell": "c", **mv(0, 3)}]
    assert (d["filled"], d["emptied"]) == (["c"], ["a"])
    assert d["empty_cells"] == mv(0, 0)
    odd = version_diff(with_cells(1, ["a"]), with_cells(2, {"a": 1}))["coverage"]  # cells not a mapping: none
    assert odd["changed_cells"] == [{"cell": "a", **mv(0, 1)}] and odd["filled"] == ["a"]
    odd = version_diff(with_cells(1, {"a": 1}), with_cells(2, "a"))["coverage"]
    assert odd["changed_cells"] == [{"cell": "a", **mv(1, 0)}] and odd["emptied"] == ["a"]


@pytest.mark.parametrize(("a", "b", "change"), [(0, 0.0000004, 0.0), (0, 0.0000006, 0.000001), (1.5, 2.25, 0.75)])
def test_a_change_is_rounded_to_six_places(a: float, b: float, change: float):
    assert moved(a, b)["change"] == change


def test_five_words_make_one_shingle_and_fewer_are_compared_word_by_word():
    # four words in another order are the same set of words: a near copy (similarity 1.0); five words in
    # another order are another 5-gram: nothing in common
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "save more money now"), (2, "save more money now please")], "1")
    d.add("c2", "train", [(1, "now money more save"), (2, "please now money more save")], "2")
    near = d.result()["near_responses"]["listed"]
    assert [((p["a"]["conversation_id"], p["a"]["turn_number"]), (p["b"]["conversation_id"], p["b"]["turn_number"]),
             p["similarity"]) for p in near] == [(("c1", 1), ("c2", 1), 1.0)]


def test_the_leakage_entries_name_what_crossed_the_split():
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "same reply")], "same conversation")
    d.add("c2", "validation", [(1, "same reply")], "same conversation")
    leaks = d.result()["leakage"]["listed"]
    assert leaks == [{"kind": "exact_conversation", "conversations": ["c1", "c2"]},
                     {"kind": "exact_response", "responses": [
                         {"conversation_id": "c1", "turn_number": 1, "split": "train"},
                         {"conversation_id": "c2", "turn_number": 1, "split": "validation"}]}]


def test_conversation_groups_are_ordered_by_their_first_copy_not_a_later_one():
    d = DuplicateFinder()
    for cid, text in (("m1", "em"), ("k1", "kay"), ("a9", "EM"), ("z9", "KAY")):
        d.add(cid, "train", [], text)
    assert [[e["conversation_id"] for e in g] for g in d.result()["exact_conversations"]["listed"]] == [
        ["k1", "z9"], ["m1", "a9"]]


def test_each_pruning_is_counted(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(dup_mod, "_PHRASE_KEYS_MAX", 3)
    d = DuplicateFinder()
    d.add("c1", "train", [(1, "a0 a1 a2 a3 a4 a5 a6 a7 a8")], "1")  # 4 phrases: pruned (to none)
    d.add("c2", "train", [(1, "b0 b1 b2 b3 b4 b5 b6 b7 b8")], "2")  # 4 more: pruned again
    assert d.result()["phrase_counting"] == "lossy: phrases seen once were dropped 2 time(s)"


def test_split_figures_of_a_fraction_with_five_decimals_are_rounded_to_four():
    a = SplitAssigner(0.12345, "s")
    a.assign("c0", "A")
    r = a.result()
    assert r["strata"]["A"]["expected_validation"] == 0.1235 and r["strata"]["A"]["count_deviation"] == 0.1235
    assert r["file_validation_deviation"] == 0.1235 and r["largest_stratum_count_deviation"] == 0.1235
