"""The version diff's rules (lorafiles.domain.quality.diff) on hand-built manifests: which
conversations it names, how each figure moves, and the manifests it refuses (naming the field)."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from lorafiles.domain.exports import EXPORT_FORMATS
from lorafiles.domain.quality.diff import ManifestInvalid, members_of, moved, version_diff

SHA = {n: f"{n:064x}" for n in range(10)}


def member(cid: str, sha: int, split: str = "train", excluded: str | None = None) -> dict[str, Any]:
    return {"conversation_id": cid, "source_file": f"conversation-files/o/{cid}/enriched.json",
            "source_sha256": SHA[sha], "split": split, **({"excluded": excluded} if excluded else {})}


def manifest(version: int, members: list[dict[str, Any]], *, lines: int = 10, cells: dict[str, int] | None = None,
             warnings: tuple[str, ...] = (), policy: dict[str, Any] | None = None, dataset: bool = True,
             near: int = 0) -> dict[str, Any]:
    cells = cells if cells is not None else {"a x b x c": 1, "a x b x d": 0}
    tokens = {fmt: {"lines": lines, "trainable_tokens_per_epoch": 100 * lines, "training_tokens_per_epoch": 150 * lines,
                    "examples_over_max_length": 0, "trainable_tokens_excluded": 0, "context_tokens_trimmed": 0,
                    "total_tokens": {"p50": 700, "p95": 900, "max": 1000 + lines},
                    "trainable_tokens": {"p50": 70, "p95": 90, "max": 100}} for fmt in EXPORT_FORMATS}
    doc: dict[str, Any] = {
        "file": {"id": "f", "version": version}, "member_count": len(members), "members": members,
        "policy": policy or {"max_length": 2048, "validation_fraction": 0.1}, "model": {"id": "m"},
        "tokens": tokens, "exclusions": {"over_length": {"count": 1, "trainable_tokens": 5}},
        "changes": {"role_inferred": 0},
    }
    if dataset:
        train = sum(m.get("split") == "train" for m in members)
        doc["dataset"] = {
            "splits": {"conversations": {"train": train, "validation": len(members) - train},
                       "lines": {fmt: {"train": train, "validation": len(members) - train} for fmt in EXPORT_FORMATS},
                       "trainable_tokens": {fmt: {"train": 10 * train, "validation": 0} for fmt in EXPORT_FORMATS},
                       "largest_stratum_count_deviation": 0.5},
            "duplicates": {"exact_responses": 0, "exact_conversations": 0, "near_response_pairs": near, "leakage": 0,
                           "near_threshold": 0.8},
            "coverage": {"cells": cells, "empty_cells": sorted(c for c, n in cells.items() if n == 0)},
            "exclusions": {"by_reason": {"exact_duplicate_conversation": 0}, "listed": []},
            "warnings": list(warnings),
        }
    return doc


def test_it_names_every_conversation_added_removed_and_changed_in_member_order():
    old = manifest(1, [member("c1", 1), member("c2", 2), member("c3", 3, "validation"), member("c4", 4)])
    new = manifest(2, [member("c1", 1), member("c2", 5), member("c3", 3, "train"),
                       member("c9", 9, "validation"), member("c5", 6, excluded="exact_duplicate_conversation"),
                       member("c4", 4, excluded="exact_duplicate_conversation")])
    d = version_diff(old, new)
    c = d["conversations"]
    assert c["added"] == [{"conversation_id": "c9", "split": "validation", "excluded": None},
                          {"conversation_id": "c5", "split": "train", "excluded": "exact_duplicate_conversation"}]
    assert c["removed"] == []
    assert c["source_changed"] == [{"conversation_id": "c2", "source_file": "conversation-files/o/c2/enriched.json",
                                    "from_sha256": SHA[2], "to_sha256": SHA[5]}]
    assert c["split_changed"] == [{"conversation_id": "c3", "from": "validation", "to": "train"}]
    assert c["exclusion_changed"] == [{"conversation_id": "c4", "from": None, "to": "exact_duplicate_conversation"}]
    assert c["counts"] == {"from": 4, "to": 6, "added": 2, "removed": 1 - 1, "source_changed": 1, "split_changed": 1,
                           "exclusion_changed": 1, "unchanged": 1}
    assert (d["from_version"], d["to_version"]) == (1, 2)
    # the other way round: what was added is removed, the changes swap sides
    back = version_diff(new, old)["conversations"]
    assert [e["conversation_id"] for e in back["removed"]] == ["c9", "c5"] and back["added"] == []
    assert back["source_changed"][0]["from_sha256"] == SHA[5] and back["source_changed"][0]["to_sha256"] == SHA[2]


def test_a_conversation_changed_in_several_ways_is_counted_once_as_not_unchanged():
    old = manifest(1, [member("c1", 1), member("c2", 2)])
    new = manifest(2, [member("c1", 7, "validation", "exact_duplicate_conversation"), member("c2", 2)])
    n = version_diff(old, new)["conversations"]["counts"]
    assert (n["source_changed"], n["split_changed"], n["exclusion_changed"], n["unchanged"]) == (1, 1, 1, 1)


def test_a_moved_source_path_is_a_source_change_even_with_the_same_bytes():
    old = manifest(1, [member("c1", 1)])
    new = copy.deepcopy(old)
    new["file"]["version"] = 2
    new["members"][0]["source_file"] = "conversation-files/o/elsewhere.json"
    [change] = version_diff(old, new)["conversations"]["source_changed"]
    assert change["from_source_file"] == "conversation-files/o/c1/enriched.json"
    assert change["source_file"] == "conversation-files/o/elsewhere.json"
    assert change["from_sha256"] == change["to_sha256"] == SHA[1]


def test_identical_versions_move_nothing():
    old = manifest(1, [member("c1", 1), member("c2", 2, "validation")])
    new = copy.deepcopy(old)
    d = version_diff(old, new)
    assert d["conversations"]["counts"]["unchanged"] == 2
    assert d["policy_changed"] == d["model_changed"] == {}
    assert d["coverage"] == {"changed_cells": [], "filled": [], "emptied": [],
                             "empty_cells": {"from": 1, "to": 1, "change": 0}}
    assert d["warnings"] == {"added": [], "resolved": []} and d["notes"] == []
    for fmt in EXPORT_FORMATS:
        assert all(v["change"] == 0 for k, v in d["tokens"][fmt].items() if "from" in v)


def test_figures_move_by_the_difference_of_the_two_manifests():
    old = manifest(1, [member("c1", 1)], lines=10, near=2)
    new = manifest(2, [member("c1", 1), member("c2", 2, "validation")], lines=13, near=1)
    d = version_diff(old, new)
    t = d["tokens"]["trl"]
    assert t["lines"] == {"from": 10, "to": 13, "change": 3}
    assert t["trainable_tokens_per_epoch"] == {"from": 1000, "to": 1300, "change": 300}
    assert t["total_tokens"]["max"] == {"from": 1010, "to": 1013, "change": 3}
    assert t["total_tokens"]["p50"] == {"from": 700, "to": 700, "change": 0}
    assert d["splits"]["conversations"]["validation"] == {"from": 0, "to": 1, "change": 1}
    assert d["splits"]["lines"]["openai"]["train"] == {"from": 1, "to": 1, "change": 0}
    assert d["duplicates"]["near_response_pairs"] == {"from": 2, "to": 1, "change": -1}
    assert d["exclusions"] == {"over_length": {"count": {"from": 1, "to": 1, "change": 0},
                                               "trainable_tokens": {"from": 5, "to": 5, "change": 0}}}
    assert d["conversation_exclusions"] == {"exact_duplicate_conversation": {"from": 0, "to": 0, "change": 0}}


def test_coverage_names_the_cells_that_moved_filled_and_emptied():
    old = manifest(1, [member("c1", 1)], cells={"p x a x t1": 2, "p x a x t2": 0, "p x a x t3": 1})
    new = manifest(2, [member("c1", 1)], cells={"p x a x t1": 3, "p x a x t2": 1, "p x a x t3": 0, "q x a x t1": 0})
    cov = version_diff(old, new)["coverage"]
    assert cov["changed_cells"] == [{"cell": "p x a x t1", "from": 2, "to": 3, "change": 1},
                                    {"cell": "p x a x t2", "from": 0, "to": 1, "change": 1},
                                    {"cell": "p x a x t3", "from": 1, "to": 0, "change": -1}]
    assert cov["filled"] == ["p x a x t2"]
    assert cov["emptied"] == ["p x a x t3"]  # q x a x t1: 0 in v2, and not listed (0) in v1
    assert cov["empty_cells"] == {"from": 1, "to": 2, "change": 1}


def test_policy_model_and_warnings_changes_are_named():
    old = manifest(1, [member("c1", 1)], warnings=("split_fallback", "coverage_below_minimum"))
    new = manifest(2, [member("c1", 1)], warnings=("split_fallback", "split_leakage"),
                   policy={"max_length": 4096, "validation_fraction": 0.1, "min_quality": 3.0})
    new["model"] = {"id": "other"}
    d = version_diff(old, new)
    assert d["policy_changed"] == {"max_length": {"from": 2048, "to": 4096}, "min_quality": {"from": None, "to": 3.0}}
    assert d["model_changed"] == {"id": {"from": "m", "to": "other"}}
    assert d["warnings"] == {"added": ["split_leakage"], "resolved": ["coverage_below_minimum"]}


def test_a_version_from_before_dataset_quality_has_unknown_figures_and_says_so():
    old = manifest(1, [member("c1", 1)], dataset=False)
    new = manifest(2, [member("c1", 1), member("c2", 2)])
    d = version_diff(old, new, old_label="v1 of F", new_label="v2 of F")
    assert d["notes"] == ["v1 of F was published before dataset quality existed: its splits, duplicates and "
                          "coverage are unknown (regenerate the file to have them)"]
    assert d["splits"]["conversations"]["train"] == {"from": None, "to": 2, "change": None}
    assert d["duplicates"]["leakage"] == {"from": None, "to": 0, "change": None}
    assert d["coverage"]["empty_cells"] == {"from": None, "to": 1, "change": None}
    assert d["coverage"]["filled"] == d["coverage"]["emptied"] == []
    assert d["conversations"]["counts"]["added"] == 1  # the members are still compared


@pytest.mark.parametrize(("a", "b", "change"), [(1, 3, 2), (3, 1, -2), (0.1, 0.3, 0.2), (None, 3, None),
                                                 (2, None, None), (True, 3, None), ("1", 3, None), (5, 5, 0)])
def test_moved(a: Any, b: Any, change: Any):
    assert moved(a, b) == {"from": a, "to": b, "change": change}


def _bad(mutate) -> dict[str, Any]:  # noqa: ANN001
    doc = manifest(3, [member("c1", 1), member("c2", 2)])
    mutate(doc)
    return doc


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(members={"c1": {}}), "v3: members is not a list"),
    (lambda d: d.pop("members"), "v3: members is not a list"),
    (lambda d: d["members"].__setitem__(1, "c2"), "v3: members[1] is not an object"),
    (lambda d: d["members"][1].pop("conversation_id"), "v3: members[1].conversation_id is not a non-empty string"),
    (lambda d: d["members"][0].update(conversation_id=""), "v3: members[0].conversation_id is not a non-empty string"),
    (lambda d: d["members"][0].update(conversation_id=7), "v3: members[0].conversation_id is not a non-empty string"),
    (lambda d: d["members"][1].update(source_sha256=None), "v3: members[1] (conversation c2): source_sha256 is not a string"),
    (lambda d: d["members"][1].pop("source_file"), "v3: members[1] (conversation c2): source_file is not a string"),
    (lambda d: d["members"][0].update(split=["train"]), "v3: members[0] (conversation c1): split is not a string"),
    (lambda d: d["members"][0].update(excluded=1), "v3: members[0] (conversation c1): excluded is not a string"),
    (lambda d: d["members"][1].update(conversation_id="c1"), "v3: conversation c1 is listed twice (members[1])"),
    (lambda d: d.update(member_count=3), "v3: member_count is 3 but members lists 2"),
])
def test_a_manifest_the_builder_cannot_have_written_is_refused_naming_the_field(mutate, message: str):
    with pytest.raises(ManifestInvalid) as err:
        version_diff(manifest(1, [member("c1", 1)]), _bad(mutate), new_label="v3")
    assert str(err.value) == message


def test_a_manifest_that_is_not_an_object_is_refused():
    with pytest.raises(ManifestInvalid, match=r"^v1: the manifest is not a JSON object$"):
        members_of([1, 2], "v1")
    assert list(members_of(manifest(1, [member("b", 1), member("a", 2)]), "v1")) == ["b", "a"]
