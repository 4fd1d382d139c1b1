"""Publication's writer driven by hand (issue 14): the members a real job staged (PostgreSQL, the
local store) are written by `VersionWriter` the way `PipelineSteps.generate` writes them, then
the edges a pipeline run never shows are taken one at a time: a stored bundle that does not fit
its layout, statistics that disagree with the export files, an empty writer, the read-ahead
window on the process's shared pool."""
from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import lorafiles
from lorafiles.db.connect import connect
from lorafiles.db.repository import Repository
from lorafiles.domain.exports import BUILDER_VERSION, EXPORT_FORMATS, ExportAccumulator, format_notes
from lorafiles.domain.render import FileHeader
from lorafiles.domain.summary import ConversationStats, SummaryAccumulator
from lorafiles.tokens import get_model
from lorafiles.usecases.common import ARTIFACTS
from lorafiles.usecases.publish import VersionWriter, stream_members
from lorafiles.usecases.steps import job_policy

from stepkit import make_kit


@pytest.fixture(scope="module")
def staged(module_db_url, tmp_path_factory) -> dict[str, Any]:
    """A create of three conversations, staged (every batch) but not generated (once: the tests
    below only read it and write their own folders)."""
    kit = make_kit(module_db_url, tmp_path_factory.mktemp("writer"))
    ids = kit.conversations(2) + kit.conversations(1, quirks=["double_escaped_newline"])  # (fixed in exports)
    job_id = kit.start(kind="create", conversation_ids=ids, name="writer by hand")
    kit.stage(job_id)
    job = kit.job(job_id)
    with connect(kit.url) as conn:
        repo = Repository(conn)
        f = repo.file(str(job["file_id"]))
        entries = list(repo.version_entries(str(job["file_id"]), job_id))
    policy = job_policy(job, f, kit.service.steps.settings)
    members = list(stream_members(kit.store, entries))
    yield {"kit": kit, "ids": ids, "job": job, "file": f, "policy": policy, "members": members}
    kit.service.db.close()


def writer_for(staged: dict[str, Any], folder: Path, members: list | None = None,
               figures: dict[str, Any] | None = None, policy: Any = None) -> VersionWriter:
    members = staged["members"] if members is None else members
    acc, exports, warnings = SummaryAccumulator(), ExportAccumulator(), Counter()
    for entry, *_ in members:
        acc.add(ConversationStats.from_row(entry))
        exports.add(entry["export_stats"])
        warnings.update(w["code"] for w in entry["warnings"])
    f, policy = staged["file"], policy or staged["policy"]
    header = FileHeader(file_name=f["name"], file_version=1, created_date="2026-12-03T00:00:00Z",
                        last_updated="2026-12-03T00:00:00Z", target_model=policy.target_model, vertical=None,
                        total_conversations=acc.conversations, total_training_pairs=acc.training_pairs,
                        total_turns=acc.pairs, quality_summary=acc.quality_summary(),
                        scaffolding_distribution=acc.scaffolding_distribution(), consultant_profile={})
    return VersionWriter(folder, file_id=str(f["id"]), version=1, header=header, policy=policy,
                         model=get_model(policy.target_model), export_figures=figures or exports.result(),
                         source_warnings=warnings)


