"""The trainer-ready exports of PUBLISHED versions (issue 8, "Must show"), through the service and
the real pipeline: real PostgreSQL, local storage, the production state machine in moto
(tests/core/core_harness.py). Every figure is recomputed here from the downloaded bytes with the
real tokenizers and chat templates (`lorafiles.tokens`), never read back from the builder.

Builds (module-scoped, each done once): the 72-conversation corpus and the 16 enriched fixtures,
each into one training file per supported model (`policy={"target_model": model}`).

    .venv/bin/pytest tests/exports -q -s -p no:cacheprovider     # -s shows the corpus figures
"""
from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from published_helpers import (LINE_KEYS, Fixtures, Version, add_to_file, create_file, fetch_version,
                               figures, has_key, import_folder)

from cli_helpers import run_cli
from core_harness import INPUT_BUCKET, OWNER, Harness, harness
from lorafiles.domain.exports import EXPORT_FORMATS, TrainingPolicy, view_of
from lorafiles.domain.exports.fixes import fix_literal_escapes
from lorafiles.errors import InvalidRequest
from lorafiles.tokens import SUPPORTED_MODELS, default_max_length, get_model
from lorafiles.usecases.common import ARTIFACTS

FOLDERS = ("corpus", "enriched")
BUILDS = [(m, f) for m in SUPPORTED_MODELS for f in FOLDERS]
DEFAULT = SUPPORTED_MODELS[0]
assert DEFAULT == "mistral-7b-instruct-v0.2"
TRAIN_OPEN, TRAIN_CLOSE = "⟦TRAIN⟧", "⟦/TRAIN⟧"


# ---------------------------------------------------------------------------- builds

class Built:
    """One training file built through `start_job(kind="create", policy={"target_model": model})`."""

    def __init__(self, h: Harness, fx: Fixtures, model_id: str) -> None:
        self.fx, self.model_id, self.model = fx, model_id, get_model(model_id)
        self.job = create_file(h, fx.ids, name=f"{fx.folder} {model_id} {uuid.uuid4().hex[:8]}",
                               target_model=model_id)
        self.file_id = str(self.job["file_id"])
        self.shown = h.service.reading.show_file(OWNER, self.file_id)
        self.v1: Version = fetch_version(h, self.file_id, 1)
        self._counts: dict[str, list[tuple[int, int]]] | None = None

    @property
    def counts(self) -> dict[str, list[tuple[int, int]]]:
        """(total, trainable) of every line of every export, counted here with the file's own model."""
        if self._counts is None:
            self._counts = {fmt: [(c.total, c.trainable) for c in (self.model.count(m, t)
                                                                   for m, t in self.v1.views(fmt))]
                            for fmt in EXPORT_FORMATS}
        return self._counts

    @property
    def target_pairs(self) -> list[dict[str, Any]]:
        return [p for b in self.fx.blobs.values() for p in json.loads(b)["training_pairs"]
                if p["target_response"] is not None]


_state: dict[Any, Any] = {}


@pytest.fixture(scope="module")
def hh(module_db_url: str, tmp_path_factory: pytest.TempPathFactory):
    with harness(module_db_url, tmp_path_factory.mktemp("exports")) as h:
        yield h
    _state.clear()


def _fixtures(h: Harness, root: Path, folder: str) -> Fixtures:
    if folder not in _state:
        _state[folder] = import_folder(h, root / folder)
    return _state[folder]


def _built(h: Harness, root: Path, model_id: str, folder: str) -> Built:
    key = (model_id, folder)
    if key not in _state:
        _state[key] = Built(h, _fixtures(h, root, folder), model_id)
    return _state[key]


@pytest.fixture(params=BUILDS, ids=[f"{f}-{m}" for m, f in BUILDS])
def built(request, hh: Harness, shared_fixtures: Path) -> Built:
    model_id, folder = request.param
    return _built(hh, shared_fixtures, model_id, folder)


@pytest.fixture
def corpus_default(hh: Harness, shared_fixtures: Path) -> Built:
    return _built(hh, shared_fixtures, DEFAULT, "corpus")


# ---------------------------------------------------------------------------- 1. every line, every model

def test_every_export_line_renders_through_every_models_template(built: Built):
    """0 render failures: each line, read as a trainer reads it (`view_of`), through each supported
    model's real chat template (Mistral's raises on broken alternation, a repeated user turn, …)."""
    models = [get_model(m) for m in SUPPORTED_MODELS]
    failures, rendered = [], 0
    for fmt in EXPORT_FORMATS:
        assert built.v1.lines[fmt], f"{fmt}: no line at all"
        for number, (messages, _) in enumerate(built.v1.views(fmt), start=1):
            for model in models:
                try:
                    text = model.render(messages)
                    assert messages[-1]["content"] in text
                    rendered += 1
                except Exception as exc:  # noqa: BLE001 - every failure is collected and shown
                    failures.append(f"{fmt} line {number} with {model.id}: {type(exc).__name__}: {exc}")
    assert failures == []
    assert rendered == len(models) * sum(len(built.v1.lines[f]) for f in EXPORT_FORMATS)


