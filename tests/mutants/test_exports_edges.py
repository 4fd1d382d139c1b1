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
    ExportAccumulator,
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


# -- aggregate: the manifest's version-wide figures ------------------------------------------------

def _stats(tokens, exclusions=(), trims=(), max_length=2048):
    return {"max_length": max_length, "tokens": {f: tokens.get(f, []) for f in EXPORT_FORMATS},
            "exclusions": list(exclusions), "trims": list(trims), "changes": {}, "checks": {}}


def test_nearest_rank_refuses_with_a_reason():
    from lorafiles.domain.exports import nearest_rank

    with pytest.raises(ValueError, match=r"^no values$"):
        nearest_rank([], 50)
    for p in (0, 101, -5):
        with pytest.raises(ValueError, match=r"^p must be in \(0, 100\]$"):
            nearest_rank([1, 2], p)
    assert nearest_rank([1, 2], 100) == 2


def test_nearest_rank_is_the_ceiling_of_p_n_over_100():
    from lorafiles.domain.exports import nearest_rank

    values = list(range(101))  # 0..100
    assert nearest_rank(values, 1) == 1    # rank ceil(101/100) = 2
    assert nearest_rank(values, 50) == 50  # rank ceil(50.5) = 51
    assert nearest_rank(values, 99) == 99  # rank ceil(99.99) = 100


def test_mean_is_rounded_to_two_decimals():
    from lorafiles.domain.exports.aggregate import distribution

    assert distribution([1, 1, 2])["mean"] == 1.33
    assert distribution([2, 2, 3])["mean"] == 2.33
    assert distribution([1, 2])["mean"] == 1.5


def test_examples_over_max_length_counts_each_line_strictly_beyond_the_limit():
    acc = ExportAccumulator()
    acc.add(_stats({"openai": [[2048, 5], [2049, 5], [5000, 5]], "trl": [[2048, 1]]}))
    acc.add(_stats({"openai": [[2049, 5]]}))
    out = acc.result()["formats"]
    assert out["openai"]["examples_over_max_length"] == 3
    assert out["trl"]["examples_over_max_length"] == 0
    assert out["axolotl"]["examples_over_max_length"] == 0


def test_exclusions_and_trims_add_up_over_members_and_an_unknown_reason_gets_its_own_count():
    acc = ExportAccumulator()
    ex = [{"pair_id": "p", "turn_number": 2, "reason": "custom_reason", "trainable_tokens": 5},
          {"pair_id": "p", "turn_number": 4, "reason": "custom_reason", "trainable_tokens": 7},
          {"pair_id": "p", "turn_number": 6, "reason": "over_length", "trainable_tokens": 3}]
    tr = [{"pair_id": "p", "turn_number": 8, "messages_removed": 2, "context_tokens_removed": 40},
          {"pair_id": "p", "turn_number": 10, "messages_removed": 4, "context_tokens_removed": 60}]
    acc.add(_stats({}, exclusions=ex, trims=tr))
    acc.add(_stats({}, exclusions=ex[:1], trims=tr[:1]))
    out = acc.result()
    assert out["exclusions"]["custom_reason"] == {"count": 3, "trainable_tokens": 17}
    assert out["exclusions"]["over_length"] == {"count": 1, "trainable_tokens": 3}
    assert out["trims"] == {"count": 3, "messages_removed": 8, "context_tokens_removed": 140}
    assert out["formats"]["openai"]["trainable_tokens_excluded"] == 20
    assert out["formats"]["openai"]["context_tokens_trimmed"] == 140


def test_max_length_is_one_value_a_sorted_list_of_several_or_none():
    from lorafiles.domain.exports import ExportAccumulator as Acc

    assert Acc().result()["max_length"] is None
    assert Acc().extend([_stats({}, max_length=4096), _stats({}, max_length=4096)]).result()["max_length"] == 4096
    mixed = Acc().extend([_stats({}, max_length=4096), _stats({}, max_length=2048), _stats({}, max_length=4096)])
    assert mixed.result()["max_length"] == [2048, 4096]


# -- build: what the report says when a line fails its checks --------------------------------------

