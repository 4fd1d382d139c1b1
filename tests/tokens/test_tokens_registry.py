"""The model registry of lorafiles.tokens: ids, alias, max lengths, caching, lazy loading."""
from __future__ import annotations

import subprocess
import sys

import pytest
from lorafiles.ports import ChatModel, TemplateRenderError
from lorafiles.tokens import (
    DEFAULT_MODEL,
    SUPPORTED_MODELS,
    TokenBoundaryError,
    UnknownModel,
    canonical_model_id,
    default_max_length,
    get_model,
)


def test_supported_ids_and_default():
    assert SUPPORTED_MODELS == ("mistral-7b-instruct-v0.2", "llama-3.1-8b-instruct", "qwen2.5-7b-instruct",
                                "openai-gpt-4o")
    assert DEFAULT_MODEL == "mistral-7b-instruct-v0.2"
    assert get_model().id == DEFAULT_MODEL


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_each_model_is_a_chat_model_and_cached(model_id):
    model = get_model(model_id)
    assert isinstance(model, ChatModel)
    assert model.id == model_id
    assert get_model(model_id) is model
    assert model.tokenizer_id and model.template_id
    assert isinstance(model.control_tokens, frozenset) and model.control_tokens


def test_alias_llama_3_1_8b():
    assert canonical_model_id("llama-3.1-8b") == "llama-3.1-8b-instruct"
    assert canonical_model_id(" Llama-3.1-8B-Instruct ") == "llama-3.1-8b-instruct"
    assert get_model("llama-3.1-8b") is get_model("llama-3.1-8b-instruct")
    assert default_max_length("llama-3.1-8b") == default_max_length("llama-3.1-8b-instruct")


def test_default_max_lengths():
    assert default_max_length("mistral-7b-instruct-v0.2") == 2048      # the app's TRL trainer
    assert default_max_length() == 2048
    assert default_max_length("llama-3.1-8b-instruct") == 4096
    assert default_max_length("qwen2.5-7b-instruct") == 4096
    assert default_max_length("openai-gpt-4o") == 65536


@pytest.mark.parametrize("call", [get_model, default_max_length, canonical_model_id])
def test_unknown_model_names_the_id_and_the_supported_ones(call):
    with pytest.raises(UnknownModel) as info:
        call("gpt-2")
    message = str(info.value)
    assert "'gpt-2'" in message
    for model_id in SUPPORTED_MODELS:
        assert model_id in message
    assert isinstance(info.value, ValueError) and info.value.code == "unknown_model"


def test_token_boundary_error_is_a_render_error():
    assert issubclass(TokenBoundaryError, TemplateRenderError)
    assert TokenBoundaryError.code != TemplateRenderError.code


def test_importing_the_package_loads_no_tokenizer():
    probe = ("import sys, lorafiles.tokens; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'mistral_common', 'quicktok', 'sentencepiece', 'tiktoken', 'jinja2', 'numpy'}))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
