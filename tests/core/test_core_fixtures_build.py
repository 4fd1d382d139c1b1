"""The real data builds: the whole 72-conversation corpus into one file, and every enriched file.

Expected numbers are computed from the fixture files themselves (standard library only)."""
from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core_harness import INPUT_BUCKET, OUTPUT_BUCKET, OWNER, Harness

BATCH = "5b5b5b5b-0000-4000-8000-00000000c0de"


def targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in doc["training_pairs"] if p["target_response"] is not None]


def uuid_of(doc: dict[str, Any]) -> str:
    return doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_").lower()


class Built:
    def __init__(self, h: Harness, folder: Path) -> None:
        self.paths = sorted(folder.glob("*.json"))
        self.docs = {uuid_of(d): d for d in (json.loads(p.read_bytes()) for p in self.paths)}
        self.blobs = {uuid_of(json.loads(p.read_bytes())): p.read_bytes() for p in self.paths}
        self.ids = h.import_paths(self.paths, batch_id=BATCH)
        self.job = h.create(self.ids, name=f"{folder.name} {uuid.uuid4()}")
        self.file_id = str(self.job["file_id"])
        self.shown = h.service.reading.show_file(OWNER, self.file_id)
        self.full = h.full_json(self.file_id)
        self.json_bytes = h.artifact_bytes(self.file_id, "json")
        self.jsonl_bytes = h.artifact_bytes(self.file_id, "jsonl")
        self.jsonl = h.jsonl_lines(self.file_id)


_built: dict[str, Built] = {}


@pytest.fixture
def corpus(module_harness: Harness, shared_fixtures: Path) -> Built:
    if "corpus" not in _built:
        _built["corpus"] = Built(module_harness, shared_fixtures / "corpus")
    return _built["corpus"]


@pytest.fixture
def enriched(module_harness: Harness, shared_fixtures: Path) -> Built:
    if "enriched" not in _built:
        _built["enriched"] = Built(module_harness, shared_fixtures / "enriched")
    return _built["enriched"]


@pytest.fixture(params=["corpus", "enriched"])
def built(request) -> Built:
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module", autouse=True)
def _forget_builds():
    yield
    _built.clear()


# ---------------------------------------------------------------------------- counts

def test_corpus_numbers_from_the_files(corpus):
    assert len(corpus.docs) == 72
    assert sum(len(d["training_pairs"]) for d in corpus.docs.values()) == 447
    assert sum(len(targets(d)) for d in corpus.docs.values()) == 212


def test_whole_corpus_builds_into_one_file(corpus):
    f = corpus.shown["file"]
    assert corpus.job["status"] == "succeeded"
    assert (f["status"], f["current_version"]) == ("ready", 1)
    assert (f["conversation_count"], f["training_pair_count"], f["total_turns"]) == (72, 212, 447)
    meta = corpus.full["training_file_metadata"]
    assert meta["total_conversations"] == len(corpus.full["conversations"]) == 72
    assert meta["total_training_pairs"] == len(corpus.jsonl) - 1 == corpus.jsonl[0]["_meta"]["total_pairs"] == 212
    assert meta["total_turns"] == 447


def test_every_file_is_a_member_in_request_order(built):
    assert set(built.ids) == set(built.docs)
    assert [m["conversation_id"] for m in built.shown["members"]] == built.ids
    assert [c["conversation_metadata"]["conversation_id"] for c in built.full["conversations"]] == built.ids


def test_counts_match_the_files(built):
    f, meta = built.shown["file"], built.full["training_file_metadata"]
    n_pairs = sum(len(d["training_pairs"]) for d in built.docs.values())
    n_targets = sum(len(targets(d)) for d in built.docs.values())
    assert (f["conversation_count"], f["training_pair_count"], f["total_turns"]) == (len(built.docs), n_targets, n_pairs)
    assert (meta["total_conversations"], meta["total_training_pairs"], meta["total_turns"]) == (len(built.docs), n_targets, n_pairs)
    assert len(built.jsonl) - 1 == built.jsonl[0]["_meta"]["total_pairs"] == n_targets
    for m in built.shown["members"]:
        doc = built.docs[m["conversation_id"]]
        assert (m["pairs"], m["training_pairs"]) == (len(doc["training_pairs"]), len(targets(doc)))


# ---------------------------------------------------------------------------- content

