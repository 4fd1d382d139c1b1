"""Line shapes of the four formats, the sharegpt split, line checks and the member result."""
import orjson
import pytest
from exports_helpers import FakeModel, make_pairs
from lorafiles.domain.exports import TrainingPolicy, build_member_exports, view_of
from lorafiles.domain.exports.checks import line_violations, openai_format_errors
from lorafiles.ports import ChatModel, TokenCount

TEXTS = ["u1", "a1", "u2", "a2 \\", "u3", "a3", "u4", "a4"]  # turn 4 truncated: context only
SYSTEM = "You are a kind advisor."


def build(pairs=None, model=None, **policy):
    return build_member_exports("conv-1", pairs or make_pairs(TEXTS), TrainingPolicy(**policy), model or FakeModel())


def decoded(result, fmt):
    raw = result.lines[fmt]
    assert raw == b"" or raw.endswith(b"\n")
    return [orjson.loads(line) for line in raw.splitlines()]


def test_fake_model_satisfies_the_port():
    assert isinstance(FakeModel(), ChatModel)


def test_openai_shape_weight_only_on_assistant():
    (line,) = decoded(build(), "openai")
    assert list(line) == ["messages"]
    assert line["messages"] == [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1", "weight": 1},
        {"role": "user", "content": "u2"}, {"role": "assistant", "content": "a2 \\", "weight": 0},
        {"role": "user", "content": "u3"}, {"role": "assistant", "content": "a3", "weight": 1},
        {"role": "user", "content": "u4"}, {"role": "assistant", "content": "a4", "weight": 1}]


def test_trl_one_line_per_trained_turn_prompt_ends_with_user():
    lines = decoded(build(), "trl")
    assert [list(x) for x in lines] == [["prompt", "completion"]] * 3
    assert [x["completion"] for x in lines] == [[{"role": "assistant", "content": c}] for c in ("a1", "a3", "a4")]
    assert [[m["content"] for m in x["prompt"]] for x in lines] == [
        [SYSTEM, "u1"], [SYSTEM, "u1", "a1", "u2", "a2 \\", "u3"],
        [SYSTEM, "u1", "a1", "u2", "a2 \\", "u3", "a3", "u4"]]
    assert all(x["prompt"][-1]["role"] == "user" and "weight" not in str(x) for x in lines)


def test_axolotl_train_flag_on_every_message():
    (line,) = decoded(build(), "axolotl")
    assert [(m["role"], m["train"]) for m in line["messages"]] == [
        ("system", False), ("user", False), ("assistant", True), ("user", False), ("assistant", False),
        ("user", False), ("assistant", True), ("user", False), ("assistant", True)]
    assert all(list(m) == ["role", "content", "train"] for m in line["messages"])


def test_sharegpt_splits_around_context_only_turns_and_counts_what_is_left_out():
    r = build()
    lines = decoded(r, "sharegpt")
    assert [[(c["from"], c["value"]) for c in x["conversations"]] for x in lines] == [
        [("human", "u1"), ("gpt", "a1")],
        [("human", "u3"), ("gpt", "a3"), ("human", "u4"), ("gpt", "a4")]]
    assert all(x["system"] == SYSTEM and list(x) == ["conversations", "system"] for x in lines)
    assert r.stats["changes"]["sharegpt_context_dropped"] == 2  # u2 and the truncated a2
    assert any(p.code == "sharegpt_context_dropped" and p.severity == "warning" for p in r.problems)
    assert r.stats["lines"]["sharegpt"] == 2


def test_sharegpt_without_context_only_turns_is_one_line():
    r = build(make_pairs(["u1", "a1", "u2", "a2"]))
    assert len(decoded(r, "sharegpt")) == 1 and r.stats["changes"]["sharegpt_context_dropped"] == 0


def test_stats_match_the_lines_and_the_models_counts():
    r = build()
    model = FakeModel()
    for fmt in ("openai", "trl", "axolotl", "sharegpt"):
        lines = decoded(r, fmt)
        assert r.stats["lines"][fmt] == len(lines) == len(r.stats["tokens"][fmt])
        for line, (total, trainable) in zip(lines, r.stats["tokens"][fmt]):
            messages, trained = view_of(fmt, line)
            assert model.count(messages, trained) == TokenCount(total, trainable)
    orjson.dumps(r.stats)  # JSON-serialisable


