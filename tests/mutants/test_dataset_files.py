"""What a published version's manifest says about its dataset (issue 14, usecases/dataset_files.py):
the split policy it was built with, each member's split or exclusion, the coverage warning, and the
trainable tokens per split, counted here from the split files themselves with the real Mistral
tokenizer and chat template. Real PostgreSQL, real local store, one published file."""
from __future__ import annotations

import uuid

import orjson
import pytest

from lorafiles.domain.exports import view_of
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.service import OUTPUT_BUCKET
from lorafiles.tokens import get_model

from stepkit import OWNER, make_kit

POLICY = {"split_seed": "other-seed", "validation_fraction": 0.5, "coverage_min_per_cell": 3,
          "exact_duplicates": "exclude"}


@pytest.fixture
def published(db_url, tmp_path):
    # (per test, not per module: mutmut maps a test to the functions that run during it, and the
    # publication under test runs here)
    kit = make_kit(db_url, tmp_path)
    ids = kit.conversations(4)
    seed = f"copy-{uuid.uuid4()}"  # one conversation's content twice, under two ids
    first, second = kit.work / "original.json", kit.work / "copy.json"
    first.write_bytes(dumps_enriched(generate_conversation(seed, turns=4)))
    second.write_bytes(dumps_enriched(generate_conversation(seed, turns=4, conversation_id=str(uuid.uuid4()))))
    imported = kit.service.importing.import_files(OWNER, [first, second])
    assert not imported["refused"], imported["refused"]
    pair = [r["conversation_id"] for r in imported["imported"]]
    assert pair[0] != pair[1]
    job = kit.start(kind="create", conversation_ids=[*ids, *pair], name="dataset", policy=POLICY)
    file_id = kit.run(job)["file_id"]
    get = lambda name: kit.store.get(OUTPUT_BUCKET, f"{OWNER}/{file_id}/v1/{name}")  # noqa: E731
    yield kit, orjson.loads(get("manifest.json")), get, pair
    kit.service.db.close()


def test_the_manifest_records_the_split_policy_it_was_built_with(published):
    _, manifest, _, _ = published
    dataset = manifest["dataset"]
    assert dataset["policy"] == {"coverage_min_per_cell": 3, "exact_duplicates": "exclude",
                                 "split_seed": "other-seed", "validation_fraction": 0.5}
    assert dataset["splits"]["seed"] == "other-seed" and dataset["splits"]["validation_fraction"] == 0.5
    assert any(code.startswith("coverage") for code in dataset["warnings"]), dataset["warnings"]


def test_an_exact_copy_is_excluded_and_only_it_says_so(published):
    _, manifest, get, pair = published
    members = {m["conversation_id"]: m for m in manifest["members"]}
    assert members[pair[1]]["excluded"] == "exact_duplicate_conversation"
    assert all("excluded" not in m for cid, m in members.items() if cid != pair[1])
    assert manifest["dataset"]["exclusions"]["by_reason"] == {"exact_duplicate_conversation": 1}
    assert all(m["split"] in ("train", "validation") for m in members.values())  # placed, even when excluded
    for split in ("train", "validation"):  # but the copy is in no split file
        assert pair[1] not in get(f"openai.{split}.jsonl").decode()


def test_trainable_tokens_per_split_are_those_of_the_split_files(published):
    _, manifest, get, _ = published
    model = get_model("mistral-7b-instruct-v0.2")
    counted = {}
    for fmt in ("openai", "trl", "axolotl", "sharegpt"):
        for split in ("train", "validation"):
            lines = [orjson.loads(line) for line in get(f"{fmt}.{split}.jsonl").splitlines() if line.strip()]
            assert len(lines) == manifest["dataset"]["splits"]["lines"][fmt][split]
            counted.setdefault(fmt, {})[split] = sum(model.count(*view_of(fmt, line)).trainable for line in lines)
    assert manifest["dataset"]["splits"]["trainable_tokens"] == counted
    assert all(counted[fmt][s] > 0 for fmt in counted for s in ("train", "validation"))


def test_the_dataset_section_has_exactly_its_fields(published):
    _, manifest, _, _ = published
    dataset = manifest["dataset"]
    assert set(dataset) == {"policy", "splits", "exclusions", "duplicates", "coverage", "warnings"}
    assert set(dataset["splits"]) == {"conversations", "method", "seed", "validation_fraction",
                                      "largest_stratum_count_deviation", "largest_stratum_share_deviation",
                                      "fallbacks", "lines", "trainable_tokens"}
    assert dataset["splits"]["method"].startswith("sequential stratified: u = sha256(seed NUL conversation_id)")
    assert dataset["splits"]["fallbacks"] and all(isinstance(f, str) for f in dataset["splits"]["fallbacks"])
    assert 0 <= dataset["splits"]["largest_stratum_share_deviation"] <= 1
    assert dataset["splits"]["largest_stratum_count_deviation"] >= 0
    duplicates = dataset["duplicates"]
    assert set(duplicates) == {"exact_responses", "exact_conversations", "near_response_pairs", "near_threshold",
                               "leakage"}
    assert duplicates["exact_conversations"] == 1 and duplicates["exact_responses"] >= 1  # the copy
    assert duplicates["near_threshold"] == 0.8 and duplicates["leakage"] >= 0 and duplicates["near_response_pairs"] >= 0
    assert set(dataset["coverage"]) == {"cells", "empty_cells"}
    assert set(dataset["coverage"]["empty_cells"]) == {c for c, n in dataset["coverage"]["cells"].items() if n == 0}
    assert dataset["coverage"]["empty_cells"]


def test_the_card_names_the_file_its_name_and_version(published):
    kit, manifest, get, _ = published
    card = get("README.md").decode()
    file_id = manifest["file"]["id"]
    assert "# dataset — version 1" in card and f"Training file `{file_id}`" in card
    assert '\npretty_name: "dataset (v1)"\n' in card