from lorafiles.domain.exports import build as build_mod  # noqa: E402
from lorafiles.domain.exports.formats import Line  # noqa: E402
from lorafiles.ports import TemplateRenderError, TokenCount  # noqa: E402

FOUR = ["u1", "a1", "u2", "a2"]  # two trained turns: pairs 1 and 3 (turns 2 and 4)


def _err(result):
    (err,) = result.errors
    return err


def _patch_openai(monkeypatch, change):
    original = build_mod.openai_line

    def defective(d, ex):
        line = original(d, ex)
        return change(line)

    monkeypatch.setattr(build_mod, "openai_line", defective)


def test_weight_on_a_user_message_is_a_named_check_failure_and_the_conversation_gets_no_line(monkeypatch):
    def weigh_user(line):
        line.record["messages"][1]["weight"] = 0
        return line

    _patch_openai(monkeypatch, weigh_user)
    r = build(make_pairs(FOUR))
    assert not r.ok and r.lines == {f: b"" for f in EXPORT_FORMATS}
    err = _err(r)
    assert (err.code, err.severity, err.field) == ("export_check_failed", "error", "training_pairs[3].target_response")
    assert err.message == "openai line ending at pair t_turn4 (turn 4) fails the check(s) weight_on_non_assistant"
    assert r.stats["checks"]["weight_on_non_assistant"] == 1
    assert r.stats["checks"]["view_mismatch"] == 0
    assert r.report_entry()["formats"]["openai"]["max_total_tokens"] == 0


def test_a_trained_flag_the_line_does_not_declare_is_a_view_mismatch(monkeypatch):
    def train_user(line):
        line.record["messages"][1]["weight"] = 1  # same messages, different flags
        return line

    _patch_openai(monkeypatch, train_user)
    r = build(make_pairs(FOUR))
    err = _err(r)
    assert err.message == ("openai line ending at pair t_turn4 (turn 4) fails the check(s) "
                           "view_mismatch, weight_on_non_assistant")
    assert (r.stats["checks"]["view_mismatch"], r.stats["checks"]["weight_on_non_assistant"]) == (1, 1)


def test_an_unknown_key_in_an_openai_message_fails_the_cookbook_check(monkeypatch):
    def extra_key(line):
        line.record["messages"][2]["train"] = True
        return line

    _patch_openai(monkeypatch, extra_key)
    r = build(make_pairs(FOUR))
    assert _err(r).message.endswith("fails the check(s) message_unrecognized_key")
    assert r.stats["checks"]["message_unrecognized_key"] == 1


def test_a_line_whose_last_turn_is_not_trained_fails_the_structural_check(monkeypatch):
    def untrained(line):
        for m in line.record["messages"]:
            if "weight" in m:
                m["weight"] = 0
        return Line(line.fmt, line.start, line.end, (), line.record)

    _patch_openai(monkeypatch, untrained)
    r = build(make_pairs(FOUR))
    assert _err(r).message.endswith("fails the check(s) ends_on_assistant")
    assert r.stats["checks"]["ends_on_assistant"] == 1
    assert r.stats["checks"]["view_mismatch"] == 0


class _LineRenderFails(FakeModel):
    """Counts fine, but its template refuses to render any produced line (as a whole)."""

    error = TemplateRenderError

    def count(self, messages, trained):
        return TokenCount(1 + sum(len(m["content"].split()) + OVERHEAD for m in messages),
                          sum(len(m["content"].split()) + EOT for m, t in zip(messages, trained) if t))

    def render(self, messages, *, add_generation_prompt=False):
        self.renders += 1
        raise self.error("refused")


def test_a_line_that_cannot_be_rendered_is_an_error_per_line_naming_the_line():
    r = build(make_pairs(FOUR), model=_LineRenderFails())
    # openai 1, trl 2, axolotl 1, sharegpt 1: each line is refused
    assert [e.code for e in r.errors] == ["template_render_failed"] * 5
    assert r.stats["checks"]["template_render_failed"] == 5
    first = r.errors[0]
    assert first.field == "training_pairs[3].target_response"
    assert first.message == ("mistral-7b-instruct-v0.2: the openai line ending at pair t_turn4 (turn 4) cannot be "
                             "rendered and counted: refused")
    assert [e.field for e in r.errors] == ["training_pairs[3].target_response", "training_pairs[1].target_response",
                                           "training_pairs[3].target_response", "training_pairs[3].target_response",
                                           "training_pairs[3].target_response"]
    assert r.lines == {f: b"" for f in EXPORT_FORMATS}


