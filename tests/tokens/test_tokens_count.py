"""Total and trainable tokens; the prompt-is-a-prefix property TRL's masking relies on."""
from __future__ import annotations

import pytest
from lorafiles.ports import TokenCount
from lorafiles.tokens import SUPPORTED_MODELS, TokenBoundaryError, get_model
from lorafiles.tokens.mistral import MistralV02
from tokens_samples import CONVERSATIONS, TWO_TURNS

END_OF_TURN = {                     # what each template closes an assistant turn with (trained too)
    "mistral-7b-instruct-v0.2": [2],                 # </s>
    "llama-3.1-8b-instruct": [128009],               # <|eot_id|>
    "qwen2.5-7b-instruct": [151645, 198],            # <|im_end|> \n
    "openai-gpt-4o": [200007],                       # <|end|>
}


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_prompt_tokens_are_a_prefix_of_prompt_plus_completion(model_id, conversation):
    model = get_model(model_id)
    for j, message in enumerate(conversation):
        if message["role"] != "assistant":
            continue
        prompt = model.encode(model.render(conversation[:j], add_generation_prompt=True))
        full = model.encode(model.render(conversation[:j + 1]))
        assert full[:len(prompt)] == prompt
        assert full[len(full) - len(END_OF_TURN[model_id]):] == END_OF_TURN[model_id]


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_spans_match_direct_encodings(model_id, conversation):
    model = get_model(model_id)
    spans = model.assistant_spans(conversation)
    assert [s.index for s in spans] == [i for i, m in enumerate(conversation) if m["role"] == "assistant"]
    for span in spans:
        assert span.start == len(model.encode(model.render(conversation[:span.index], add_generation_prompt=True)))
        assert span.end == len(model.encode(model.render(conversation[:span.index + 1])))
        assert span.tokens > len(END_OF_TURN[model_id])


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_count_two_turns(model_id):
    model = get_model(model_id)
    both = model.count(TWO_TURNS, [False, False, True, False, True])
    last = model.count(TWO_TURNS, [False, False, False, False, True])
    none = model.count(TWO_TURNS, [False] * 5)
    assert isinstance(both, TokenCount)
    total = len(model.encode(model.render(TWO_TURNS)))
    assert both.total == last.total == none.total == total
    first_span, second_span = model.assistant_spans(TWO_TURNS)
    assert both.trainable == first_span.tokens + second_span.tokens
    assert last.trainable == second_span.tokens < both.trainable
    assert none.trainable == 0
    assert 0 < both.trainable < total


def test_count_mistral_spans_by_hand():
    """Mistral: the assistant span is ' content' + </s>; the prompt part ends with [/INST]."""
    model = get_model("mistral-7b-instruct-v0.2")
    sp = model._sp
    span = model.assistant_spans(TWO_TURNS)[0]
    ids = model.encode(model.render(TWO_TURNS))
    assert ids[span.end - 1] == 2
    assert sp.decode(ids[span.start:span.end - 1]) == "Fine → thanks.\nAnd you?"
    assert ids[span.start - 4:span.start] == [733, 28748, 16289, 28793]            # ▁[ / INST ]
    assert model.count(TWO_TURNS, [False, False, True, False, False]).trainable == \
        len(sp.encode("Fine → thanks.\nAnd you?")) + 1


@pytest.mark.parametrize("model_id", ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct"])
def test_count_bpe_spans_decode_to_content_and_end_of_turn(model_id):
    model = get_model(model_id)
    ids = model.encode(model.render(TWO_TURNS))
    span = model.assistant_spans(TWO_TURNS)[1]
    tail = {"llama-3.1-8b-instruct": "<|eot_id|>", "qwen2.5-7b-instruct": "<|im_end|>\n"}[model_id]
    assert model._enc.decode(ids[span.start:span.end]) == TWO_TURNS[4]["content"] + tail


def test_count_mistral_non_legacy_is_one_token_less_per_user_turn():
    legacy, non_legacy = get_model("mistral-7b-instruct-v0.2"), MistralV02(legacy=False)
    for messages in CONVERSATIONS.values():
        flags = [m["role"] == "assistant" for m in messages]
        users = sum(m["role"] == "user" for m in messages)
        a, b = legacy.count(messages, flags), non_legacy.count(messages, flags)
        assert a.total == b.total + users
        assert a.trainable == b.trainable


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_count_rejects_bad_flags(model_id):
    model = get_model(model_id)
    with pytest.raises(ValueError, match="flags for 5 messages"):
        model.count(TWO_TURNS, [True])
    with pytest.raises(ValueError, match="not 'assistant'"):
        model.count(TWO_TURNS, [False, True, False, False, True])


def test_boundary_mismatch_is_reported():
    """Qwen: an assistant message starting with a newline merges with the template's '\\n' into one
    token, so the prompt's tokens are not a prefix: a trainer's prompt mask would cut a token short."""
    model = get_model("qwen2.5-7b-instruct")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "\nhello"}]
    with pytest.raises(TokenBoundaryError, match="token boundary"):
        model.count(messages, [False, True])
    assert model.count(messages, [False, False]).total == len(model.encode(model.render(messages)))


def test_counting_is_fast_enough_for_big_exports():
    """5,000 conversations are counted per export: one long two-turn example must stay cheap."""
    import time

    long_turns = [{"role": "system", "content": "S " * 600}] + [
        {"role": ("user" if i % 2 == 0 else "assistant"), "content": f"Paragraph {i} — words → more words. " * 60}
        for i in range(8)]
    flags = [m["role"] == "assistant" for m in long_turns]
    for model_id in SUPPORTED_MODELS:
        model = get_model(model_id)
        model.count(long_turns, flags)
        start = time.perf_counter()
        for _ in range(5):
            model.count(long_turns, flags)
        assert (time.perf_counter() - start) / 5 < 0.25, model_id