def test_every_example_fits_and_trains_and_the_manifest_figures_are_true(built: Built):
    """With the file's own model: every line <= max_length and > 0 trainable tokens; the manifest's
    token statistics are those of the published lines, recounted here (nearest-rank)."""
    man = built.v1.manifest
    expected_policy = TrainingPolicy(target_model=built.model_id, max_length=default_max_length(built.model_id))
    assert man["policy"] == expected_policy.model_dump(mode="json")
    assert man["policy_digest"] == expected_policy.digest()
    m = built.model
    assert man["model"] == {"id": m.id, "tokenizer_id": m.tokenizer_id, "vocab_sha256": m.vocab_sha256,
                            "template_id": m.template_id, "template_sha256": m.template_sha256}
    limit = man["policy"]["max_length"]
    for fmt in EXPORT_FORMATS:
        counts = built.counts[fmt]
        too_long = [(i + 1, t) for i, (t, _) in enumerate(counts) if t > limit]
        untrained = [i + 1 for i, (_, tr) in enumerate(counts) if tr <= 0]
        assert (too_long, untrained) == ([], []), fmt
        stats = man["tokens"][fmt]
        totals, trainables = [t for t, _ in counts], [tr for _, tr in counts]
        assert stats["lines"] == len(counts)
        assert stats["total_tokens"] == figures(totals), fmt
        assert stats["trainable_tokens"] == figures(trainables), fmt
        assert stats["training_tokens_per_epoch"] == sum(totals)
        assert stats["trainable_tokens_per_epoch"] == sum(trainables)
        assert stats["examples_over_max_length"] == 0