def test_the_writer_names_each_artifact_with_its_bytes_and_counts_every_line(staged, tmp_path: Path):
    writer = writer_for(staged, tmp_path)
    for member in staged["members"]:
        writer.add(*member)
    written = writer.finish()
    assert set(written) == set(ARTIFACTS) and writer.members == 3
    for name, a in written.items():
        data = (tmp_path / a["file"]).read_bytes()
        assert (a["file"], a["content_type"]) == ARTIFACTS[name]
        assert (a["size"], a["lines"]) == (len(data), data.count(b"\n")), name
    doc = json.loads((tmp_path / "training.json").read_bytes())
    assert [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]] == staged["ids"]
    jsonl = (tmp_path / "training.jsonl").read_bytes().splitlines()
    assert json.loads(jsonl[0]) == {"_meta": {"file_name": "writer by hand", "total_pairs": len(jsonl) - 1,
                                              "version": "4.0.0"}}
    manifest = json.loads((tmp_path / written["manifest"]["file"]).read_bytes())
    assert manifest["member_count"] == 3 and [m["conversation_id"] for m in manifest["members"]] == staged["ids"]
    model = get_model(staged["policy"].target_model)
    assert manifest["model"] == {"id": "mistral-7b-instruct-v0.2", "tokenizer_id": model.tokenizer_id,
                                 "vocab_sha256": model.vocab_sha256, "template_id": model.template_id,
                                 "template_sha256": model.template_sha256}
    assert len(model.vocab_sha256) == len(model.template_sha256) == 64 and model.tokenizer_id and model.template_id
    assert manifest["builder"] == {"name": "lorafiles", "version": lorafiles.__version__, "exports": BUILDER_VERSION}
    figures = writer.figures
    assert manifest["policy_digest"] == staged["policy"].digest() == staged["members"][0][0]["policy_digest"]
    assert manifest["text_fixes"] == {
        "fix_literal_escapes": staged["policy"].fix_literal_escapes,
        "literal_escapes_fixed": figures["changes"]["literal_escapes_fixed"],
        "applies_to": "exports only; training.json and training.jsonl carry the text as written"}
    assert figures["changes"]["literal_escapes_fixed"] > 0  # the third conversation's literal \n
    assert manifest["format_notes"] == format_notes()
    # the manifest and the report are written with sorted keys (a rebuild is byte-identical), their
    # long lists streamed after the sorted head
    for name, streamed in (("manifest", ["members"]), ("report", ["conversations", "dataset_quality"])):
        raw = (tmp_path / written[name]["file"]).read_bytes()
        doc = json.loads(raw)
        head = json.dumps({k: v for k, v in doc.items() if k not in streamed}, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode()[:-1]
        assert raw.startswith(head + b',"' + streamed[0].encode() + b'":['), name
        assert list(doc)[-len(streamed):] == streamed
    assert (manifest["exclusions"], manifest["trims"], manifest["changes"]) == (
        figures["exclusions"], figures["trims"], figures["changes"])
    assert manifest["tokens"] == {fmt: figures["formats"][fmt] for fmt in EXPORT_FORMATS}
    assert set(manifest["dataset"]["splits"]["lines"]) == set(EXPORT_FORMATS)
    assert [(m["source_file"], m["source_sha256"]) for m in manifest["members"]] == [
        (e["source_file"], e["source_sha256"]) for e, *_ in staged["members"]]
    assert manifest["file"] == {"id": str(staged["file"]["id"]), "name": "writer by hand", "version": 1,
                                "last_updated": "2026-12-03T00:00:00Z"}
    assert manifest["text_fixes"]["fix_literal_escapes"] == staged["policy"].fix_literal_escapes
    report = json.loads((tmp_path / written["report"]["file"]).read_bytes())
    assert [c["conversation_id"] for c in report["conversations"]] == staged["ids"]
    assert report["model"] == manifest["model"] and report["version"] == 1
    assert (report["file_id"], report["file_name"]) == (str(staged["file"]["id"]), "writer by hand")
    warned = Counter(w["code"] for e, *_ in staged["members"] for w in e["warnings"])
    assert report["summary"] == {"conversations": 3, "blocking_errors": 0, "source_warnings_by_code": dict(warned),
                                 "exports": figures}
    assert [c["source_warnings"] for c in report["conversations"]] == [e["warnings"] for e, *_ in staged["members"]]
    assert "dataset_quality" in report and report["conversations"][0]["exports"]
    assert report["policy"] == manifest["policy"] == staged["policy"].model_dump(mode="json")
    for fmt in EXPORT_FORMATS:  # each export holds exactly the members' sections, in order
        assert manifest["tokens"][fmt]["lines"] == written[fmt]["lines"] > 0
    assert not (tmp_path / "members.part").read_bytes().startswith(b",")


def test_a_bundle_that_does_not_fit_its_layout_is_refused_naming_the_member(staged, tmp_path: Path):
    writer = writer_for(staged, tmp_path)
    entry, json_fragment, jsonl_lines, exports = staged["members"][1]
    with pytest.raises(ValueError) as err:
        writer.add(entry, json_fragment, jsonl_lines, exports[: len(exports) // 2])  # a truncated bundle
    assert str(err.value).startswith(f"conversation {entry['conversation_id']}: ")


def test_an_export_whose_lines_disagree_with_its_statistics_is_never_finished(staged, tmp_path: Path):
    members = staged["members"]
    acc = ExportAccumulator()
    for entry, *_ in members:
        acc.add(entry["export_stats"])
    figures = acc.result()
    fmt = EXPORT_FORMATS[-1]
    expected = figures["formats"][fmt]["lines"]
    figures["formats"][fmt]["lines"] = expected + 1  # statistics one line ahead of the file
    writer = writer_for(staged, tmp_path, figures=figures)
    for member in members:
        writer.add(*member)
    with pytest.raises(RuntimeError) as err:
        writer.finish()
    assert str(err.value) == f"{fmt} export has {expected} lines, its statistics {expected + 1}"


def test_a_writer_with_no_member_still_closes_every_document(staged, tmp_path: Path):
    writer = writer_for(staged, tmp_path, members=[])
    written = writer.finish()
    doc = json.loads((tmp_path / "training.json").read_bytes())
    assert doc["conversations"] == []
    report = json.loads((tmp_path / written["report"]["file"]).read_bytes())
    manifest = json.loads((tmp_path / written["manifest"]["file"]).read_bytes())
    assert report["conversations"] == [] and manifest["members"] == [] and manifest["member_count"] == 0


def test_one_member_makes_documents_without_a_leading_separator(staged, tmp_path: Path):
    writer = writer_for(staged, tmp_path, members=staged["members"][:1])
    writer.add(*staged["members"][0])
    written = writer.finish()
    raw = (tmp_path / "training.json").read_bytes()
    assert raw.endswith(b"}\n  ]\n}\n") and b"[\n    {" in raw and b"[\n,\n" not in raw
    manifest = json.loads((tmp_path / written["manifest"]["file"]).read_bytes())
    assert [m["conversation_id"] for m in manifest["members"]] == staged["ids"][:1]


class CountingStore:
    """Counts the reads in flight at once (each first object answered slowly, so they pile up)."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects, self.active, self.peak = objects, 0, 0
        self._lock = threading.Lock()

    def get(self, bucket: str, key: str) -> bytes:
        with self._lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        time.sleep(0.02 if key.endswith(".0") else 0.001)
        with self._lock:
            self.active -= 1
        return self.objects[key]


def test_the_shared_pool_reads_ahead_no_further_than_its_window():
    entries = [{"json_fragment_key": f"{i}.0", "jsonl_fragment_key": f"{i}.1", "exports_fragment_key": f"{i}.2"}
               for i in range(12)]
    store = CountingStore({f"{i}.{k}": b"x" for i in range(12) for k in range(3)})
    assert len(list(stream_members(store, entries, window=2))) == 12
    assert store.peak <= 6  # the process's pool has 64 threads: only the window holds it back


def canonical(value: Any, indent: int | None = None) -> bytes:
    """What orjson writes with sorted keys (compact, or indented by 2)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=indent,
                      separators=(",", ": ") if indent else (",", ":")).encode()


def test_every_streamed_record_and_config_is_written_in_its_canonical_bytes(staged, tmp_path: Path):
    """Byte-stable artifacts: each report entry, each manifest member (one excluded as an exact
    duplicate, so its keys do not come in sorted order by themselves), the dataset-quality tail,
    LLaMA-Factory's indented dataset_info.json, axolotl.yml's path and the card's identity."""
    entry, *objects = staged["members"][0]
    # (its stored warnings' keys in reverse order: the bytes must not depend on how a row came back)
    reordered = [dict(reversed(list(w.items()))) for w in entry["warnings"]]
    copy = ({**entry, "conversation_id": "ffffffff-0000-4000-8000-000000000001", "warnings": reordered}, *objects)
    members = [*staged["members"], copy]
    writer = writer_for(staged, tmp_path, members=members,
                        policy=staged["policy"].model_copy(update={"exact_duplicates": "exclude"}))
    for member in members:
        writer.add(*member)
    written = writer.finish()
    manifest_raw = (tmp_path / written["manifest"]["file"]).read_bytes()
    manifest = json.loads(manifest_raw)
    excluded = [m for m in manifest["members"] if "excluded" in m]
    assert [m["conversation_id"] for m in excluded] == [copy[0]["conversation_id"]]
    assert manifest_raw.endswith(b',"members":' + canonical(manifest["members"]) + b"}\n")

    report_raw = (tmp_path / written["report"]["file"]).read_bytes()
    report = json.loads(report_raw)
    for c in report["conversations"]:
        lead = canonical({"conversation_id": c["conversation_id"], "source_warnings": c["source_warnings"]})
        assert lead[:-1] + b',"exports":' in report_raw, c["conversation_id"]
    assert any(w for c in report["conversations"] for w in c["source_warnings"])  # (warnings with several keys)
    assert report["dataset_quality"] == writer.dataset.result and report["dataset_quality"]["splits"]
    assert report_raw.endswith(b'],"dataset_quality":' + canonical(report["dataset_quality"]) + b"}\n")

    info_raw = (tmp_path / written["dataset_info"]["file"]).read_bytes()
    info = json.loads(info_raw)
    assert info_raw == canonical(info, indent=2) + b"\n"
    assert list(info) == ["lorafiles_writer_by_hand"] and info["lorafiles_writer_by_hand"]["file_name"] == "sharegpt.jsonl"
    assert '  - path: "axolotl.jsonl"' in (tmp_path / written["axolotl_config"]["file"]).read_text()
    card = (tmp_path / written["card"]["file"]).read_text()
    assert f"Training file `{staged['file']['id']}`" in card and "# writer by hand — version 1" in card


def test_a_split_file_whose_lines_disagree_with_its_members_statistics_is_never_finished(staged, tmp_path: Path):
    """A member's statistics claiming one more openai example than its bundle holds: the main export's
    figures (from the untouched members) agree, the split file it lands in does not."""
    members = staged["members"]
    writer = writer_for(staged, tmp_path)
    first, *rest = members
    entry = dict(first[0])
    stats = json.loads(json.dumps(entry["export_stats"]))
    stats["tokens"]["openai"].append(stats["tokens"]["openai"][0])
    entry["export_stats"] = stats
    writer.add(entry, *first[1:])
    for member in rest:
        writer.add(*member)
    with pytest.raises(RuntimeError) as err:
        writer.finish()
    name, lines = str(err.value).split(" lines,")[0].split(" has ")
    assert name in ("openai_train", "openai_validation")
    assert str(err.value) == f"{name} has {lines} lines, its members' statistics {int(lines) + 1}"
