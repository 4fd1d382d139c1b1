"""Dataset quality of PUBLISHED versions (issue 12, "Must show"), on the 72-conversation corpus,
through the real service and pipeline (real PostgreSQL, local storage, the production state
machine in moto, tests/core/core_harness.py). Splits, duplicates and coverage are re-derived here
from the downloaded bytes and the corpus' own conversations.csv, never read back only from the builder.

    .venv/bin/pytest tests/quality -q -s -p no:cacheprovider     # -s prints the corpus figures
"""
from __future__ import annotations

import copy
import csv
import json
import sys
import uuid
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exports"))
from published_helpers import (Fixtures, Version, add_to_file, create_file, fetch_version,  # noqa: E402
                               import_folder, jsonl_records)

from core_harness import OWNER, Harness, harness  # noqa: E402
from lorafiles.domain.exports import EXPORT_FORMATS  # noqa: E402
from lorafiles.domain.quality import SplitAssigner, stratum_of  # noqa: E402
from lorafiles.domain.quality.duplicates import NEAR_THRESHOLD  # noqa: E402
from lorafiles.usecases.common import ARTIFACTS, SPLIT_ARTIFACTS  # noqa: E402

SPLITS = ("train", "validation")
_state: dict[Any, Any] = {}


@pytest.fixture(scope="module")
def hh(module_db_url: str, tmp_path_factory: pytest.TempPathFactory):
    with harness(module_db_url, tmp_path_factory.mktemp("quality")) as h:
        yield h
    _state.clear()


def _corpus(h: Harness, root: Path) -> Fixtures:
    if "corpus" not in _state:
        _state["corpus"] = import_folder(h, root / "corpus")
        with open(root / "corpus" / "conversations.csv", newline="") as f:
            _state["csv"] = {r["conversation_id"]: r for r in csv.DictReader(f)}
    return _state["corpus"]


def _strata() -> dict[str, str]:
    return {cid: stratum_of(r["emotional_arc_key"], r["training_topic_key"]) for cid, r in _state["csv"].items()}


@pytest.fixture
def corpus_file(hh: Harness, shared_fixtures: Path) -> tuple[Fixtures, Version]:
    """The whole corpus in one file, default policy (validation 10 %, seed `lorafiles`)."""
    fx = _corpus(hh, shared_fixtures)
    if "default" not in _state:
        job = create_file(hh, fx.ids, name=f"quality corpus {uuid.uuid4().hex[:8]}")
        _state["default"] = fetch_version(hh, str(job["file_id"]), 1)
    return fx, _state["default"]


def splits_of(v: Version) -> dict[str, str]:
    return {m["conversation_id"]: m["split"] for m in v.manifest["members"]}


def split_lines(v: Version, fmt: str, split: str) -> list[dict[str, Any]]:
    data = v.raw[SPLIT_ARTIFACTS[fmt][split]]
    return jsonl_records(data) if data else []


# ---------------------------------------------------------------------------- 1. splits

def test_the_split_is_disjoint_by_conversation_and_every_export_is_written_once_per_split(corpus_file):
    """Each member is in exactly one split; each split file of each format is exactly the lines of
    that split's conversations, in member order (so no conversation's turn or example is in both),
    and the manifest counts each split as the files hold it."""
    fx, v = corpus_file
    placed = splits_of(v)
    assert sorted(placed) == sorted(fx.ids) and set(placed.values()) <= set(SPLITS)
    counts = Counter(placed.values())
    assert counts["validation"] > 0 and counts["train"] > 0
    assert v.manifest["dataset"]["splits"]["conversations"] == {s: counts[s] for s in SPLITS}
    for fmt in EXPORT_FORMATS:
        per_member = v.member_slices(fmt)
        for split in SPLITS:
            expected = [line for cid, lines in per_member.items() if placed[cid] == split for line in lines]
            assert split_lines(v, fmt, split) == expected, (fmt, split)
            assert v.manifest["dataset"]["splits"]["lines"][fmt][split] == len(expected)
            assert v.manifest["artifacts"][SPLIT_ARTIFACTS[fmt][split]]["lines"] == len(expected)
        assert sum(len(split_lines(v, fmt, s)) for s in SPLITS) == len(v.lines[fmt])
    # no conversation's content is in both splits: the messages of the two splits' conversations differ
    seen = {s: {json.dumps(line, sort_keys=True) for line in split_lines(v, "openai", s)} for s in SPLITS}
    assert not seen["train"] & seen["validation"]


