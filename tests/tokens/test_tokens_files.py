"""vocab_sha256 / template_sha256: stable, and the hashes of the files actually used."""
from __future__ import annotations

import base64
import hashlib
import os
import re
from importlib import resources

import pytest
from lorafiles.tokens import SUPPORTED_MODELS, get_model

VOCAB = {   # model -> (file inside the installed package, its sha256)
    "mistral-7b-instruct-v0.2": ("lorafiles.tokens", "data/mistral-v1.tokenizer.model",
                                 "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055"),
    "llama-3.1-8b-instruct": ("quicktok", "data/llama3.vocab",
                              "124bfc185ea93e669e4ce2e1b5aa5733d2e793a910372fa198dfc1597e1220f2"),
    "qwen2.5-7b-instruct": ("quicktok", "data/qwen3.vocab",
                            "6114087889f61af31f72abe80529bbd09826df4d396753a281a14bcc21abc2fa"),
    "openai-gpt-4o": ("quicktok", "data/o200k.vocab",
                      "6b17521f79788c7ace48fc75f6edde125637a90b0018427e68f28d051b2ac1fe"),
}
TEMPLATE_SHA256 = {
    "mistral-7b-instruct-v0.2": "796853172235ab3aaa4810013ddfe2eab481bda3306dad4f700c00d436eed596",
    "llama-3.1-8b-instruct": "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65",
    "qwen2.5-7b-instruct": "cd8e9439f0570856fd70470bf8889ebd8b5d1107207f67a5efb46e342330527f",
    "openai-gpt-4o": "d94460d75465765476de207026f98629af633bda7b669ec916bf51978b8173a7",
}
HEX64 = re.compile(r"[0-9a-f]{64}")


def _package_file(package: str, relative: str) -> bytes:
    import importlib

    module = importlib.import_module(package)
    with open(os.path.join(os.path.dirname(module.__file__), relative), "rb") as fh:
        return fh.read()


def test_shipped_mistral_vocabulary_is_mistral_commons_file():
    """The 587 KB SentencePiece file shipped in lorafiles.tokens is mistral-common's v1 file, byte
    for byte (mistral-common is a test dependency only: it would add ~180 MB to the Lambda)."""
    assert _package_file("lorafiles.tokens", "data/mistral-v1.tokenizer.model") == \
        _package_file("mistral_common", "data/tokenizer.model.v1")


def _template_file(model_id: str) -> bytes:
    return resources.files("lorafiles.tokens").joinpath("templates", f"{model_id}.jinja").read_bytes()


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_vocab_sha256_is_the_loaded_file(model_id):
    package, relative, expected = VOCAB[model_id]
    model = get_model(model_id)
    assert HEX64.fullmatch(model.vocab_sha256)
    assert model.vocab_sha256 == hashlib.sha256(_package_file(package, relative)).hexdigest() == expected
    assert relative.split("/")[-1] in model.tokenizer_id


@pytest.mark.parametrize("model_id", SUPPORTED_MODELS)
def test_template_sha256_is_the_shipped_file(model_id):
    model = get_model(model_id)
    raw = _template_file(model_id)
    assert HEX64.fullmatch(model.template_sha256)
    assert model.template_sha256 == hashlib.sha256(raw).hexdigest() == TEMPLATE_SHA256[model_id]
    assert model.template_text == raw.decode("utf-8")


def test_sources_md_names_every_template_and_its_hash():
    sources = resources.files("lorafiles.tokens").joinpath("templates", "SOURCES.md").read_text("utf-8")
    for model_id, sha in TEMPLATE_SHA256.items():
        row = next(line for line in sources.splitlines() if line.startswith(f"| `{model_id}.jinja`"))
        assert sha in row
        if model_id != "openai-gpt-4o":
            assert "tokenizer_config.json" in row and re.search(r"@ `[0-9a-f]{40}`", row)


def test_templates_are_header_free_copies():
    """No added comment or header: the copies start with the original template's first tag."""
    starts = {"mistral-7b-instruct-v0.2": "{%- if messages[0]['role'] == 'system' %}\n",
              "llama-3.1-8b-instruct": "{{- bos_token }}\n",
              "qwen2.5-7b-instruct": "{%- if tools %}\n"}
    for model_id, start in starts.items():
        text = _template_file(model_id).decode("utf-8")
        assert text.startswith(start) and text.endswith("\n")


def _rebuilt_tiktoken_file(encoding: str, n_tokens: int) -> bytes:
    import quicktok

    enc = quicktok.get_encoding(encoding)
    return "".join(f"{base64.b64encode(enc.decode_single_token_bytes(i)).decode()} {i}\n"
                   for i in range(n_tokens)).encode()


def test_llama_vocab_rebuilds_metas_tokenizer_model():
    # Meta's Llama 3 / 3.1 tokenizer.model (also bundled in llama-models 0.3.0)
    assert hashlib.sha256(_rebuilt_tiktoken_file("llama3", 128000)).hexdigest() == \
        "82e9d31979e92ab929cd544440f129d9ecd797b69e327f80f17e1c50d5551b55"


def test_o200k_vocab_rebuilds_openais_file():
    # the expected_hash tiktoken checks for o200k_base.tiktoken
    assert hashlib.sha256(_rebuilt_tiktoken_file("o200k_base", 199998)).hexdigest() == \
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