class _Boundary(_LineRenderFails):
    from lorafiles.tokens._base import TokenBoundaryError as error


class _NoCode(_LineRenderFails):
    class error(TemplateRenderError):
        code = None


def test_a_render_failure_keeps_its_own_code_and_falls_back_to_the_generic_one():
    r = build(make_pairs(FOUR), model=_Boundary())
    assert {e.code for e in r.errors} == {"token_boundary_mismatch"}
    assert r.stats["checks"]["token_boundary_mismatch"] == 5
    assert r.stats["checks"]["template_render_failed"] == 0
    r = build(make_pairs(FOUR), model=_NoCode())
    assert {e.code for e in r.errors} == {"template_render_failed"}


class _RenderCounted(_LineRenderFails):
    def render(self, messages, *, add_generation_prompt=False):
        self.renders += 1
        return "text"


def test_every_distinct_line_window_is_rendered_once():
    model = _RenderCounted()
    r = build(make_pairs(FOUR), model=model)
    assert r.ok
    # windows: (0, 3) for openai, axolotl, sharegpt and the second trl line; (0, 1) for the first trl line
    assert model.renders == 2


def test_a_render_failure_of_the_dialogue_names_its_last_message_and_is_counted_per_dialogue():
    pairs = make_pairs(FOUR + ["u3", "a3"])
    pairs[3]["conversation_history"][0]["content"] = "another start"  # pair 3 diverges: two dialogues
    r = build(pairs, model=FakeModel(refuse="a1"))
    assert r.stats["changes"]["divergent_history_split"] == 1
    assert [e.code for e in r.errors] == ["template_render_failed"] * 2
    assert r.stats["checks"]["template_render_failed"] == 2
    assert [e.field for e in r.errors] == ["training_pairs[5].target_response", "training_pairs[3].target_response"]


class _Trainable(FakeModel):
    def __init__(self, trainable):
        super().__init__()
        self.trainable = trainable

    def count(self, messages, trained):
        return TokenCount(super().count(messages, trained).total, self.trainable)


def test_one_trainable_token_is_enough_and_zero_is_an_error_per_line():
    assert build(make_pairs(FOUR), model=_Trainable(1)).ok
    r = build(make_pairs(FOUR), model=_Trainable(0))
    assert r.stats["checks"]["zero_trainable_tokens"] == 5
    assert r.errors[0].field == "training_pairs[3].target_response"
    assert r.errors[0].message == "openai line ending at pair t_turn4 (turn 4) has no trainable token (builder defect)"


class _Inconsistent(FakeModel):
    def count(self, messages, trained):
        c = super().count(messages, trained)
        return TokenCount(c.total + (10_000 if sum(trained) > 1 else 0), c.trainable)


def test_a_line_over_max_length_names_the_line_and_its_field():
    r = build(make_pairs(FOUR), model=_Inconsistent())
    assert [e.field for e in r.errors] == ["training_pairs[3].target_response"] * 3
    total = 10_000 + 1 + 8 + 4 * (1 + 3)  # start, system, four one-word messages
    assert r.errors[0].message == (f"openai line ending at pair t_turn4 (turn 4) has {total} tokens after the length "
                                   "policy, more than max_length 2048 (builder defect)")


# -- length: max_length exactly reached ------------------------------------------------------------

from lorafiles.domain.exports.dialogue import Dialogue, Message  # noqa: E402
from lorafiles.domain.exports.length import Example, Measure, select  # noqa: E402

EXACT = [words(27, "a"), words(27, "b"), words(27, "c"), words(27, "d")]  # 1 + 8 + 4 * 30 = 129 tokens