def test_manifest_artifacts_are_the_downloaded_bytes(built: Built):
    v = built.v1
    listed = v.manifest["artifacts"]
    assert set(listed) == set(ARTIFACTS) - {"manifest"}  # the manifest cannot list its own hash
    for name, data in v.raw.items():
        facts = {"lines": data.count(b"\n"), "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        located = v.located[name]
        assert located["key"] == f"{OWNER}/{built.file_id}/v1/{ARTIFACTS[name][0]}"
        assert {k: located[k] for k in facts} == facts, name
        if name != "manifest":
            assert {k: listed[name][k] for k in facts} == facts, name
            assert listed[name]["file"] == ARTIFACTS[name][0]
    for fmt in EXPORT_FORMATS:
        assert listed[fmt]["lines"] == len(v.lines[fmt]) == v.manifest["tokens"][fmt]["lines"]
    # the file row points at the same v4 objects
    f = built.shown["file"]
    assert (f["json_sha256"], f["jsonl_sha256"]) == (listed["json"]["sha256"], listed["jsonl"]["sha256"])


def test_manifest_members_are_the_files_conversations_with_their_source_sha256(built: Built):
    man = built.v1.manifest
    members = built.shown["members"]
    assert [m["conversation_id"] for m in members] == built.fx.ids
    assert man["member_count"] == len(built.fx.ids)
    # each member also names its split (issue 12: tests/quality checks the assignment itself)
    assert {m["split"] for m in man["members"]} <= {"train", "validation"}
    assert [{k: v for k, v in m.items() if k != "split"} for m in man["members"]] == [
        {"conversation_id": cid, "source_file": f"{INPUT_BUCKET}/{OWNER}/{cid}/enriched.json",
         "source_sha256": built.fx.sha256[cid]} for cid in built.fx.ids]


def test_report_covers_every_member_and_adds_up(built: Built):
    report, man = built.v1.report, built.v1.manifest
    assert (report["file_id"], report["version"]) == (built.file_id, 1)
    assert report["summary"]["conversations"] == len(built.fx.ids)
    assert report["summary"]["blocking_errors"] == 0
    convs = report["conversations"]
    assert [c["conversation_id"] for c in convs] == built.fx.ids
    assert all(c["exports"]["conversation_id"] == c["conversation_id"] and c["exports"]["ok"] for c in convs)
    assert all(c["exports"]["errors"] == [] for c in convs)
    for fmt in EXPORT_FORMATS:  # each conversation's lines and tokens are its part of the published file
        at = 0
        for c in convs:
            entry = c["exports"]["formats"][fmt]
            mine = built.counts[fmt][at:at + entry["lines"]]
            at += entry["lines"]
            assert [tuple(e) for e in entry["examples"]] == mine, (fmt, c["conversation_id"])
            assert (entry["total_tokens"], entry["trainable_tokens"]) == (sum(t for t, _ in mine),
                                                                         sum(tr for _, tr in mine))
        assert at == len(built.v1.lines[fmt])
    by_reason = Counter(e["reason"] for c in convs for e in c["exports"]["exclusions"])
    assert {r: x["count"] for r, x in man["exclusions"].items() if x["count"]} == dict(by_reason)
    assert man["trims"]["count"] == sum(len(c["exports"]["trims"]) for c in convs)


def test_nothing_is_cut_silently(built: Built):
    """Every target pair of the fixture files is either one TRL line (a trained turn) or an
    exclusion counted by reason; the truncated targets (ending in a backslash) are exactly the
    `truncated_target` exclusions, and none is trained in any export."""
    man = built.v1.manifest
    pairs = built.target_pairs
    excluded = sum(x["count"] for x in man["exclusions"].values())
    assert len(built.v1.lines["trl"]) + excluded == len(pairs)
    truncated = [p for p in pairs if p["target_response"].rstrip().endswith("\\")]
    assert man["exclusions"]["truncated_target"]["count"] == len(truncated)
    if built.fx.folder == "corpus":
        assert (len(pairs), len(truncated)) == (212, 19)
    for fmt in EXPORT_FORMATS:
        for messages, trained in built.v1.views(fmt):
            assert not [m for m, t in zip(messages, trained) if t and m["content"].rstrip().endswith("\\")], fmt
    repeated = sum(1 for p in pairs if (p.get("conversation_history") or [])
                   and p["conversation_history"][-1].get("content") == p["current_user_input"])
    assert man["changes"]["repeated_user_input_removed"] == repeated


def test_lines_have_their_formats_shape(built: Built):
    """No `_meta` anywhere; each format's keys; OpenAI `weight` only on assistant messages, int 0/1;
    roles alternate after the system message, start on user, end on a trained assistant turn; no
    empty content; the literal escapes are fixed (policy default)."""
    problems = []
    for fmt in EXPORT_FORMATS:
        for number, record in enumerate(built.v1.lines[fmt], start=1):
            where = f"{fmt} line {number}"
            if has_key(record, "_meta") or set(record) != LINE_KEYS[fmt]:
                problems.append(f"{where}: keys {sorted(record)}")
            messages, trained = view_of(fmt, record)
            roles = [m["role"] for m in messages]
            if roles[0] != "system" or len(roles) % 2 != 1 or roles[1:] != ["user", "assistant"] * (len(roles) // 2):
                problems.append(f"{where}: roles {roles}")
            if not trained[-1] or not any(trained):
                problems.append(f"{where}: does not end on a trained assistant message")
            if any(not m["content"].strip() for m in messages):
                problems.append(f"{where}: empty content")
            if any("\\n" in m["content"] or '\\"' in m["content"] for m in messages):
                problems.append(f"{where}: literal escape left in the text")
            if fmt == "openai":
                for m in record["messages"]:
                    if m["role"] == "assistant":
                        if "weight" not in m or type(m["weight"]) is not int or m["weight"] not in (0, 1):
                            problems.append(f"{where}: assistant weight {m.get('weight')!r}")
                    elif "weight" in m:
                        problems.append(f"{where}: weight on a {m['role']} message")
                    if set(m) - {"role", "content", "weight"}:
                        problems.append(f"{where}: message keys {sorted(m)}")
            if fmt == "axolotl" and any(type(m["train"]) is not bool or (m["train"] and m["role"] != "assistant")
                                        for m in record["messages"]):
                problems.append(f"{where}: train flags")
            if fmt == "trl" and (len(record["completion"]) != 1 or record["prompt"][-1]["role"] != "user"):
                problems.append(f"{where}: prompt/completion split")
    assert problems == []


def test_the_formats_agree_with_each_other(built: Built):
    """openai and axolotl hold the same examples; TRL is one line per trained turn of those
    examples, in order; sharegpt trains exactly the turns the others train."""
    v = built.v1
    openai, axolotl = v.views("openai"), v.views("axolotl")
    assert openai == axolotl
    expected_trl = [{"prompt": messages[:j], "completion": [messages[j]]}
                    for messages, trained in openai for j, t in enumerate(trained) if t]
    assert v.lines["trl"] == expected_trl
    trained_of = lambda views: Counter(m["content"] for ms, ts in views for m, t in zip(ms, ts) if t)  # noqa: E731
    assert trained_of(v.views("sharegpt")) == trained_of(openai)
    assert sum(trained_of(openai).values()) == len(v.lines["trl"])


def test_trainer_configs_name_the_published_files_and_the_loss_policy(built: Built):
    """axolotl.yml loads the published axolotl.jsonl with the per-message `train` flags ruling and
    the policy's sequence length; dataset_info.json maps LLaMA-Factory onto the sharegpt lines'
    actual keys and role tags."""
    yml = yaml.safe_load(built.v1.raw["axolotl_config"])
    assert yml["sequence_len"] == built.v1.manifest["policy"]["max_length"]
    assert yml["excess_length_strategy"] == "raise"  # Axolotl's default `drop` would lose rows silently
    [ds] = yml["datasets"]
    assert ds["path"] == ARTIFACTS["axolotl"][0] and ds["type"] == "chat_template"
    assert (ds["field_messages"], ds["message_field_training"], ds["roles_to_train"]) == (
        "messages", "train", ["assistant"])
    info = json.loads(built.v1.raw["dataset_info"])
    [entry] = info.values()
    assert entry["file_name"] == ARTIFACTS["sharegpt"][0] and entry["formatting"] == "sharegpt"
    lines = built.v1.lines["sharegpt"]
    assert set(entry["columns"].values()) == set(lines[0])
    tags = entry["tags"]
    assert {tags["role_tag"], tags["content_tag"]} == set(lines[0][entry["columns"]["messages"]][0])
    assert {m[tags["role_tag"]] for r in lines for m in r["conversations"]} == {tags["user_tag"], tags["assistant_tag"]}


# ---------------------------------------------------------------------------- 2. TRL prompt prefix

def test_trl_prompt_tokens_are_a_prefix_of_prompt_plus_completion(built: Built):
    """For each supported model: ids(render(prompt, add_generation_prompt=True)) is a prefix of
    ids(render(prompt + completion)), and what follows it is the trainable part the file's model
    counts."""
    bad = []
    for model in (get_model(m) for m in SUPPORTED_MODELS):
        for number, record in enumerate(built.v1.lines["trl"], start=1):
            prompt_ids = model.encode(model.render(record["prompt"], add_generation_prompt=True))
            full_ids = model.encode(model.render(record["prompt"] + record["completion"]))
            if full_ids[:len(prompt_ids)] != prompt_ids or len(full_ids) <= len(prompt_ids):
                bad.append(f"{model.id} line {number}")
            elif model.id == built.model_id:
                assert built.counts["trl"][number - 1] == (len(full_ids), len(full_ids) - len(prompt_ids))
    assert bad == []


# ---------------------------------------------------------------------------- 3. datasets

def _null_rows(rows: list[dict[str, Any]], fmt: str) -> list[int]:
    """Rows whose fields are all null, or whose message list (or a message's role/text) is null."""
    lists = {"openai": ["messages"], "axolotl": ["messages"], "trl": ["prompt", "completion"],
             "sharegpt": ["conversations"]}.get(fmt, [])
    keys = ("from", "value") if fmt == "sharegpt" else ("role", "content")
    out = []
    for i, row in enumerate(rows):
        if all(v is None for v in row.values()) or any(row.get(k) is None for k in lists) or any(
                m is None or any(m.get(k) is None for k in keys) for k in lists for m in row.get(k) or []):
            out.append(i)
        elif fmt == "sharegpt" and row.get("system") is None:
            out.append(i)
    return out


@pytest.fixture
def offline_datasets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """`datasets` with no hub access and a throw-away cache (set before it is imported)."""
    for var, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
                       "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
                       "HF_HUB_DISABLE_TELEMETRY": "1"}.items():
        monkeypatch.setenv(var, value)
    import datasets  # a test dependency (pyproject `test` extra): missing is a failure, not a skip

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # in case it was imported before
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    datasets.disable_progress_bars()
    return datasets, tmp_path


def test_datasets_loads_every_export_with_one_schema_and_no_null_rows(built: Built, offline_datasets):
    """`datasets.load_dataset("json", data_files=...)` on each downloaded export: the schema the
    format defines, every row as published, no null row. (datasets >= 5 stores a list of objects
    whose keys differ as `List(Json())`: OpenAI's `weight` is on assistant messages only.)"""
    datasets, tmp = offline_datasets
    from datasets import Features, Json, List, Value

    text = Value("string")
    expected = {
        "openai": Features({"messages": List(Json())}),
        "trl": Features({"prompt": List({"role": text, "content": text}),
                         "completion": List({"role": text, "content": text})}),
        "axolotl": Features({"messages": List({"role": text, "content": text, "train": Value("bool")})}),
        "sharegpt": Features({"conversations": List({"from": text, "value": text}), "system": text}),
    }
    folder = tmp / "download"
    folder.mkdir()
    for fmt in EXPORT_FORMATS:
        path = folder / ARTIFACTS[fmt][0]
        path.write_bytes(built.v1.raw[fmt])
        ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(tmp / "cache"))
        assert ds.features == expected[fmt], (fmt, ds.features)
        assert ds.num_rows == built.v1.manifest["artifacts"][fmt]["lines"]
        rows = ds.to_list()
        assert _null_rows(rows, fmt) == [], fmt
        assert rows == built.v1.lines[fmt], fmt  # loaded as published: nothing added, nothing lost
    # control: the same checks catch the v4 JSONL's `_meta` line (a row of nulls beside the pairs)
    v4 = folder / "training.jsonl"
    v4.write_bytes(built.v1.raw["jsonl"])
    rows = datasets.load_dataset("json", data_files=str(v4), split="train", cache_dir=str(tmp / "cache")).to_list()
    assert _null_rows([{k: v for k, v in r.items() if k != "_meta"} for r in rows], "jsonl") == [0]


