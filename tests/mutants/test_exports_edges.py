"""Edges of the trainer-ready exports that the trainers and the manifest depend on: the policy's
accepted ranges (and the field a rejection names), the Axolotl / LLaMA-Factory config a trainer
reads, the manifest's format notes, exact lines and trained spans, counts per reason and
boundaries such as max_length exactly reached (docs/EXPORTS.md, ../shared/spec/trainers.md)."""
from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "domain" / "exports"))

from exports_helpers import EOT, OVERHEAD, FakeModel, make_pairs, words  # noqa: E402

from lorafiles.domain.exports import (  # noqa: E402
    EXPORT_FILES,
    EXPORT_FORMATS,
    TrainingPolicy,
    axolotl_datasets_yaml,
    build_member_exports,
    format_notes,
)
from lorafiles.domain.exports.policy import DATASET_FIELDS  # noqa: E402

SYSTEM = "You are a kind advisor."


def build(pairs, model=None, **policy):
    return build_member_exports("c", pairs, TrainingPolicy(**policy), model or FakeModel())


def decoded(result, fmt):
    return [orjson.loads(line) for line in result.lines[fmt].splitlines()]


def rejected_field(**kwargs) -> str:
    with pytest.raises(ValidationError) as info:
        TrainingPolicy(**kwargs)
    (err,) = info.value.errors()
    return ".".join(str(x) for x in err["loc"])


# -- policy ----------------------------------------------------------------------------------------

def test_policy_defaults_of_the_dataset_settings():
    p = TrainingPolicy()
    assert (p.validation_fraction, p.split_seed, p.exact_duplicates, p.coverage_min_per_cell) == (
        0.1, "lorafiles", "report", None)
    assert p.target_model == "mistral-7b-instruct-v0.2"


@pytest.mark.parametrize("ok", [
    {"max_length": 128}, {"max_length": 131072}, {"min_quality": 0}, {"min_quality": 10},
    {"validation_fraction": 0}, {"validation_fraction": 0.99}, {"split_seed": "s"}, {"split_seed": "s" * 200},
    {"exact_duplicates": "exclude"}, {"exact_duplicates": "report"}, {"coverage_min_per_cell": 1},
    {"target_model": "m"}, {"over_length": "drop_turn"}, {"over_length": "trim_history"}, {"over_length": "fail"},
])
def test_policy_accepts_the_bounds_themselves(ok):
    p = TrainingPolicy(**ok)
    (key, value), = ok.items()
    assert getattr(p, key) == value


@pytest.mark.parametrize(("bad", "field"), [
    ({"max_length": 127}, "max_length"), ({"max_length": 131073}, "max_length"),
    ({"min_quality": -0.01}, "min_quality"), ({"min_quality": 10.01}, "min_quality"),
    ({"validation_fraction": -0.01}, "validation_fraction"), ({"validation_fraction": 1}, "validation_fraction"),
    ({"split_seed": ""}, "split_seed"), ({"split_seed": "s" * 201}, "split_seed"),
    ({"exact_duplicates": "drop"}, "exact_duplicates"), ({"coverage_min_per_cell": 0}, "coverage_min_per_cell"),
    ({"target_model": ""}, "target_model"), ({"over_length": "truncate"}, "over_length"),
    ({"unknown": 1}, "unknown"),
])
def test_policy_rejection_names_the_offending_field(bad, field):
    assert rejected_field(**bad) == field


def test_dataset_settings_are_not_part_of_the_render_digest():
    assert DATASET_FIELDS == ("validation_fraction", "split_seed", "exact_duplicates", "coverage_min_per_cell")
    base = TrainingPolicy()
    for other in (TrainingPolicy(validation_fraction=0.3), TrainingPolicy(split_seed="other"),
                  TrainingPolicy(exact_duplicates="exclude"), TrainingPolicy(coverage_min_per_cell=2)):
        assert other.digest() == base.digest()
        assert other.canonical_json() == base.canonical_json()
    keys = list(orjson.loads(base.canonical_json()))
    assert keys == sorted(keys) == ["fix_literal_escapes", "max_length", "min_quality", "over_length", "target_model"]
    assert b" " not in base.canonical_json()


# -- trainers: the manifest's format notes ---------------------------------------------------------