def test_pairs_are_carried_unchanged(built):
    for conv in built.full["conversations"]:
        cid = conv["conversation_metadata"]["conversation_id"]
        assert conv["training_pairs"] == built.docs[cid]["training_pairs"]
        assert json.dumps(conv["training_pairs"]) == json.dumps(built.docs[cid]["training_pairs"])


def test_jsonl_lines_are_the_target_pairs_with_unique_ids(built):
    expected = [(f"{p['id']}_{cid[:8]}", cid, p["turn_number"], p["target_response"])
                for cid in built.ids for p in targets(built.docs[cid])]
    got = [(r["id"], r["conversation_id"], r["turn_number"], r["target_response"]) for r in built.jsonl[1:]]
    assert got == expected
    assert len({r["id"] for r in built.jsonl[1:]}) == len(expected)
    assert built.jsonl_bytes.count(b"\n") == len(built.jsonl)


def test_source_file_is_the_real_stored_object(module_harness, built):
    for conv in built.full["conversations"]:
        m = conv["conversation_metadata"]
        cid = m["conversation_id"]
        assert m["source_file"] == f"{INPUT_BUCKET}/{OWNER}/{cid}/enriched.json"
        key = m["source_file"].removeprefix(INPUT_BUCKET + "/")
        assert module_harness.store.get(INPUT_BUCKET, key) == built.blobs[cid]
        assert m["batch_id"] == BATCH
        assert m["total_turns"] == len(built.docs[cid]["training_pairs"])


def test_one_quality_formula_for_row_and_json(built):
    f, meta = built.shown["file"], built.full["training_file_metadata"]
    assert f["quality_summary"] == meta["quality_summary"]
    assert f["scaffolding_distribution"] == meta["scaffolding_distribution"]
    scores = [p["training_metadata"]["quality_score"] for d in built.docs.values() for p in targets(d)]
    reviewed = sum(1 for d in built.docs.values() for p in targets(d) if p["training_metadata"].get("human_reviewed") is True)
    assert meta["quality_summary"] == {
        "avg_quality_score": round(sum(scores) / len(scores), 2), "min_quality_score": min(scores),
        "max_quality_score": max(scores), "human_reviewed_count": reviewed,
        "human_reviewed_percentage": round(100 * reviewed / len(scores), 1)}


def test_corpus_scaffolding_matches_conversations_csv(corpus, shared_fixtures):
    with open(shared_fixtures / "corpus" / "conversations.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 72
    dist = corpus.full["training_file_metadata"]["scaffolding_distribution"]
    assert dist["personas"] == dict(Counter(r["persona_key"] for r in rows))
    assert dist["emotional_arcs"] == dict(Counter(r["emotional_arc_key"] for r in rows))
    assert dist["training_topics"] == dict(Counter(r["training_topic_key"] for r in rows))
    by_id = {r["conversation_id"]: r for r in rows}
    for conv in corpus.full["conversations"]:
        sc, row = conv["conversation_metadata"]["scaffolding"], by_id[conv["conversation_metadata"]["conversation_id"]]
        assert (sc["persona_key"], sc["emotional_arc_key"], sc["training_topic_key"]) == (
            row["persona_key"], row["emotional_arc_key"], row["training_topic_key"])


def test_corpus_warnings_are_kept_per_member(corpus):
    warned = Counter(w["code"] for m in corpus.shown["members"] for w in m["warnings"])
    assert warned["truncated_target"] == 9
    assert warned["double_escaped_newline"] == 24
    assert warned["input_repeats_history"] == 72


def test_enriched_older_files_warn_about_missing_scaffolding(enriched):
    by_id = {m["conversation_id"]: {w["code"] for w in m["warnings"]} for m in enriched.shown["members"]}
    older = {uuid_of(json.loads(p.read_bytes())) for p in enriched.paths if p.name.startswith("older-")}
    assert len(older) == 4
    assert {cid for cid, codes in by_id.items() if "missing_scaffolding_keys" in codes} == older


def test_artifact_checksums_in_the_database_match_storage(module_harness, built):
    f = built.shown["file"]
    assert f["json_sha256"] == hashlib.sha256(built.json_bytes).hexdigest()
    assert f["jsonl_sha256"] == hashlib.sha256(built.jsonl_bytes).hexdigest()
    assert (f["json_size"], f["jsonl_size"]) == (len(built.json_bytes), len(built.jsonl_bytes))
    assert f["json_path"] == f"{OWNER}/{built.file_id}/v1/training.json"
    assert module_harness.store.exists(OUTPUT_BUCKET, f["jsonl_path"])
    assert [str(b) for b in f["batch_ids"]] == [BATCH]