# ---------------------------------------------------------------------------- 4. a per-file policy change

def _long_and_short(corpus: Built) -> tuple[list[str], list[str]]:
    """Corpus conversations whose Mistral examples are over 1024 tokens (longest first), and ones
    whose every example fits in 1024, from the default build's report."""
    per = {c["conversation_id"]: c["exports"]["formats"]["openai"] for c in corpus.v1.report["conversations"]}
    long_ = sorted((c for c, f in per.items() if f["max_total_tokens"] > 1024),
                   key=lambda c: (-per[c]["max_total_tokens"], c))
    short = sorted(c for c, f in per.items() if 0 < f["max_total_tokens"] <= 1024)
    return long_, short


def test_policy_change_on_add_rerenders_every_member_and_is_recorded(hh: Harness, corpus_default: Built):
    long_, short = _long_and_short(corpus_default)
    assert len(long_) >= 6 and len(short) >= 2
    first = [long_[0], long_[2], short[0]]
    added = [long_[1], long_[3], long_[4]]
    file_id = str(create_file(hh, first)["file_id"])
    v1 = fetch_version(hh, file_id, 1)
    assert v1.manifest["policy"] == TrainingPolicy().model_dump(mode="json")  # the deployment default
    assert max(get_model(DEFAULT).count(ms, tr).total for ms, tr in v1.views("openai")) > 1024

    job = add_to_file(hh, file_id, added, max_length=1024, over_length="trim_history")
    assert job["status"] == "succeeded", job["error"]
    assert job["published_version"] == 2
    assert job["rerender_ids"] == first  # the old members, re-rendered under the new policy
    v2 = fetch_version(hh, file_id, 2)
    new_policy = TrainingPolicy(max_length=1024, over_length="trim_history")
    man = v2.manifest
    assert man["policy"] == new_policy.model_dump(mode="json")
    assert man["policy_digest"] == new_policy.digest() != v1.manifest["policy_digest"]
    assert hh.service.reading.show_file(OWNER, file_id)["file"]["policy"] == new_policy.model_dump(mode="json")
    assert [m["conversation_id"] for m in man["members"]] == first + added
    assert man["members"][:3] == v1.manifest["members"]

    model = get_model(DEFAULT)
    for fmt in EXPORT_FORMATS:
        counts = [model.count(ms, tr) for ms, tr in v2.views(fmt)]
        assert max(c.total for c in counts) <= 1024, fmt
        assert min(c.trainable for c in counts) > 0, fmt
        assert man["tokens"][fmt]["total_tokens"]["max"] == max(c.total for c in counts)
    assert man["trims"]["count"] > 0 and man["trims"]["context_tokens_removed"] > 0
    assert all(s["context_tokens_trimmed"] == man["trims"]["context_tokens_removed"] for s in man["tokens"].values())
    assert man["tokens"]["openai"]["lines"] != v1.manifest["tokens"]["openai"]["lines"]

    # old members re-rendered under the new limit; the one that already fitted is unchanged
    before, after = v1.member_slices("openai"), v2.member_slices("openai")
    trims = {c["conversation_id"]: c["exports"]["trims"] for c in v2.report["conversations"]}
    for cid in first[:2]:
        assert trims[cid], cid
        assert after[cid] != before[cid]
        assert len(after[cid]) > len(before[cid])  # trimmed history: one conversation, several examples
        systems = {line["messages"][0]["content"] for line in after[cid]}
        assert systems == {before[cid][0]["messages"][0]["content"]}  # the system message stays
        old_trained = {m["content"] for line in before[cid] for m in line["messages"] if m.get("weight") == 1}
        new_trained = {m["content"] for line in after[cid] for m in line["messages"] if m.get("weight") == 1}
        assert old_trained <= new_trained, cid  # nothing that was trained at 2048 is lost at 1024
        trained_count = Counter(m["content"] for line in after[cid] for m in line["messages"] if m.get("weight") == 1)
        assert set(trained_count.values()) == {1}, cid  # an earlier turn re-used as context only, never trained twice
    assert after[short[0]] == before[short[0]] and not trims[short[0]]
    for fmt in EXPORT_FORMATS:
        assert v2.member_slices(fmt)[short[0]] == v1.member_slices(fmt)[short[0]], fmt
    # a turn left untrained at 1024 is one that does not fit even alone (system + its user message + it)
    for conv in v2.report["conversations"]:
        pairs = {p["id"]: p for p in json.loads(corpus_default.fx.blobs[conv["conversation_id"]])["training_pairs"]}
        for e in conv["exports"]["exclusions"]:
            if e["reason"] == "over_length":
                p = pairs[e["pair_id"]]
                alone = [{"role": "system", "content": p["system_prompt"]},
                         {"role": "user", "content": fix_literal_escapes(p["current_user_input"])},
                         {"role": "assistant", "content": fix_literal_escapes(p["target_response"])}]
                assert model.count(alone, [False, False, True]).total > 1024, e
    seq = [yaml.safe_load(v.raw["axolotl_config"])["sequence_len"] for v in (v1, v2)]
    assert seq == [2048, 1024]
    print(f"\npolicy change on add: openai lines v1 {len(v1.lines['openai'])} -> v2 {len(v2.lines['openai'])}, "
          f"trl {len(v1.lines['trl'])} -> {len(v2.lines['trl'])}; trims {man['trims']}; "
          f"over_length v1 {v1.manifest['exclusions']['over_length']} -> v2 {man['exclusions']['over_length']}")
    # the v4 content of old members is the same (exports re-rendered from their stored fragments)
    v1_full, v2_full = json.loads(v1.raw["json"]), json.loads(v2.raw["json"])
    assert v2_full["conversations"][:3] == v1_full["conversations"]

    # the file keeps its new policy: a later add without policy builds under it and re-renders nobody
    job = add_to_file(hh, file_id, [short[1]])
    assert job["status"] == "succeeded", job["error"]
    v3 = fetch_version(hh, file_id, 3)
    assert (v3.manifest["policy"], v3.manifest["policy_digest"]) == (man["policy"], man["policy_digest"])
    assert job["rerender_ids"] == []
    for fmt in EXPORT_FORMATS:
        slices = v3.member_slices(fmt)
        assert [slices[c] for c in first + added] == [v2.member_slices(fmt)[c] for c in first + added], fmt

    # v1 is still there, byte for byte
    again = fetch_version(hh, file_id, 1)
    assert again.raw == v1.raw
    assert {n: again.located[n]["sha256"] for n in ARTIFACTS} == {n: v1.located[n]["sha256"] for n in ARTIFACTS}