@pytest.mark.parametrize("over_length", ["drop_turn", "trim_history", "fail"])
def test_an_example_of_exactly_max_length_tokens_is_trained_whole(over_length):
    r = build(make_pairs(EXACT), max_length=129, over_length=over_length)
    assert r.ok
    (line,) = decoded(r, "openai")
    assert [m.get("weight") for m in line["messages"]] == [None, None, 1, None, 1]
    assert r.stats["tokens"]["openai"] == [[129, 2 * (27 + EOT)]]
    assert r.stats["trims"] == [] and r.stats["exclusions"] == []
    # one token fewer and the second turn is over length (trim_history trims its first exchange)
    r = build(make_pairs(EXACT), max_length=128, over_length=over_length)
    if over_length == "trim_history":
        assert [(t["turn_number"], t["messages_removed"]) for t in r.stats["trims"]] == [(4, 2)]
    else:
        assert [(e["turn_number"], e["reason"]) for e in r.stats["exclusions"]] == [(4, "over_length")]
    assert r.ok == (over_length != "fail")


def _dialogue(*texts: str) -> Dialogue:
    msgs = [Message("user" if i % 2 == 0 else "assistant", t, f"m{i}", owner=i if i % 2 else None, content=t)
            for i, t in enumerate(texts)]
    return Dialogue(SYSTEM, "s", msgs, base=0, members=[i for i in range(1, len(texts), 2)], system_content=SYSTEM)


def test_trim_history_over_length_records_the_examples_tokens():
    d = _dialogue(words(5), words(5), words(5), words(200))
    sel = select([1, 3], TrainingPolicy(max_length=150, over_length="trim_history"), Measure(FakeModel(), d))
    (over,) = sel.over_length
    assert (over.index, over.tokens, over.trainable) == (3, 1 + 8 + 3 * 8 + 203, 200 + EOT)
    assert [(e.start, e.end, e.trained) for e in sel.examples] == [(0, 1, [1])]
    assert sel.trims == []


def test_trim_history_trims_from_the_second_exchange_when_only_that_fits():
    d = _dialogue(words(100), words(5), words(5), words(5))  # 1 + 8 + 103 + 3 * 8 = 136 tokens
    sel = select([3], TrainingPolicy(max_length=128, over_length="trim_history"), Measure(FakeModel(), d))
    assert [(e.start, e.end, e.trained) for e in sel.examples] == [(2, 3, [3])]
    ((index, removed, tokens),) = [(t.index, t.messages_removed, t.context_tokens_removed) for t in sel.trims]
    assert (index, removed, tokens) == (3, 2, 103 + 8)


# -- formats: sharegpt windows ---------------------------------------------------------------------

from lorafiles.domain.exports.formats import sharegpt_windows  # noqa: E402


def test_sharegpt_windows_cut_around_each_context_only_exchange():
    # exchanges (user, assistant): 0-1 T, 2-3 T, 4-5 context, 6-7 T, 8-9 context, 10-11 T, 12-13 T, 14-15 T
    ex = Example(0, 15, [1, 3, 7, 11, 13, 15])
    windows, dropped = sharegpt_windows(ex)
    assert windows == [(0, 3, (1, 3)), (6, 7, (7,)), (10, 15, (11, 13, 15))]
    assert dropped == 4


def test_sharegpt_lines_of_a_long_run_train_every_assistant_message():
    texts = ["u1", "a1", "u2", "a2", "u3", "a3", "u4", "a4 \\", "u5", "a5", "u6", "a6"]
    r = build(make_pairs(texts))
    assert r.ok
    lines = decoded(r, "sharegpt")
    assert [[c["value"] for c in x["conversations"]] for x in lines] == [
        ["u1", "a1", "u2", "a2", "u3", "a3"], ["u5", "a5", "u6", "a6"]]
    assert r.stats["changes"]["sharegpt_context_dropped"] == 2
    assert r.stats["tokens"]["sharegpt"] == [[1 + 8 + 6 * 4, 3 * (1 + EOT)], [1 + 8 + 4 * 4, 2 * (1 + EOT)]]