def test_output_is_deterministic_byte_for_byte():
    a, b = build(), build()
    assert a.lines == b.lines and orjson.dumps(a.stats) == orjson.dumps(b.stats)
    assert a.report_entry() == b.report_entry()


def test_every_produced_example_is_rendered():
    model = FakeModel()
    build(model=model)
    assert model.renders > 0


def test_template_render_failure_is_an_error():
    r = build(model=FakeModel(refuse="a3"))
    assert not r.ok
    assert [e.code for e in r.errors] == ["template_render_failed"]
    assert r.stats["checks"]["template_render_failed"] == 1
    assert r.lines == {f: b"" for f in r.lines}


def test_model_must_be_the_policys_target_model():
    with pytest.raises(ValueError):
        build(model=FakeModel(id="qwen2.5-7b-instruct"))
    assert build(model=FakeModel(id="qwen2.5-7b-instruct"), target_model="qwen2.5-7b-instruct").ok


class _ZeroTrainable(FakeModel):
    def count(self, messages, trained):
        return TokenCount(super().count(messages, trained).total, 0)


class _Inconsistent(FakeModel):
    """Counts an example with several trained turns as huge: a builder must not trust its own
    arithmetic, it checks every line it emits."""

    def count(self, messages, trained):
        c = super().count(messages, trained)
        return TokenCount(c.total + (10_000 if sum(trained) > 1 else 0), c.trainable)


def test_zero_trainable_lines_are_never_emitted():
    r = build(model=_ZeroTrainable())
    assert not r.ok and r.stats["checks"]["zero_trainable_tokens"] > 0
    assert {e.code for e in r.errors} == {"zero_trainable_tokens"}
    assert r.lines == {f: b"" for f in r.lines}


def test_a_line_over_max_length_after_policy_is_an_error():
    r = build(model=_Inconsistent())
    assert not r.ok and {e.code for e in r.errors} == {"over_max_length"}
    assert r.stats["checks"]["over_max_length"] == 3  # openai, axolotl, the 2-turn sharegpt line


def test_report_entry():
    r = build()
    entry = r.report_entry()
    assert list(entry) == ["conversation_id", "ok", "errors", "warnings", "exclusions", "trims", "changes", "formats"]
    assert entry["conversation_id"] == "conv-1" and entry["ok"] is True and entry["errors"] == []
    assert {w["code"] for w in entry["warnings"]} >= {"truncated_target", "repeated_user_input", "sharegpt_context_dropped"}
    assert entry["exclusions"] == r.stats["exclusions"] and entry["changes"] == r.stats["changes"]
    tokens = r.stats["tokens"]["trl"]
    assert entry["formats"]["trl"] == {"lines": 3, "total_tokens": sum(t for t, _ in tokens),
                                       "trainable_tokens": sum(x for _, x in tokens),
                                       "max_total_tokens": max(t for t, _ in tokens),
                                       "examples": [[t, x] for t, x in tokens]}
    orjson.dumps(entry)


def test_openai_cookbook_checks_catch_each_defect():
    assert openai_format_errors({"messages": [{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": "a", "weight": 1}]}) == {}
    assert openai_format_errors([1]) == {"data_type": 1}
    assert openai_format_errors({"messages": []}) == {"missing_messages_list": 1}
    errors = openai_format_errors({"messages": [
        {"role": "user"},                                        # missing key + missing content
        {"role": "robot", "content": "x"},                       # unrecognized role
        {"role": "user", "content": "x", "train": True},         # unrecognized key
        {"role": "user", "content": ""},                         # missing content
    ]})
    assert errors == {"message_missing_key": 1, "missing_content": 2, "unrecognized_role": 1,
                      "message_unrecognized_key": 1, "example_missing_assistant_message": 1}


def test_line_invariants_catch_each_defect():
    sys_ = {"role": "system", "content": "s"}
    u, a = {"role": "user", "content": "q"}, {"role": "assistant", "content": "r"}
    assert line_violations([sys_, u, a], [False, False, True]) == []
    assert line_violations([u, a], [False, True]) == []
    assert line_violations([sys_, a, u, a], [False, False, False, True]) == ["starts_with_user", "alternation"]
    assert line_violations([sys_, u, u, a], [False] * 3 + [True]) == ["alternation"]
    assert line_violations([sys_, u, a], [False, False, False]) == ["ends_on_assistant"]
    assert line_violations([sys_, u], [False, False]) == ["ends_on_assistant"]
    assert line_violations([sys_, {"role": "user", "content": " "}, a], [False, False, True]) == ["empty_content"]