def _file_state(h: Harness, file_id: str) -> tuple[Any, ...]:
    shown = h.service.reading.show_file(OWNER, file_id)
    prefix = f"training-files/{OWNER}/{file_id}/"
    objects = {k: v for k, v in h.storage_listing().items() if k.startswith(prefix)}
    return shown["file"], shown["versions"], shown["members"], objects


def test_over_length_fail_fails_the_job_per_conversation_and_leaves_the_file_as_it_was(
        hh: Harness, corpus_default: Built):
    long_, short = _long_and_short(corpus_default)
    file_id = str(create_file(hh, [short[0]])["file_id"])
    before, counts = _file_state(hh, file_id), hh.table_counts()
    assert before[1] and len(before[3]) > 3  # a version with its artifacts and fragments
    job = add_to_file(hh, file_id, [long_[0], long_[5]], max_length=512, over_length="fail")
    assert job["status"] == "failed"
    err = job["error"]
    details = {d["conversation_id"]: d for d in err["details"]}
    assert {long_[0], long_[5]} <= set(details)
    for cid in (long_[0], long_[5]):
        codes = [e["code"] for e in details[cid]["errors"]]
        assert "over_length" in codes, (cid, codes)
        assert any("max_length 512" in e["message"] for e in details[cid]["errors"])
        assert cid in err["message"]
    after = _file_state(hh, file_id)
    assert after == before
    grown = {t: n - counts[t] for t, n in hh.table_counts().items() if n != counts[t]}
    assert grown == {"lora_training_jobs": 1}  # the failed job's record, nothing staged left behind