def test_view_of_an_unknown_format_names_it():
    from lorafiles.domain.exports import view_of

    with pytest.raises(ValueError, match=r"^unknown export format 'csv'$"):
        view_of("csv", {})


# -- checks: the cookbook's counts, the text problems' wording -------------------------------------

from lorafiles.domain.exports.checks import line_violations, openai_format_errors  # noqa: E402


def test_cookbook_checks_count_every_defective_message():
    a = {"role": "assistant", "content": "r"}
    assert openai_format_errors("text") == {"data_type": 1}
    assert openai_format_errors({"other": []}) == {"missing_messages_list": 1}
    assert openai_format_errors({"messages": None}) == {"missing_messages_list": 1}
    # non-dict messages are each counted and the later messages are still checked
    assert openai_format_errors({"messages": [1, "x", {"role": "robot", "content": "c"}, a]}) == {
        "data_type": 2, "unrecognized_role": 1}
    assert openai_format_errors({"messages": [{"content": "c"}, {"role": "user"}, {"role": "user", "content": "q",
                                                                                    "x": 1, "y": 2},
                                              {"role": "user", "content": "q", "z": 0},
                                              {"role": "tool", "content": "t"}, {"content": "n"}]}) == {
        "message_missing_key": 3, "unrecognized_role": 3, "missing_content": 1, "message_unrecognized_key": 2,
        "example_missing_assistant_message": 1}
    assert openai_format_errors({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""},
                                              a]}) == {"missing_content": 2}


def test_a_function_call_message_needs_no_content_but_content_must_still_be_a_string():
    call = {"name": "lookup", "arguments": "{}"}
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "function_call": call}]}
    assert openai_format_errors(ok) == {}
    none = {"messages": [{"role": "user", "content": "q"},
                         {"role": "assistant", "content": None, "function_call": call}]}
    assert openai_format_errors(none) == {"missing_content": 1}


def test_line_invariants_of_a_line_with_no_turn_at_all():
    assert line_violations([{"role": "system", "content": "s"}], [False]) == ["starts_with_user", "ends_on_assistant"]
    assert line_violations([], []) == ["starts_with_user", "ends_on_assistant"]


def _problem(result, code):
    return [(p.field, p.message) for p in result.problems if p.code == code]


def test_each_text_problem_names_what_holds_it():
    texts = [r"u one\n", r"a one\n", "u two", "a two"]
    r = build(make_pairs(texts, system=r"sys\n"))
    tail = "holds literal backslash-n, backslash-quote or backslash-t: replaced by real characters in the exports"
    assert _problem(r, "literal_escapes") == [
        ("training_pairs[3].system_prompt", f"system prompt {tail}"),
        ("training_pairs[1].current_user_input", f"user input {tail}"),
        ("training_pairs[1].target_response", f"target response {tail}"),
    ]
    # a history message that is no pair's target is named "history content"
    pairs = make_pairs(["u one", "a one", "u two", "a two"])
    for p in pairs:
        p["conversation_history"] = [{"role": "user", "content": r"earlier\t"}, {"role": "assistant", "content": "x"}] \
            + p["conversation_history"]
    r = build(pairs)
    assert _problem(r, "literal_escapes")[0] == ("training_pairs[3].conversation_history[0].content",
                                                 f"history content {tail}")


# -- dialogue: which pair and field each turn-structure problem names ------------------------------

SIX = ["u1", "a1", "u2", "a2", "u3", "a3"]


def _where(result, code):
    return [(p.severity, p.field, p.message) for p in result.problems if p.code == code]


def test_a_history_content_that_is_not_a_string_is_an_error_in_every_pair_that_carries_it():
    pairs = make_pairs(SIX, repeat=False)
    for p in pairs[3:]:
        p["conversation_history"][0]["content"] = 5  # pairs 3 and 5 agree with each other, not with pair 1
    r = build(pairs)
    assert _where(r, "wrong_type") == [
        ("error", "training_pairs[5].conversation_history[0].content", "history content is not a string"),
        ("error", "training_pairs[3].conversation_history[0].content", "history content is not a string")]
    # the text counts as empty: that is an error too, not a made-up text
    assert ("error", "training_pairs[5].conversation_history[0].content", "history content is empty or whitespace only") \
        in _where(r, "empty_content")
    assert r.stats["changes"]["divergent_history_split"] == 1
    assert r.lines == {f: b"" for f in EXPORT_FORMATS}