COMMON_NOTES = {
    "truncated_target": "a target ending in a backslash is never trained; it stays as context of later turns",
    "below_min_quality": "a target whose quality_score is below min_quality is not trained (context only)",
    "empty_content": "empty or whitespace-only content is an error: the conversation is blocked",
    "fix_literal_escapes": "when on, literal backslash-n, backslash-quote, backslash-t become real characters "
                           "in every message of every format (counted: literal_escapes_fixed)",
    "repeated_user_input": "a current_user_input equal to the last history message is not repeated",
    "fail": "an over-length turn blocks the conversation: no format gets a line of it",
}
# What the manifest declares to whoever feeds a format to its trainer (docs/EXPORTS.md, "All of
# this is in the manifest's format_notes"): the text is part of the published contract, so it is
# pinned here word for word; a change to it must be deliberate and show up in this test.
FORMAT_NOTES = {
    "openai": {
        **COMMON_NOTES,
        "file": "openai.jsonl",
        "shape": '{"messages": [{"role": "system"|"user"|"assistant", "content", "weight"?}]}',
        "per_message_training": "exact: weight 1 on trained assistant messages, 0 on context-only ones; "
                                "no weight on system or user messages",
        "lines": "one per example (normally one per dialogue)",
        "drop_turn": "an over-length turn gets weight 0 and the example ends at the last trained turn that fits",
        "trim_history": "an over-length turn starts a new example whose oldest user/assistant exchanges are "
                        "removed (system kept); earlier turns in it have weight 0",
        "max_length": "OpenAI applies its own context limit; every example fits in max_length tokens of the "
                      "target model",
    },
    "trl": {
        **COMMON_NOTES,
        "file": "trl.jsonl",
        "shape": '{"prompt": [system, user, assistant, ..., user], "completion": [{"role": "assistant", '
                 '"content"}]}',
        "per_message_training": "one line per trained assistant turn; TRL trains the completion only "
                                "(prompt-completion default), the prompt is context",
        "lines": "one per trained turn, its prompt being its example up to that turn",
        "drop_turn": "an over-length turn gets no line",
        "trim_history": "a trimmed turn's prompt starts after the removed exchanges (system kept)",
        "max_length": "set SFTConfig(max_length=...) to max_length (TRL's default is 1024; truncation "
                      "keeps the start)",
    },
    "axolotl": {
        **COMMON_NOTES,
        "file": "axolotl.jsonl",
        "shape": '{"messages": [{"role", "content", "train": bool}]}',
        "per_message_training": "exact: train true on trained assistant messages, false on every other "
                                "message (message_field_training: train)",
        "lines": "one per example, as openai",
        "drop_turn": "as openai (train false instead of weight 0)",
        "trim_history": "as openai",
        "max_length": "axolotl.yml sets sequence_len to max_length and excess_length_strategy: raise",
    },
    "sharegpt": {
        **COMMON_NOTES,
        "file": "sharegpt.jsonl",
        "shape": '{"conversations": [{"from": "human"|"gpt", "value"}], "system"}',
        "per_message_training": "none: LLaMA-Factory trains every gpt message of a line; a line ends before "
                                "the first context-only assistant message that precedes a trained one and "
                                "the later trained turns go on in a new line starting at the next user "
                                "message (counted: sharegpt_context_dropped, the messages left out)",
        "lines": "one per run of trained turns of an example",
        "drop_turn": "as openai; an untrained turn inside an example splits the line (see per_message_training)",
        "trim_history": "as openai, then split around context-only turns",
        "truncated_target": "a truncated target cannot be context here: its exchange is left out and the "
                            "line is split there",
        "below_min_quality": "as truncated_target",
        "max_length": "set cutoff_len to max_length (LLaMA-Factory's default is 2048); do not set "
                      "mask_history (it would train the last turn only)",
        "dataset_info": "dataset_info.json declares the file with formatting sharegpt and the tags above",
    },
}


def test_format_notes_declare_exactly_the_documented_text():
    notes = format_notes()
    assert list(notes) == list(EXPORT_FORMATS)
    for fmt in EXPORT_FORMATS:
        assert notes[fmt] == FORMAT_NOTES[fmt], fmt
        assert notes[fmt]["file"] == EXPORT_FILES[fmt]


def _quoted(shape: str) -> set[str]:
    import re

    return set(re.findall(r'"([^"]+)"', shape))


def test_format_note_shapes_name_the_keys_and_values_of_the_real_lines():
    r = build(make_pairs(["u1", "a1", "u2", "a2"]))
    notes = format_notes()
    seen: dict[str, set[str]] = {}
    for fmt in EXPORT_FORMATS:
        names: set[str] = set()

        def walk(x):
            if isinstance(x, dict):
                for k, v in x.items():
                    names.add(k)
                    walk(v)
            elif isinstance(x, list):
                for v in x:
                    walk(v)
            elif isinstance(x, str) and x in ("system", "user", "assistant", "human", "gpt"):
                names.add(x)

        for line in decoded(r, fmt):
            walk(line)
        seen[fmt] = names
        shape = notes[fmt]["shape"]
        assert shape.startswith("{") and shape.endswith("}")
        assert _quoted(shape) <= names, (fmt, _quoted(shape) - names)
    assert _quoted(notes["openai"]["shape"]) == {"messages", "role", "system", "user", "assistant", "content", "weight"}
    assert _quoted(notes["axolotl"]["shape"]) == {"messages", "role", "content", "train"}
    assert _quoted(notes["sharegpt"]["shape"]) == {"conversations", "from", "human", "gpt", "value", "system"}
    assert _quoted(notes["trl"]["shape"]) == {"prompt", "completion", "role", "assistant", "content"}


def test_axolotl_yaml_declares_the_policy_and_the_file_it_was_built_for():
    yaml = pytest.importorskip("yaml")
    p = TrainingPolicy(max_length=3000, over_length="trim_history", target_model="qwen2.5-7b-instruct")
    text = axolotl_datasets_yaml(p, "my data.jsonl")
    cfg = yaml.safe_load(text)
    assert cfg["sequence_len"] == 3000
    assert cfg["excess_length_strategy"] == "raise"
    assert cfg["datasets"][0]["path"] == "my data.jsonl"
    assert text.splitlines()[:3] == [
        "# Axolotl dataset config for my data.jsonl, written by lorafiles.",
        "# Every example was rendered with qwen2.5-7b-instruct's own chat template and counted with its",
        "# tokenizer: each fits in 3000 tokens (length policy: trim_history).",
    ]
    assert yaml.safe_load(axolotl_datasets_yaml(TrainingPolicy()))["datasets"][0]["path"] == "axolotl.jsonl"