def test_the_assignment_is_the_stated_rule_and_every_stratum_is_within_the_bound(corpus_file):
    """Replaying the stated rule (`SplitAssigner`) over the members in file order, with the strata
    taken from the corpus' conversations.csv (not from the builder), gives the published splits; in
    every arc x topic stratum the validation count is within one conversation of 10 % of its size,
    and the reported largest deviation is the one recomputed here."""
    fx, v = corpus_file
    strata = _strata()
    replay = SplitAssigner(0.1, "lorafiles")
    members = [m["conversation_id"] for m in v.manifest["members"]]
    assert [replay.assign(c, strata[c]) for c in members] == [splits_of(v)[c] for c in members]
    size, val = Counter(strata[c] for c in members), Counter(strata[c] for c in members if splits_of(v)[c] == "validation")
    deviations = {s: abs(Fraction(val[s]) - Fraction(1, 10) * size[s]) for s in size}
    assert max(deviations.values()) < 1
    reported = v.report["dataset_quality"]["splits"]
    assert reported["largest_stratum_count_deviation"] == round(float(max(deviations.values())), 4)
    assert reported["within_bound"] is True
    assert {s: (r["conversations"], r["validation"]) for s, r in reported["strata"].items()} == \
        {s: (size[s], val[s]) for s in size}
    # 24 strata of 3: each smaller than 1/0.1, said so
    assert any("strata hold fewer than" in f for f in reported["fallbacks"])


def test_adding_ten_conversations_moves_none_of_the_old_ones(hh: Harness, shared_fixtures: Path):
    fx = _corpus(hh, shared_fixtures)
    old, new = fx.ids[:62], fx.ids[62:]
    job = create_file(hh, old, name=f"quality add {uuid.uuid4().hex[:8]}")
    file_id = str(job["file_id"])
    v1 = fetch_version(hh, file_id, 1)
    added = add_to_file(hh, file_id, new)
    assert added["status"] == "succeeded", added["error"]
    v2 = fetch_version(hh, file_id, 2)
    before, after = splits_of(v1), splits_of(v2)
    assert sorted(after) == sorted(fx.ids)
    assert {c: after[c] for c in old} == before
    strata = _strata()
    for s in set(strata.values()):
        n = [c for c in after if strata[c] == s]
        v = [c for c in n if after[c] == "validation"]
        assert abs(Fraction(len(v)) - Fraction(1, 10) * len(n)) < 1, s
    # and the old conversations' split lines are unchanged, byte for byte, at the head of each split file
    for fmt in EXPORT_FORMATS:
        for split in SPLITS:
            head = v1.raw[SPLIT_ARTIFACTS[fmt][split]]
            assert v2.raw[SPLIT_ARTIFACTS[fmt][split]].startswith(head), (fmt, split)


VERSION_MARKS = ("(v{n})", "— version {n}", "path/to/v{n}")


def _card_without_version(card: bytes, n: int) -> str:
    text = card.decode()
    for mark in VERSION_MARKS:
        assert mark.format(n=n) in text
        text = text.replace(mark.format(n=n), mark.format(n="N"))
    return text


def test_two_rebuilds_are_byte_identical(hh: Harness, corpus_file):
    """Regenerating twice from the same members: every split file is byte-identical to v1's, the
    dataset card differs only where it names its version, and the dataset sections of the report
    and manifest are equal."""
    fx, v1 = corpus_file
    rebuilt = []
    for _ in range(2):
        job = hh.service.jobs.start_regenerate(OWNER, v1.file_id)
        hh.machine.wait(job["execution_arn"], timeout=300)
        done = hh.service.reading.get_job(OWNER, str(job["id"]))
        assert done["status"] == "succeeded", done["error"]
        rebuilt.append(fetch_version(hh, v1.file_id, done["published_version"]))
    for v in rebuilt:
        for fmt in EXPORT_FORMATS:
            for split in SPLITS:
                name = SPLIT_ARTIFACTS[fmt][split]
                assert v.raw[name] == v1.raw[name], name
        assert _card_without_version(v.raw["card"], v.version) == _card_without_version(v1.raw["card"], 1)
        assert v.report["dataset_quality"] == v1.report["dataset_quality"]
        assert v.manifest["dataset"] == v1.manifest["dataset"]
        assert v.manifest["members"] == v1.manifest["members"]
    assert rebuilt[0].raw["card"] != v1.raw["card"]  # it does name its version