@pytest.mark.parametrize("kind", ["create", "add"])
@pytest.mark.parametrize(("policy", "field", "says"), [
    ({"max_length": 5}, "policy.max_length", "policy.max_length: Input should be greater than or equal to 128"),
    ({"target_model": "gpt-2-small"}, "policy.target_model", "policy.target_model: unknown target model 'gpt-2-small'; supported: "
                                                             "'mistral-7b-instruct-v0.2'"),
    ({"over_length": "chop"}, "policy.over_length", "policy.over_length: Input should be 'drop_turn', "
                                                    "'trim_history' or 'fail'"),
])
def test_an_invalid_policy_is_refused_before_anything_starts(hh: Harness, shared_fixtures: Path,
                                                              corpus_default: Built, kind, policy, field, says):
    """A valid selection with an invalid policy: InvalidRequest naming the field, no job, no file."""
    if kind == "add":  # conversations that are not members yet, onto an existing file
        ids, target, name = _fixtures(hh, shared_fixtures, "enriched").ids[:1], corpus_default.file_id, None
    else:
        ids, target, name = corpus_default.fx.ids[:2], None, f"refused {uuid.uuid4()}"
    assert hh.service.jobs.validate_selection(OWNER, ids, file_id=target, name=name)["ok"]
    counts, files = hh.table_counts(), hh.file_rows()
    with pytest.raises(InvalidRequest) as caught:
        hh.service.jobs.start_job(OWNER, kind=kind, conversation_ids=ids, file_id=target, name=name, policy=policy)
    exc = caught.value
    assert [d["field"] for d in exc.details] == [field]
    assert says in str(exc)
    assert (hh.table_counts(), hh.file_rows()) == (counts, files)


# ---------------------------------------------------------------------------- 5. byte-identical rebuild

VERSIONED = {"json", "report", "manifest", "card"}  # the dataset card (issue 12) names its version