def test_a_user_input_that_is_not_a_string_counts_as_empty():
    pairs = make_pairs(["u1", "a1", "u2", "a2"], repeat=False)
    pairs[3]["current_user_input"] = 7
    r = build(pairs)
    assert _where(r, "empty_content") == [
        ("error", "training_pairs[3].current_user_input", "user input is empty or whitespace only")]
    assert r.stats["checks"]["empty_content"] == 1


def test_a_system_prompt_that_is_not_a_string_counts_as_empty():
    pairs = make_pairs(["u1", "a1", "u2", "a2"])
    for p in pairs:
        p["system_prompt"] = None
    r = build(pairs)
    assert _where(r, "empty_content") == [
        ("error", "training_pairs[3].system_prompt", "system prompt is empty or whitespace only")]


def test_a_repeated_user_input_is_named_with_its_pair():
    r = build(make_pairs(["u1", "a1", "u2", "a2"]))
    assert _where(r, "repeated_user_input") == [
        ("warning", "training_pairs[1].current_user_input",
         "pair t_turn2 (turn 2): the user input equals the last history message; the exports send it once"),
        ("warning", "training_pairs[3].current_user_input",
         "pair t_turn4 (turn 4): the user input equals the last history message; the exports send it once")]


def test_a_duplicate_pair_names_both_pairs():
    import copy

    pairs = make_pairs(["u1", "a1", "u2", "a2"])
    dup = copy.deepcopy(pairs[1])
    dup["id"] = "again"
    pairs.insert(2, dup)
    r = build(pairs)
    assert _where(r, "duplicate_pair") == [
        ("warning", "training_pairs[1]", "pair t_turn2 (turn 2) repeats pair again (turn 2); exported once")]
    assert r.ok and r.stats["tokens"]["trl"] == [[1 + 8 + 2 * 4, 1 + EOT], [1 + 8 + 4 * 4, 1 + EOT]]


def test_every_divergent_history_is_counted_and_named():
    pairs = make_pairs(SIX)
    pairs[3]["conversation_history"][1]["content"] = "a1 as turn 4 remembers it"
    for p in pairs[4:]:
        p["conversation_history"][1]["content"] = "a1 as turn 6 remembers it"
    r = build(pairs)
    assert r.ok
    assert r.stats["changes"]["divergent_history_split"] == 2
    assert _where(r, "divergent_history_split") == [
        ("warning", "training_pairs[3].conversation_history",
         "pair t_turn4 (turn 4): its history is not a prefix of the later turns; exported as a dialogue of its own"),
        ("warning", "training_pairs[1].conversation_history",
         "pair t_turn2 (turn 2): its history is not a prefix of the later turns; exported as a dialogue of its own")]
    assert r.stats["lines"]["openai"] == 3


def test_a_copy_of_the_last_pair_is_a_duplicate_not_a_divergent_dialogue():
    import copy

    pairs = make_pairs(["u1", "a1", "u2", "a2"])
    dup = copy.deepcopy(pairs[3])
    dup["id"] = "again"
    pairs.append(dup)
    r = build(pairs)
    assert r.ok and r.stats["changes"]["divergent_history_split"] == 0
    assert _where(r, "duplicate_pair") == [
        ("warning", "training_pairs[3]", "pair t_turn4 (turn 4) repeats pair again (turn 4); exported once")]
    assert r.stats["lines"]["openai"] == 1