# ---------------------------------------------------------------------------- 4. the dataset card

def _front_matter(card: bytes) -> dict[str, Any]:
    text = card.decode()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


def test_the_card_declares_every_split_file_with_its_counts_and_checksums(corpus_file):
    fx, v = corpus_file
    meta = _front_matter(v.raw["card"])
    configs = {c["config_name"]: c for c in meta["configs"]}
    assert set(configs) == set(EXPORT_FORMATS)
    infos = {i["config_name"]: i for i in meta["dataset_info"]}
    for fmt in EXPORT_FORMATS:
        files = {d["split"]: d["path"] for d in configs[fmt]["data_files"]}
        assert files == {s: ARTIFACTS[SPLIT_ARTIFACTS[fmt][s]][0] for s in SPLITS}
        splits = {s["name"]: s for s in infos[fmt]["splits"]}
        for s in SPLITS:
            raw = v.raw[SPLIT_ARTIFACTS[fmt][s]]
            assert (splits[s]["num_examples"], splits[s]["num_bytes"]) == (raw.count(b"\n"), len(raw))
    text = v.raw["card"].decode()
    for fmt in EXPORT_FORMATS:
        for s in SPLITS:
            assert v.located[SPLIT_ARTIFACTS[fmt][s]]["sha256"] in text
    for heading in ("## Counts", "## Policies", "## Token statistics", "## Coverage", "## Known data defects",
                    "## Checksums"):
        assert heading in text
    assert "truncated_target" in text and "validation_fraction" in text


def test_load_dataset_loads_the_version_folder_through_its_cards_configs(corpus_file, tmp_path: Path):
    """`datasets.load_dataset(<version folder>, <config>)`: the splits are the card's, each with the
    card's `num_examples` (which `datasets` verifies) and exactly the split file's rows."""
    datasets = pytest.importorskip("datasets")
    fx, v = corpus_file
    folder = tmp_path / f"v{v.version}"
    folder.mkdir()
    for name, data in v.raw.items():
        (folder / ARTIFACTS[name][0]).write_bytes(data)
    meta = _front_matter(v.raw["card"])
    for fmt in EXPORT_FORMATS:
        ds = datasets.load_dataset(str(folder), fmt, cache_dir=str(tmp_path / "cache"))
        declared = {d["split"] for c in meta["configs"] if c["config_name"] == fmt for d in c["data_files"]}
        assert set(ds) == declared == set(SPLITS)
        for split in SPLITS:
            rows = split_lines(v, fmt, split)
            assert ds[split].num_rows == len(rows) > 0
            key = {"openai": "messages", "trl": "completion", "axolotl": "messages", "sharegpt": "conversations"}[fmt]
            got = [[{k: m[k] for k in ("role", "from", "content", "value") if m.get(k) is not None} for m in r[key]]
                   for r in ds[split]]
            want = [[{k: m[k] for k in ("role", "from", "content", "value") if m.get(k) is not None} for m in r[key]]
                    for r in rows]
            assert got == want, (fmt, split)


# ---------------------------------------------------------------------------- 2. duplicates

EXACT_IDS = [f"d0e0c0a0-0000-4000-8000-00000000000{i}" for i in range(1, 5)]
NEAR_IDS = [f"d0e0c0a0-0000-4000-8000-00000000001{i}" for i in range(1, 5)]


