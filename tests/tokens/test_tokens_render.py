"""Each model's real chat template, rendered the way transformers renders it."""
from __future__ import annotations

import pytest
from lorafiles.ports import TemplateRenderError
from lorafiles.tokens import SUPPORTED_MODELS, get_model
from lorafiles.tokens._jinja import _strftime_now, _tojson
from tokens_samples import NO_SYSTEM, SYSTEM, TWO_TURNS

EXPECTED = {
    "mistral-7b-instruct-v0.2": (
        f"<s> [INST] {SYSTEM}\n\nHello — how are you? [/INST] Fine → thanks.\nAnd you?</s>"
        " [INST] Good. Should I pay off my mortgage early? [/INST]"
        " Let's look at the rate first: 3.1% vs. what you'd earn elsewhere.</s>"),
    "llama-3.1-8b-instruct": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        f"Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n{SYSTEM}<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHello — how are you?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nFine → thanks.\nAnd you?<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nGood. Should I pay off my mortgage early?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        "Let's look at the rate first: 3.1% vs. what you'd earn elsewhere.<|eot_id|>"),
    "qwen2.5-7b-instruct": (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        "<|im_start|>user\nHello — how are you?<|im_end|>\n"
        "<|im_start|>assistant\nFine → thanks.\nAnd you?<|im_end|>\n"
        "<|im_start|>user\nGood. Should I pay off my mortgage early?<|im_end|>\n"
        "<|im_start|>assistant\nLet's look at the rate first: 3.1% vs. what you'd earn elsewhere.<|im_end|>\n"),
    "openai-gpt-4o": (
        f"<|start|>system<|message|>{SYSTEM}<|end|>"
        "<|start|>user<|message|>Hello — how are you?<|end|>"
        "<|start|>assistant<|message|>Fine → thanks.\nAnd you?<|end|>"
        "<|start|>user<|message|>Good. Should I pay off my mortgage early?<|end|>"
        "<|start|>assistant<|message|>Let's look at the rate first: 3.1% vs. what you'd earn elsewhere.<|end|>"),
}

GENERATION_PROMPT_SUFFIX = {
    "mistral-7b-instruct-v0.2": " [/INST]",                       # the template has no generation prompt
    "llama-3.1-8b-instruct": "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "qwen2.5-7b-instruct": "<|im_end|>\n<|im_start|>assistant\n",
    "openai-gpt-4o": "<|end|><|start|>assistant<|message|>",
}


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_system_user_assistant_user_assistant(model_id):
    assert get_model(model_id).render(TWO_TURNS) == EXPECTED[model_id]


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_generation_prompt(model_id):
    model = get_model(model_id)
    prompt = model.render(TWO_TURNS[:4], add_generation_prompt=True)
    assert prompt.endswith(GENERATION_PROMPT_SUFFIX[model_id])
    assert model.render(TWO_TURNS).startswith(prompt)


def test_mistral_refuses_user_user_with_the_alternation_message():
    """The known bug of trainers.md: the repeated user message breaks the Mistral template."""
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"},
                {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    with pytest.raises(TemplateRenderError) as info:
        get_model("mistral-7b-instruct-v0.2").render(messages)
    assert "conversation roles must alternate user/assistant/user/assistant" in str(info.value)
    with pytest.raises(TemplateRenderError, match="must alternate"):
        get_model("mistral-7b-instruct-v0.2").count(messages, [False, False, False, True])


def test_mistral_refuses_other_roles():
    with pytest.raises(TemplateRenderError, match="Only user and assistant roles are supported"):
        get_model("mistral-7b-instruct-v0.2").render([{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}])


def test_mistral_without_system_message():
    assert get_model("mistral-7b-instruct-v0.2").render(NO_SYSTEM) == (
        "<s> [INST] What is a Roth IRA? [/INST] A retirement account funded with after-tax money.</s>")


def test_qwen_default_system_message_and_llama_default_header():
    assert get_model("qwen2.5-7b-instruct").render(NO_SYSTEM).startswith(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is a Roth IRA?<|im_end|>\n")
    assert get_model("llama-3.1-8b-instruct").render(NO_SYSTEM).startswith(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is a Roth IRA?<|eot_id|>")


def test_llama_trims_content_like_its_template():
    messages = [{"role": "user", "content": "  padded  \n"}, {"role": "assistant", "content": "\n ok \n"}]
    assert get_model("llama-3.1-8b-instruct").render(messages).endswith(
        "<|start_header_id|>user<|end_header_id|>\n\npadded<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nok<|eot_id|>")


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_renders_are_deterministic_and_leave_inputs_alone(model_id):
    messages = [dict(m) for m in TWO_TURNS]
    model = get_model(model_id)
    assert model.render(messages) == model.render(messages)
    assert messages == TWO_TURNS


@pytest.mark.parametrize("model_id", [m for m in SUPPORTED_MODELS if m != "llama-3.1-8b-instruct"])
def test_non_string_content_is_a_render_error(model_id):
    # (Llama 3.1's template pipes content through `trim`, which turns None into "None", as in transformers)
    with pytest.raises(TemplateRenderError):
        get_model(model_id).render([{"role": "user", "content": None}, {"role": "assistant", "content": "x"}])


def test_environment_helpers_like_transformers():
    assert _tojson({"a": "<é>"}) == '{"a": "<é>"}'                  # no HTML escaping, no ASCII escaping
    assert _tojson({"b": 1, "a": [1]}, indent=2, sort_keys=True) == '{\n  "a": [\n    1\n  ],\n  "b": 1\n}'
    assert len(_strftime_now("%Y-%m-%d")) == 10