def test_every_leading_assistant_message_is_left_out_and_counted_per_dialogue():
    pairs = make_pairs(SIX)
    for p in pairs:
        p["conversation_history"][:0] = [{"role": "assistant", "content": "Welcome!"},
                                         {"role": "assistant", "content": "How can I help?"}]
    for p in pairs[4:]:  # turns 5 and 6 remember a1 differently: a second dialogue, with the same greeting
        p["conversation_history"][3]["content"] = "a1 rewritten"
    r = build(pairs)
    assert r.ok
    assert r.stats["changes"]["leading_assistant_dropped"] == 4
    assert _where(r, "leading_assistant_dropped") == [
        ("warning", "training_pairs[5].conversation_history[0].content",
         "2 history message(s) before the first user message of pair t_turn6 (turn 6) left out of the exports"),
        ("warning", "training_pairs[3].conversation_history[0].content",
         "2 history message(s) before the first user message of pair t_turn4 (turn 4) left out of the exports")]
    assert all(line["messages"][1] == {"role": "user", "content": "u1"} for line in decoded(r, "openai"))


def test_an_alternation_error_says_which_roles_meet_and_is_counted_per_dialogue():
    pairs = make_pairs(SIX)
    pairs[5]["current_user_input"] = "a different question 5"
    pairs[3]["current_user_input"] = "a different question 3"  # and pair 3 no longer agrees with pair 5
    r = build(pairs)
    msg = "a user message follows a user message (after the system message roles must alternate user/assistant)"
    assert _where(r, "alternation") == [("error", "training_pairs[5].current_user_input", msg),
                                        ("error", "training_pairs[3].current_user_input", msg)]
    assert r.stats["checks"]["alternation"] == 2
    pairs = make_pairs(["u1", "a1", "u2", "a2"])
    pairs[3]["conversation_history"][1]["role"] = "user"  # user, user at messages 0 and 1
    for p in pairs[1:3]:
        p["target_response"] = None
    r = build(pairs)
    assert [m for _, _, m in _where(r, "alternation")] == [msg]


# -- build: the member's stats and report entry ----------------------------------------------------

def test_stats_declare_builder_model_and_policy_digest():
    policy = TrainingPolicy(max_length=4096, min_quality=2)
    r = build_member_exports("c", make_pairs(["u1", "a1", "u2", "a2"]), policy, FakeModel())
    assert (r.stats["builder"], r.stats["model"], r.stats["policy"], r.stats["max_length"]) == (
        "lorafiles.exports/1", "mistral-7b-instruct-v0.2", policy.digest(), 4096)
    assert (r.stats["trainable_pairs"], r.stats["trained_turns"]) == (2, 2)


def test_a_conversation_blocked_after_selection_reports_no_trained_turn():
    r = build(make_pairs(["u1", "a1", "u2", "a2"]), model=_Trainable(0))
    assert not r.ok
    assert r.stats["trained_turns"] == 0 and r.stats["trainable_pairs"] == 2
    assert r.stats["lines"] == {f: 0 for f in EXPORT_FORMATS}
    entry = r.report_entry()
    assert entry["ok"] is False
    assert entry["formats"]["trl"] == {"lines": 0, "total_tokens": 0, "trainable_tokens": 0, "max_total_tokens": 0,
                                       "examples": []}


def test_exclusions_are_listed_in_pair_order_whatever_their_reason():
    texts = ["u1", "a1 \\", "u2", "a2", "u3", "a3", "u4", words(300)]
    pairs = make_pairs(texts, quality=[3, 3, 3, 1, 3, 3, 3, 3])
    r = build(pairs, min_quality=2, max_length=200)
    assert [(e["pair_id"], e["turn_number"], e["reason"]) for e in r.stats["exclusions"]] == [
        ("t_turn2", 2, "truncated_target"), ("t_turn4", 4, "below_min_quality"), ("t_turn8", 8, "over_length")]
    assert r.report_entry()["exclusions"] == r.stats["exclusions"]


def test_a_dialogue_render_failure_quotes_the_templates_reason():
    r = build(make_pairs(SIX), model=FakeModel(refuse="a1"))
    assert [e.message for e in r.errors] == [
        "mistral-7b-instruct-v0.2: the dialogue of pair t_turn6 (turn 6) cannot be rendered and counted: "
        "refused content 'a1'"]


def test_the_fail_policy_error_says_how_long_the_example_is_and_which_policy_refused_it():
    texts = ["u1", "a1", "u2", words(300)]
    r = build(make_pairs(texts), max_length=200, over_length="fail")
    total = 1 + 8 + 3 * 4 + 303
    assert _where(r, "over_length") == [(
        "error", "training_pairs[3].target_response",
        f"pair t_turn4 (turn 4): its example has {total} tokens (mistral-7b-instruct-v0.2), more than max_length 200 "
        "(over_length policy 'fail')")]