def _planted(root: Path, tmp: Path) -> tuple[list[Path], dict[str, str], dict[str, str]]:
    """Copies of 8 corpus files: 4 exact (only the conversation id changes) and 4 near (every
    target response edited by one word in the middle and one appended)."""
    originals = sorted((root / "corpus").glob("*.json"))[:8]
    paths, exact, near = [], {}, {}
    for i, path in enumerate(originals):
        doc = json.loads(path.read_bytes())
        source = doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_").lower()
        new_id = (EXACT_IDS + NEAR_IDS)[i]
        planted = copy.deepcopy(doc)
        planted["dataset_metadata"]["dataset_name"] = f"fp_conversation_{new_id}"
        if i >= 4:
            for pair in planted["training_pairs"]:
                if pair.get("target_response"):
                    w = pair["target_response"].split(" ")
                    w[len(w) // 2] = "notably"
                    pair["target_response"] = " ".join(w) + " Truly."
            near[new_id] = source
        else:
            exact[new_id] = source
        out = tmp / f"{new_id}.json"
        out.write_text(json.dumps(planted, ensure_ascii=False, indent=2))
        paths.append(out)
    return paths, exact, near


@pytest.fixture
def planted_file(hh: Harness, shared_fixtures: Path, tmp_path_factory):
    """The corpus plus the 8 planted copies, validation fraction 0.5 so that copies fall on both sides."""
    fx = _corpus(hh, shared_fixtures)
    if "planted" not in _state:
        paths, exact, near = _planted(shared_fixtures, tmp_path_factory.mktemp("planted"))
        ids = hh.import_paths(paths, batch_id=None)
        assert sorted(ids) == sorted(exact) + sorted(near) or set(ids) == set(exact) | set(near)
        out = {}
        for policy in ("report", "exclude"):
            job = create_file(hh, fx.ids + ids, name=f"planted {policy} {uuid.uuid4().hex[:8]}",
                              validation_fraction=0.5, exact_duplicates=policy)
            out[policy] = fetch_version(hh, str(job["file_id"]), 1)
        _state["planted"] = (out, exact, near)
    return _state["planted"]


def test_planted_exact_and_near_duplicates_are_found_and_cross_split_ones_are_leakage(planted_file):
    versions, exact, near = planted_file
    v = versions["report"]
    dq = v.report["dataset_quality"]["duplicates"]
    placed = splits_of(v)
    groups = [{c["conversation_id"] for c in g} for g in dq["exact_conversations"]["listed"]]
    for copy_id, source in exact.items():
        assert {copy_id, source} in groups
    near_pairs = {frozenset((p["a"]["conversation_id"], p["b"]["conversation_id"])): p
                  for p in dq["near_responses"]["listed"]}
    for copy_id, source in near.items():
        pair = near_pairs.get(frozenset((copy_id, source)))
        assert pair is not None, copy_id
        assert pair["similarity"] >= NEAR_THRESHOLD
        assert pair["cross_split"] == (placed[copy_id] != placed[source])
    # the near copies are not exact copies of their conversation
    assert not any(copy_id in g for g in groups for copy_id in near)
    leaks = dq["leakage"]["listed"]
    leaked_conversations = [set(l["conversations"]) for l in leaks if l["kind"] == "exact_conversation"]
    leaked_near = {frozenset((l["a"]["conversation_id"], l["b"]["conversation_id"]))
                   for l in leaks if l["kind"] == "near_response"}
    crossing = 0
    for copy_id, source in exact.items():
        crosses = placed[copy_id] != placed[source]
        crossing += crosses
        assert ({copy_id, source} in leaked_conversations) == crosses
    for copy_id, source in near.items():
        crosses = placed[copy_id] != placed[source]
        crossing += crosses
        assert (frozenset((copy_id, source)) in leaked_near) == crosses
    assert crossing >= 1, "the planted ids put no copy across the split: the leakage check would prove nothing"
    assert dq["leakage"]["count"] >= crossing
    assert any(w["code"] == "split_leakage" for w in v.report["dataset_quality"]["warnings"])
    assert v.manifest["dataset"]["duplicates"]["leakage"] == dq["leakage"]["count"]


def test_the_exclude_policy_takes_exact_copies_out_of_the_splits_and_counts_them(planted_file):
    versions, exact, near = planted_file
    v, kept = versions["exclude"], versions["report"]
    excluded = {m["conversation_id"]: m["excluded"] for m in v.manifest["members"] if "excluded" in m}
    assert excluded == {c: "exact_duplicate_conversation" for c in exact}
    assert v.manifest["dataset"]["exclusions"]["by_reason"] == {"exact_duplicate_conversation": len(exact)}
    for fmt in EXPORT_FORMATS:
        per_member = v.member_slices(fmt)
        removed = sum(len(per_member[c]) for c in exact)
        assert removed > 0
        assert sum(len(split_lines(v, fmt, s)) for s in SPLITS) == len(v.lines[fmt]) - removed
        assert v.lines[fmt] == kept.lines[fmt]  # the unsplit exports keep every member (issue 8)
    assert splits_of(v) == splits_of(kept)  # exclusion never moves a split
    assert "exact_duplicate_conversation: 4" in v.raw["card"].decode()


# ---------------------------------------------------------------------------- 3. coverage

def test_coverage_counts_every_persona_arc_topic_cell_and_names_the_empty_ones(corpus_file):
    fx, v = corpus_file
    cov = v.report["dataset_quality"]["coverage"]
    rows = _state["csv"].values()
    cells = Counter((r["persona_key"], r["emotional_arc_key"], r["training_topic_key"]) for r in rows)
    personas, arcs, topics = (sorted({c[i] for c in cells}) for i in range(3))
    assert cov["cells"] == len(personas) * len(arcs) * len(topics)
    assert {(r["persona"], r["arc"], r["topic"]): r["conversations"] for r in cov["table"] if r["conversations"]} \
        == dict(cells)
    empty = {f"{p} x {a} x {t}" for p in personas for a in arcs for t in topics if (p, a, t) not in cells}
    assert set(cov["empty_cells"]) == empty and empty
    placed = splits_of(v)
    for split in SPLITS:
        depth = Counter(str(p["turn_number"]) for cid in fx.ids if placed[cid] == split
                        for p in json.loads(fx.blobs[cid])["training_pairs"] if p["target_response"] is not None)
        assert cov["histograms"]["turn_depth"][split] == dict(depth)
        assert sum(cov["histograms"]["tokens_per_example"][split].values()) == len(split_lines(v, "openai", split))


def test_coverage_minimums_are_warnings(hh: Harness, shared_fixtures: Path):
    fx = _corpus(hh, shared_fixtures)
    job = create_file(hh, fx.ids[:20], name=f"quality min {uuid.uuid4().hex[:8]}", coverage_min_per_cell=1)
    v = fetch_version(hh, str(job["file_id"]), 1)
    cov = v.report["dataset_quality"]["coverage"]
    warned = {w["cell"] for w in cov["warnings"]}
    assert warned == set(cov["empty_cells"]) and warned
    assert "coverage_below_minimum" in v.manifest["dataset"]["warnings"]


# ---------------------------------------------------------------------------- the corpus figures

def test_corpus_figures(corpus_file):
    """Printed with -s for the closing note."""
    fx, v = corpus_file
    dq = v.report["dataset_quality"]
    s, d, c = dq["splits"], dq["duplicates"], dq["coverage"]
    print("\nsplit sizes:", s["conversations"], "lines:", v.manifest["dataset"]["splits"]["lines"])
    print("largest stratum deviation:", s["largest_stratum_count_deviation"], "conversations;",
          s["largest_stratum_share_deviation"], "as a share; file:", s["file_validation_deviation"])
    print(f"duplicates at Jaccard >= {NEAR_THRESHOLD}: exact responses", d["exact_responses"]["duplicate_responses"],
          "exact conversations", d["exact_conversations"]["duplicate_conversations"],
          "near pairs", d["near_responses"]["pairs"], "(same conversation", d["near_responses"]["same_conversation_pairs"],
          ") leakage", d["leakage"]["count"], "of", d["assistant_responses"], "responses")
    print("top openers:", d["top_openers"])
    print("top phrases:", d["top_phrases"][:5])
    print("coverage:", c["filled_cells"], "of", c["cells"], "cells filled; empty:", len(c["empty_cells"]))
    print("empty cells:", c["empty_cells"])
    assert sum(s["conversations"].values()) == 72