def _without_version(name: str, data: bytes) -> Any:
    if name == "card":  # tests/quality checks that it differs only where it names its version
        return None
    doc = json.loads(data)
    if name == "json":
        doc["training_file_metadata"].pop("file_version")
        doc["training_file_metadata"].pop("last_updated")
    elif name == "report":
        doc.pop("version")
    elif name == "manifest":
        doc["file"].pop("version")
        doc["file"].pop("last_updated")
        for a in ("json", "report", "card"):
            for k in ("sha256", "size"):
                doc["artifacts"][a].pop(k)
    return doc


def test_a_rebuild_from_the_same_inputs_is_byte_identical(hh: Harness, corpus_default: Built):
    """Regenerate the default corpus file from its members (`start_regenerate`: every member is
    read again from its enriched file and rendered again; same policy). The cleanest honest check:
    the same file, so the file id and name that several artifacts carry are the same.

    Byte-identical: the four exports, axolotl.yml, dataset_info.json and training.jsonl (its
    `_meta` line has no version). Differing only by the version: training.json
    (`training_file_metadata.file_version`, and `last_updated` = the job's time), report.json
    (`version`) and manifest.json (`file.version`, `file.last_updated`, and the sha256/size it
    records for training.json and report.json). Those three are compared with exactly those keys
    removed, and the removed values are checked to be the new version's."""
    before = corpus_default.v1
    job = hh.service.jobs.start_regenerate(OWNER, corpus_default.file_id)
    hh.machine.wait(job["execution_arn"], timeout=300)
    done = hh.service.reading.get_job(OWNER, str(job["id"]))
    assert done["status"] == "succeeded", done["error"]
    after = fetch_version(hh, corpus_default.file_id, done["published_version"])
    assert after.version == 2
    same = {n for n in ARTIFACTS if after.located[n]["sha256"] == before.located[n]["sha256"]}
    assert same == set(ARTIFACTS) - VERSIONED
    for name in VERSIONED:
        assert _without_version(name, after.raw[name]) == _without_version(name, before.raw[name]), name
    assert json.loads(after.raw["json"])["training_file_metadata"]["file_version"] == 2
    assert (after.report["version"], after.manifest["file"]["version"]) == (2, 2)


# ---------------------------------------------------------------------------- 6. the CLI

def test_service_preview_is_the_published_line_as_its_model_renders_and_counts_it(hh: Harness, built: Built):
    """`reading.preview` for every format: each example is the published line, rendered by the
    file's model, with exactly the trained messages' spans marked and the counts recomputed here."""
    model = built.model
    for fmt in EXPORT_FORMATS:
        shown = hh.service.reading.preview(OWNER, built.file_id, fmt, n=3, version=1)
        assert (shown["model"], shown["lines"], len(shown["examples"])) == (model.id, len(built.v1.lines[fmt]), 3)
        for e, (messages, trained), count in zip(shown["examples"], built.v1.views(fmt), built.counts[fmt]):
            assert e["text"].replace(TRAIN_OPEN, "").replace(TRAIN_CLOSE, "") == model.render(messages), fmt
            assert (e["total_tokens"], e["trainable_tokens"]) == count
            spans = [part.split(TRAIN_CLOSE)[0] for part in e["text"].split(TRAIN_OPEN)[1:]]
            wanted = [m["content"] for m, t in zip(messages, trained) if t]
            assert len(spans) == len(wanted) and all(w in sp for w, sp in zip(wanted, spans)), fmt


def _cli(hh: Harness, *args: str):
    r = run_cli([*args, "--owner", OWNER], home=hh.root.parent, database_url=hh.url)
    r.no_traceback()
    assert r.code == 0, r.err
    return r


def test_cli_preview_prints_the_rendered_trl_examples_with_trained_spans(hh: Harness, corpus_default: Built):
    r = _cli(hh, "preview", corpus_default.file_id, "--n", "2", "--format", "trl", "--version", "1")
    model, lines = corpus_default.model, corpus_default.v1.lines["trl"]
    expected = [f"trl v1 rendered for {model.id} ({len(lines)} lines; trained spans between {TRAIN_OPEN} and "
                f"{TRAIN_CLOSE})"]
    for number, record in enumerate(lines[:2], start=1):
        prompt = model.render(record["prompt"], add_generation_prompt=True)
        full = model.render(record["prompt"] + record["completion"])
        assert full.startswith(prompt)
        count = model.count(*view_of("trl", record))
        expected += [f"--- line {number}: {count.total} tokens, {count.trainable} trainable",
                     prompt + TRAIN_OPEN + full[len(prompt):] + TRAIN_CLOSE]
    assert r.out == "\n".join(expected) + "\n"
    body = r.out.split("\n", 1)[1]  # after the header line (which names the markers)
    assert body.count(TRAIN_OPEN) == body.count(TRAIN_CLOSE) == 2
    assert record["completion"][0]["content"] in body.split(TRAIN_OPEN)[2].split(TRAIN_CLOSE)[0]