def _two_dialogues_with_a_context_only_turn():
    texts = ["u1", "a1", "u2", "a2 \\", "u3", "a3", "u4", "a4"]
    pairs = make_pairs(texts)
    for p in pairs[6:]:  # turns 7 and 8 remember a1 differently: a dialogue of their own
        p["conversation_history"][1]["content"] = "a1 rewritten"
    return pairs


def test_trained_turns_and_sharegpt_drops_add_up_over_the_dialogues():
    r = build(_two_dialogues_with_a_context_only_turn())
    assert r.ok and r.stats["changes"]["divergent_history_split"] == 1
    # dialogue of turn 6: a1, a3 trained (a2 truncated); dialogue of turn 8: a4 only (its a1 ... a3 are not targets)
    assert r.stats["trained_turns"] == 3
    assert r.stats["changes"]["sharegpt_context_dropped"] == 2 + 6
    warnings = _where(r, "sharegpt_context_dropped")
    assert warnings == [
        ("warning", "training_pairs[5].target_response",
         "sharegpt trains every assistant message of a line: 2 context message(s) of the example ending at "
         "pair t_turn6 (turn 6) are left out and the later turns start a new line"),
        ("warning", "training_pairs[7].target_response",
         "sharegpt trains every assistant message of a line: 6 context message(s) of the example ending at "
         "pair t_turn8 (turn 8) are left out and the later turns start a new line")]


def test_the_model_must_be_the_policys_and_the_refusal_names_both():
    with pytest.raises(ValueError, match=r"^model 'qwen2.5-7b-instruct' is not the policy's target model "
                                         r"'mistral-7b-instruct-v0.2'$"):
        build(make_pairs(FOUR), model=FakeModel(id="qwen2.5-7b-instruct"))


def test_a_truncated_target_warning_says_it_stays_context():
    r = build(make_pairs(["u1", "a1 \\", "u2", "a2"]))
    assert _where(r, "truncated_target") == [(
        "warning", "training_pairs[1].target_response",
        "pair t_turn2 (turn 2): the target ends in a backslash (truncated mid-sentence); not trained, "
        "only context of later turns")]


def test_a_blocked_conversation_still_lists_the_skipped_turns_of_every_dialogue():
    pairs = _two_dialogues_with_a_context_only_turn()
    pairs[7]["target_response"] = "a4 \\"
    pairs[7]["current_user_input"] = pairs[7]["conversation_history"][-1]["content"] = "u4 [INST]"  # blocks
    r = build(pairs)
    assert not r.ok
    assert [(e["turn_number"], e["reason"], e["trainable_tokens"]) for e in r.stats["exclusions"]] == [
        (4, "truncated_target", 0), (8, "truncated_target", 0)]


def test_text_checks_count_every_finding():
    pairs = make_pairs(["u1 \ud800", "a1 \udfff", "u2", "a2 [INST] </s> \x01\x07"])
    r = build(pairs)
    assert r.stats["checks"]["invalid_unicode"] == 2
    assert r.stats["checks"]["control_tokens"] == 2
    assert ("warning", "training_pairs[3].target_response",
            "target response contains control character(s) U+0001, U+0007; kept") in _where(r, "control_characters")
    pairs = make_pairs(["u1", " ", "u2", "\t"])
    assert build(pairs).stats["checks"]["empty_content"] == 2


def test_literal_escapes_kept_as_written_say_so():
    r = build(make_pairs(["u1", r"a1\n", "u2", "a2"]), fix_literal_escapes=False)
    assert _where(r, "literal_escapes") == [(
        "warning", "training_pairs[1].target_response",
        "target response holds literal backslash-n, backslash-quote or backslash-t: kept as written "
        "(fix_literal_escapes is off)")]
    assert r.stats["changes"]["literal_escapes_fixed"] == 0 and r.stats["checks"]["literal_escapes"] == 1
