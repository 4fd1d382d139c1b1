"""`lorafiles diff FILE_ID V1 V2` and the service behind it (issue 12, item 5) on published
versions built through the real pipeline (real PostgreSQL, local storage, the production state
machine in moto). What the diff says is checked against the downloaded artifacts themselves:
the export files' lines, the enriched files' bytes, the members' persona/arc/topic keys.

The first part runs on generated conversations (no ../shared needed); the corpus figures at the
end use the 72-conversation corpus."""
from __future__ import annotations

import hashlib
import json
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "exports"))
from published_helpers import add_to_file, create_file, fetch_version, import_folder  # noqa: E402

from cli_helpers import run_cli  # noqa: E402
from core_harness import OTHER, OWNER, Harness, harness  # noqa: E402
from lorafiles.domain.exports import EXPORT_FORMATS  # noqa: E402
from lorafiles.domain.samples import dumps_enriched  # noqa: E402
from lorafiles.errors import NotFound, StoredDataInvalid  # noqa: E402
from lorafiles.usecases.common import OUTPUT_BUCKET  # noqa: E402

_state: dict[str, Any] = {}


@pytest.fixture(scope="module")
def hh(module_db_url: str, tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("diff")
    with harness(module_db_url, base) as h:
        h.base = base  # type: ignore[attr-defined]
        yield h
    _state.clear()


def reenrich(h: Harness, cid: str, marker: str) -> bytes:
    """What the enrichment service does: a new enriched file for the same conversation."""
    doc = json.loads(_input(h, cid))
    pair = next(p for p in doc["training_pairs"] if isinstance(p.get("target_response"), str))
    pair["target_response"] += f" {marker}"
    blob = dumps_enriched(doc)
    path = h.work / f"re-{uuid.uuid4().hex}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    assert h.import_paths([path]) == [cid]
    return blob


def _input(h: Harness, cid: str) -> bytes:
    from lorafiles.usecases.common import INPUT_BUCKET

    return h.store.get(INPUT_BUCKET, h.input_key(cid))


@pytest.fixture
def three_versions(hh: Harness) -> dict[str, Any]:
    """v1: 4 conversations; v2: +2 added; v3: regenerated after one member's enrichment changed."""
    if "three" not in _state:
        ids = hh.generate(6)
        file_id = str(create_file(hh, ids[:4], name=f"diff {uuid.uuid4().hex[:8]}")["file_id"])
        assert add_to_file(hh, file_id, ids[4:])["status"] == "succeeded"
        old_sha = hashlib.sha256(_input(hh, ids[1])).hexdigest()
        blob = reenrich(hh, ids[1], "REENRICHED-FOR-DIFF")
        job = hh.service.jobs.start_regenerate(OWNER, file_id)
        hh.machine.wait(job["execution_arn"], timeout=300)
        assert hh.service.reading.get_job(OWNER, str(job["id"]))["status"] == "succeeded"
        _state["three"] = {"ids": ids, "file_id": file_id, "old_sha": old_sha,
                           "new_sha": hashlib.sha256(blob).hexdigest(),
                           "versions": {n: fetch_version(hh, file_id, n) for n in (1, 2, 3)}}
    return _state["three"]


def _lines(data: bytes) -> int:
    return len([line for line in data.split(b"\n") if line.strip()])


def _cells(h: Harness, file_id: str, ids: list[str]) -> Counter[str]:
    with h.sql() as conn:
        rows = conn.execute("select conversation_id, persona_key, emotional_arc_key, training_topic_key "
                            "from lora_training_file_members where file_id = %s", (file_id,)).fetchall()
    keys = {r["conversation_id"]: f"{r['persona_key']} x {r['emotional_arc_key']} x {r['training_topic_key']}"
            for r in rows}
    return Counter(keys[c] for c in ids)


def test_the_diff_of_an_add_names_the_added_conversations_and_moves_every_count(hh: Harness, three_versions):
    t = three_versions
    ids, file_id, v1, v2 = t["ids"], t["file_id"], t["versions"][1], t["versions"][2]
    d = hh.service.diffing.diff(OWNER, file_id, 1, 2)
    assert (d["file_id"], d["from_version"], d["to_version"]) == (file_id, 1, 2)
    splits_v2 = {m["conversation_id"]: m["split"] for m in v2.manifest["members"]}
    c = d["conversations"]
    assert c["added"] == [{"conversation_id": cid, "split": splits_v2[cid], "excluded": None} for cid in ids[4:]]
    assert c["removed"] == c["source_changed"] == c["split_changed"] == c["exclusion_changed"] == []
    assert c["counts"] == {"from": 4, "to": 6, "added": 2, "removed": 0, "source_changed": 0, "split_changed": 0,
                           "exclusion_changed": 0, "unchanged": 4}
    assert d["policy_changed"] == {} and d["model_changed"] == {} and d["notes"] == []
    for fmt in EXPORT_FORMATS:  # the lines the trainer reads, counted in the downloaded files
        lines = d["tokens"][fmt]["lines"]
        assert (lines["from"], lines["to"]) == (_lines(v1.raw[fmt]), _lines(v2.raw[fmt]))
        assert lines["change"] == lines["to"] - lines["from"] > 0
        trained = d["tokens"][fmt]["trainable_tokens_per_epoch"]
        assert trained["change"] > 0
    moved = {s: d["splits"]["conversations"][s] for s in ("train", "validation")}
    assert sum(m["change"] for m in moved.values()) == 2
    assert {s: m["to"] for s, m in moved.items()} == {s: sum(v == s for v in splits_v2.values())
                                                      for s in ("train", "validation")}
    # coverage: exactly the cells of the two added conversations moved, by their count
    added_cells = _cells(hh, file_id, ids[4:])
    before = _cells(hh, file_id, ids[:4])
    assert {e["cell"]: e["change"] for e in d["coverage"]["changed_cells"]} == dict(added_cells)
    assert all(e["from"] == before.get(e["cell"], 0) for e in d["coverage"]["changed_cells"])
    assert set(d["coverage"]["filled"]) == {cell for cell in added_cells if cell not in before}


def test_the_diff_of_a_regenerate_names_the_conversation_whose_source_changed(hh: Harness, three_versions):
    t = three_versions
    ids, file_id = t["ids"], t["file_id"]
    d = hh.service.diffing.diff(OWNER, file_id, 2, 3)
    c = d["conversations"]
    assert c["added"] == c["removed"] == [] and c["counts"]["unchanged"] == 5
    [change] = c["source_changed"]
    assert change["conversation_id"] == ids[1]
    assert (change["from_sha256"], change["to_sha256"]) == (t["old_sha"], t["new_sha"])
    assert b"REENRICHED-FOR-DIFF" in t["versions"][3].raw["json"]
    assert d["coverage"]["changed_cells"] == []
    # v1 -> v3 at once: the two added and the one changed (v1 held it already)
    both = hh.service.diffing.diff(OWNER, file_id, 1, 3)["conversations"]
    assert [e["conversation_id"] for e in both["added"]] == ids[4:]
    assert [e["conversation_id"] for e in both["source_changed"]] == [ids[1]]
    # the other way round: what was added is removed
    back = hh.service.diffing.diff(OWNER, file_id, 3, 1)["conversations"]
    assert [e["conversation_id"] for e in back["removed"]] == ids[4:] and back["added"] == []


def test_only_the_owner_gets_a_diff_and_missing_versions_are_named(hh: Harness, three_versions):
    file_id = three_versions["file_id"]
    with pytest.raises(NotFound, match=f"^training file {file_id} not found$"):
        hh.service.diffing.diff(OTHER, file_id, 1, 2)
    with pytest.raises(NotFound, match=f"^training file {file_id} has no version 4$"):
        hh.service.diffing.diff(OWNER, file_id, 1, 4)
    with pytest.raises(NotFound, match="not found"):
        hh.service.diffing.diff(OWNER, str(uuid.uuid4()), 1, 2)


def _edited_member(manifest: bytes) -> bytes:
    doc = json.loads(manifest)
    doc["members"][0]["source_sha256"] = "0" * 64
    return orjson.dumps(doc)


@pytest.mark.parametrize("tamper", ["flip a byte", "truncate", "other version's manifest", "not json",
                                    "a member's checksum edited"])
def test_a_stored_manifest_that_does_not_match_its_record_is_refused_naming_it(hh: Harness, tamper: str):
    ids = hh.generate(2)
    file_id = str(create_file(hh, ids[:1], name=f"tamper {uuid.uuid4().hex[:8]}")["file_id"])
    assert add_to_file(hh, file_id, ids[1:])["status"] == "succeeded"
    a = hh.service.reading.artifact(OWNER, file_id, "manifest", 2)
    good = hh.store.get(OUTPUT_BUCKET, a["key"])
    other = hh.store.get(OUTPUT_BUCKET, hh.service.reading.artifact(OWNER, file_id, "manifest", 1)["key"])
    bad = {"flip a byte": good[:100] + bytes([good[100] ^ 1]) + good[101:], "truncate": good[:-10],
           "other version's manifest": other, "not json": b"\xff" * len(good),
           # still a valid manifest of this file and version: only the recorded checksum tells
           "a member's checksum edited": _edited_member(good)}[tamper]
    hh.store.put(OUTPUT_BUCKET, a["key"], bad)
    listing = hh.storage_listing()
    with pytest.raises(StoredDataInvalid) as err:
        hh.service.diffing.diff(OWNER, file_id, 1, 2)
    assert err.value.message.startswith(f"manifest.json of version 2 of training file {file_id}: ")
    assert "does not match the size and sha256 recorded when the version was published" in err.value.message
    assert hh.storage_listing() == listing  # nothing was changed
    # the checksum is what catches it; with the record made to match, the content checks still name it
    if tamper in ("other version's manifest", "not json"):
        with hh.sql() as conn:  # (versions are immutable: a trigger refuses updates; bypass it as an intruder would)
            conn.execute("set local session_replication_role = replica")
            conn.execute("update lora_training_file_versions set artifacts = jsonb_set(jsonb_set(artifacts, "
                         "'{manifest,sha256}', to_jsonb(%s::text)), '{manifest,size}', to_jsonb(%s::int)) "
                         "where file_id = %s and version = 2", (hashlib.sha256(bad).hexdigest(), len(bad), file_id))
        with pytest.raises(StoredDataInvalid) as err:
            hh.service.diffing.diff(OWNER, file_id, 1, 2)
        expected = ("the manifest describes file" if tamper == "other version's manifest" else "not JSON")
        assert expected in err.value.message and f"version 2 of training file {file_id}" in err.value.message


def test_a_recorded_size_beyond_any_manifest_is_refused_before_reading(hh: Harness, three_versions,
                                                                         monkeypatch: pytest.MonkeyPatch):
    from lorafiles.usecases import diffing

    file_id = three_versions["file_id"]
    assert hh.service.reading.artifact(OWNER, file_id, "manifest", 1)["size"] > 10
    monkeypatch.setattr(diffing, "MAX_MANIFEST_BYTES", 10)
    reads: list[str] = []
    monkeypatch.setattr(type(hh.store), "get", lambda self, bucket, key: reads.append(key) or b"")
    with pytest.raises(StoredDataInvalid, match=f"^manifest.json of version 1 of training file {file_id}: its "
                                                "recorded size [0-9]+ is not that of a manifest$"):
        hh.service.diffing.diff(OWNER, file_id, 1, 2)
    assert reads == []


def test_lorafiles_diff_prints_the_same_diff_and_refuses_bad_arguments(hh: Harness, three_versions,
                                                                     module_db_url: str):
    t = three_versions
    file_id, ids = t["file_id"], t["ids"]
    home = hh.base  # type: ignore[attr-defined]
    env = {"LORAFILES_STORAGE": "local", "LORAFILES_STORAGE_ROOT": str(home / "storage")}
    r = run_cli(["diff", file_id, "1", "3", "--json", "--owner", OWNER], home=home, database_url=module_db_url,
                env=env)
    assert r.code == 0, r.err
    expected = orjson.loads(orjson.dumps(hh.service.diffing.diff(OWNER, file_id, 1, 3), default=str))
    assert r.json == expected
    human = run_cli(["diff", file_id, "1", "3", "--owner", OWNER], home=home, database_url=module_db_url, env=env)
    assert human.code == 0, human.err
    out = human.out.splitlines()
    assert out[0] == f"training file {file_id}: v1 -> v3"
    assert out[1].startswith("conversations: 4 -> 6 (+2 added, -0 removed, 1 source changed")
    assert [line for line in out if line.startswith("  + ")] == [
        f"  + {cid} ({expected['conversations']['added'][i]['split']})" for i, cid in enumerate(ids[4:])]
    assert f"  ~ {ids[1]} source {t['old_sha'][:12]} -> {t['new_sha'][:12]}" in out
    lines = expected["tokens"]["openai"]["lines"]
    assert f"  openai lines: {lines['from']} -> {lines['to']} ({lines['change']:+d})" in out
    for args, message in ((["diff", file_id, "0", "2"], "argument V1: 0 is not between 1 and 2147483647"),
                          (["diff", file_id, "1", "x"], "argument V2: invalid number value: 'x'"),
                          (["diff", file_id, "1", "9"], f"error: training file {file_id} has no version 9"),
                          (["diff", file_id, "1", "2", "--owner", OTHER], f"error: training file {file_id} not found"),
                          (["diff", "not-a-uuid", "1", "2"], "error: training file not-a-uuid not found"),
                          (["diff", file_id, "1", "2", "--owner", "../etc"], "is not a user id")):
        bad = run_cli([*args, *([] if "--owner" in args else ["--owner", OWNER])], home=home,
                      database_url=module_db_url, env=env)
        assert bad.code == 1 and message in bad.err, (args, bad.err)
        bad.no_traceback()


def test_corpus_diff_figures(hh: Harness, shared_fixtures: Path):
    """The corpus: 62 conversations, then the other 10 added (printed with -s for the closing note)."""
    fx = import_folder(hh, shared_fixtures / "corpus")
    file_id = str(create_file(hh, fx.ids[:62], name=f"corpus diff {uuid.uuid4().hex[:8]}")["file_id"])
    assert add_to_file(hh, file_id, fx.ids[62:])["status"] == "succeeded"
    d = hh.service.diffing.diff(OWNER, file_id, 1, 2)
    assert [e["conversation_id"] for e in d["conversations"]["added"]] == fx.ids[62:]
    assert d["conversations"]["counts"]["unchanged"] == 62
    v1, v2 = fetch_version(hh, file_id, 1), fetch_version(hh, file_id, 2)
    for fmt in EXPORT_FORMATS:
        assert d["tokens"][fmt]["lines"]["change"] == _lines(v2.raw[fmt]) - _lines(v1.raw[fmt])
    print(f"\ncorpus diff v1 -> v2: +{len(d['conversations']['added'])} conversations, "
          f"splits {({s: m['change'] for s, m in d['splits']['conversations'].items()})}, "
          f"openai lines {d['tokens']['openai']['lines']}, trainable/epoch "
          f"{d['tokens']['openai']['trainable_tokens_per_epoch']}, {len(d['coverage']['changed_cells'])} cells moved, "
          f"{len(d['coverage']['filled'])} filled, empty cells {d['coverage']['empty_cells']}")