@pytest.mark.parametrize("args,expected", [
    (["--format", "json"], "argument --format: invalid choice: 'json' (choose from 'openai', 'trl', 'axolotl', 'sharegpt')"),
    (["--format", "../openai"], "invalid choice: '../openai'"),
    (["--n", "0"], "argument --n: 0 is not between 1 and 1000"),
    (["--n", "-3"], "argument --n: -3 is not between 1 and 1000"),
    (["--n", "1001"], "argument --n: 1001 is not between 1 and 1000"),
    (["--version", "9"], "version 9"),
])
def test_cli_preview_refuses_bad_requests_naming_what_is_wrong(hh: Harness, corpus_default: Built, args, expected):
    r = run_cli(["preview", corpus_default.file_id, *args, "--owner", OWNER], home=hh.root.parent, database_url=hh.url)
    r.no_traceback()
    assert r.code != 0 and r.out == ""
    assert expected in r.err, r.err


@pytest.mark.parametrize("fmt,n,message", [
    ("json", 3, "preview format must be one of openai, trl, axolotl, sharegpt, not 'json'"),
    ("", 3, "not ''"), ("openai", 0, "--n must be at least 1, not 0"), ("trl", -1, "not -1")])
def test_service_preview_refuses_what_the_cli_would_not_send(hh: Harness, corpus_default: Built, fmt, n, message):
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        hh.service.reading.preview(OWNER, corpus_default.file_id, fmt, n=n)


def test_cli_preview_of_a_file_that_is_not_the_owners_is_not_found(hh: Harness, corpus_default: Built):
    other = "0f0f0f0f-0000-4000-8000-00000000ffff"
    for file_id, owner in ((corpus_default.file_id, other), (str(uuid.uuid4()), OWNER)):
        r = run_cli(["preview", file_id, "--owner", owner], home=hh.root.parent, database_url=hh.url)
        r.no_traceback()
        assert r.code != 0 and file_id in r.err and "not found" in r.err.lower(), r.err


@pytest.mark.parametrize("fmt", ["manifest", "report", "openai", "axolotl_config", "dataset_info"])
def test_cli_download_writes_the_stored_bytes(hh: Harness, corpus_default: Built, tmp_path: Path, fmt: str):
    out = tmp_path / f"download-{fmt}"
    r = _cli(hh, "download", corpus_default.file_id, "--format", fmt, "--version", "1", "--out", str(out))
    assert out.read_bytes() == corpus_default.v1.raw[fmt]
    assert corpus_default.v1.located[fmt]["sha256"] in r.out


# ---------------------------------------------------------------------------- 7. the figures

def test_corpus_figures_per_model(hh: Harness, shared_fixtures: Path, tmp_path_factory: pytest.TempPathFactory):
    """The figures for the closing note (printed; `-s` shows them), also written as JSON."""
    out: dict[str, Any] = {}
    for model_id, folder in BUILDS:
        b = _built(hh, shared_fixtures, model_id, folder)
        man = b.v1.manifest
        entry = {"max_length": man["policy"]["max_length"], "over_length": man["policy"]["over_length"],
                 "conversations": man["member_count"], "formats": {},
                 "exclusions": {r: x for r, x in man["exclusions"].items() if x["count"]},
                 "trims": man["trims"], "changes": {k: n for k, n in man["changes"].items() if n}}
        for fmt in EXPORT_FORMATS:
            counts = b.counts[fmt]
            entry["formats"][fmt] = {"lines": len(counts),
                                     "total_tokens": figures([t for t, _ in counts]),
                                     "trainable_tokens": figures([tr for _, tr in counts]),
                                     "trainable_tokens_per_epoch": sum(tr for _, tr in counts)}
            assert entry["formats"][fmt]["total_tokens"] == man["tokens"][fmt]["total_tokens"]
        out.setdefault(folder, {})[model_id] = entry
    path = tmp_path_factory.mktemp("figures") / "exports_published_figures.json"
    path.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    assert json.loads(path.read_text()) == out
    for folder, per_model in out.items():
        print(f"\n=== {folder}: published exports per target model (recounted from the downloaded lines)")
        for model_id, e in per_model.items():
            print(f"-- {model_id} (max_length {e['max_length']}, {e['over_length']}, "
                  f"{e['conversations']} conversations)")
            for fmt, f in e["formats"].items():
                t, tr = f["total_tokens"], f["trainable_tokens"]
                print(f"   {fmt:9} {f['lines']:4} lines | total min/p50/p95/max {t['min']}/{t['p50']}/{t['p95']}/"
                      f"{t['max']} | trainable {tr['min']}/{tr['p50']}/{tr['p95']}/{tr['max']} "
                      f"(per epoch {f['trainable_tokens_per_epoch']})")
            print("   exclusions: " + (", ".join(f"{r} {x['count']} ({x['trainable_tokens']} trainable tokens)"
                                         for r, x in e["exclusions"].items()) or "none"))
            print(f"   trims: {e['trims']}")
            print("   changes: " + ", ".join(f"{k} {n}" for k, n in e["changes"].items()))
    print(f"\nfigures written to {path}")
