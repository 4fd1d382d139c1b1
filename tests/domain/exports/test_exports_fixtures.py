"""The real fixture files through the real tokenizers and chat templates (lorafiles.tokens)."""
from __future__ import annotations

import orjson
import pytest
from exports_corpus_figures import FOLDERS, build_all, figures, fixture_files, summary
from shared_fixtures import REASON
from lorafiles.domain.exports import EXPORT_FORMATS, TrainingPolicy, view_of

MODEL_IDS = ("mistral-7b-instruct-v0.2", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "openai-gpt-4o")


@pytest.fixture(scope="module")
def get_model():
    try:
        from lorafiles.tokens import get_model
    except ImportError as exc:
        pytest.skip(f"lorafiles.tokens is not importable ({exc})")
    return get_model


@pytest.fixture
def files(shared_fixtures):
    found = fixture_files(shared_fixtures)
    if not found:
        pytest.skip(REASON)
    return found


@pytest.mark.parametrize("over_length", ["drop_turn", "trim_history"])
@pytest.mark.parametrize("model_id", MODEL_IDS)
def test_every_fixture_exports_cleanly_with_every_model(get_model, files, model_id, over_length):
    model = get_model(model_id)
    templates = [get_model(m) for m in MODEL_IDS]
    policy = TrainingPolicy(target_model=model_id, max_length=2048, over_length=over_length)
    rendered: set[bytes] = set()
    for path, parsed, member in build_all(model, policy, files):
        where = f"{path.parent.name}/{path.name}"
        assert member.ok, (where, [e.line() for e in member.errors])
        s = member.stats
        assert s["checks"]["template_render_failed"] == 0 and s["checks"]["over_max_length"] == 0
        assert s["checks"]["zero_trainable_tokens"] == 0
        assert all(s["checks"][k] == 0 for k in ("data_type", "missing_messages_list", "message_missing_key",
                                                  "message_unrecognized_key", "unrecognized_role", "missing_content",
                                                  "example_missing_assistant_message")), where
        assert s["trained_turns"] + len(s["exclusions"]) == s["trainable_pairs"], where
        assert s["lines"]["trl"] == s["trained_turns"], where
        for fmt in EXPORT_FORMATS:
            lines = member.lines[fmt].splitlines()
            assert len(lines) == s["lines"][fmt] == len(s["tokens"][fmt]), (where, fmt)
            for raw, (total, trainable) in zip(lines, s["tokens"][fmt]):
                assert total <= policy.max_length and trainable > 0, (where, fmt)
                messages, _ = view_of(fmt, orjson.loads(raw))
                key = orjson.dumps(messages)
                if key not in rendered:
                    rendered.add(key)
                    for other in templates:  # raises TemplateRenderError on failure
                        assert other.render(messages)
    assert rendered


def test_fail_policy_blocks_exactly_the_conversations_with_an_over_length_turn(get_model, files):
    model = get_model(MODEL_IDS[0])
    dropped = {path.name: {e["pair_id"] for e in m.stats["exclusions"] if e["reason"] == "over_length"}
               for path, _, m in build_all(model, TrainingPolicy(), files)}
    for path, parsed, member in build_all(model, TrainingPolicy(over_length="fail"), files):
        failed = {parsed.pairs[int(e.field.split("[")[1].split("]")[0])]["id"]
                  for e in member.errors if e.code == "over_length"}
        assert failed == dropped[path.name], path.name
        assert member.ok == (not failed)
        if failed:
            assert all(v == b"" for v in member.lines.values()) and all(n == 0 for n in member.stats["lines"].values())
    assert any(dropped.values())  # the fixtures do have over-length turns at 2048


def test_corpus_figures_for_mistral(get_model, files, capsys):
    model = get_model(MODEL_IDS[0])
    result = figures(model, TrainingPolicy(), files)
    with capsys.disabled():
        print("\n" + summary(result))
    assert result["errors"] == []
    corpus = [p for p in files if p.parent.name == "corpus"]
    raw_pairs = [p for path in corpus for p in orjson.loads(path.read_bytes())["training_pairs"]]
    targets = [p for p in raw_pairs if p["target_response"] is not None]
    truncated = sum(1 for p in targets if p["target_response"].rstrip().endswith("\\"))
    repeated = sum(1 for p in targets if p["conversation_history"]
                   and p["conversation_history"][-1]["content"] == p["current_user_input"])
    c = result["corpus"]
    assert c["conversations"] == len(corpus)
    assert c["exclusions"]["truncated_target"]["count"] == truncated
    assert c["changes"]["repeated_user_input_removed"] == repeated == len(targets)
    for fmt in EXPORT_FORMATS:
        f = c["formats"][fmt]
        assert f["examples_over_max_length"] == 0 and f["total_tokens"]["max"] <= 2048
        assert f["trainable_tokens_per_epoch"] == c["formats"]["openai"]["trainable_tokens_per_epoch"]
    trained = c["formats"]["trl"]["lines"]
    assert trained + sum(v["count"] for v in c["exclusions"].values()) == len(targets)
