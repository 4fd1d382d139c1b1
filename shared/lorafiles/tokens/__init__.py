"""Target models for the trainer-ready exports: real tokenizer + real chat template per model.

Adapters behind `lorafiles.ports.ChatModel` (see docs/EXPORTS.md, "Token counting"):

| id | tokenizer (package) | chat template | `default_max_length` |
|---|---|---|---|
| `mistral-7b-instruct-v0.2` (default) | SentencePiece v1 (file shipped in tokens/data) | HF system-aware template | 2048 |
| `llama-3.1-8b-instruct` (alias `llama-3.1-8b`) | Llama 3 BPE (quicktok-v1 `llama3`) | HF template | 4096 |
| `qwen2.5-7b-instruct` | Qwen BPE (quicktok-v1 `qwen3`) | HF template | 4096 |
| `openai-gpt-4o` | o200k_base (quicktok-v1) | OpenAI cookbook counting framing | 65536 |

Max lengths: 2048 is the app trainer's sequence length (TRL, Mistral v0.2). For Llama 3.1 and
Qwen 2.5 (128k / 32k context windows) 4096 is a common LoRA SFT sequence length that fits every
example of the 72-conversation corpus whole (one example per conversation, the longest is 3,990
Mistral tokens, 3,549 Llama 3.1 and 3,605 Qwen 2.5 tokens) while keeping activation memory modest. For GPT-4o it is the
per-example limit of OpenAI's fine-tuning guide for gpt-4o-2024-08-06 (65,536 tokens).

Loading is lazy: importing this package imports no tokenizer package and reads no vocabulary;
`get_model(id)` loads one model on first use and keeps it for the process. Template texts and
their sources: `templates/` and `templates/SOURCES.md`. What each `encode` reproduces, and the
known differences from the Hugging Face tokenizers: the docstrings of `mistral` and `bpe`;
trainable-token masking: `_base`.
"""
from __future__ import annotations

import threading
from importlib import import_module
from typing import TYPE_CHECKING

from ..ports import TemplateRenderError, TokenCount
from ._base import AssistantSpan, TokenBoundaryError

if TYPE_CHECKING:
    from ..ports import ChatModel

DEFAULT_MODEL = "mistral-7b-instruct-v0.2"
SUPPORTED_MODELS: tuple[str, ...] = (
    "mistral-7b-instruct-v0.2",
    "llama-3.1-8b-instruct",
    "qwen2.5-7b-instruct",
    "openai-gpt-4o",
)
MODEL_ALIASES: dict[str, str] = {"llama-3.1-8b": "llama-3.1-8b-instruct"}

_MAX_LENGTH: dict[str, int] = {
    "mistral-7b-instruct-v0.2": 2048,
    "llama-3.1-8b-instruct": 4096,
    "qwen2.5-7b-instruct": 4096,
    "openai-gpt-4o": 65536,
}
_LOADERS: dict[str, tuple[str, str]] = {        # id -> (module, loader function)
    "mistral-7b-instruct-v0.2": ("lorafiles.tokens.mistral", "load"),
    "llama-3.1-8b-instruct": ("lorafiles.tokens.bpe", "load_llama31"),
    "qwen2.5-7b-instruct": ("lorafiles.tokens.bpe", "load_qwen25"),
    "openai-gpt-4o": ("lorafiles.tokens.bpe", "load_openai"),
}

_cache: dict[str, ChatModel] = {}
_lock = threading.Lock()


class UnknownModel(ValueError):
    """A target model id that is not in the registry."""

    code = "unknown_model"

    def __init__(self, model_id: object) -> None:
        aliases = ", ".join(f"{a!r} (= {t!r})" for a, t in MODEL_ALIASES.items())
        super().__init__(f"unknown target model {model_id!r}; supported: "
                         f"{', '.join(repr(m) for m in SUPPORTED_MODELS)}; aliases: {aliases}")
        self.model_id = model_id


def canonical_model_id(model_id: str) -> str:
    """The registry id for `model_id` (an id or an alias, case and surrounding spaces ignored)."""
    if not isinstance(model_id, str):
        raise UnknownModel(model_id)
    key = model_id.strip().lower()
    key = MODEL_ALIASES.get(key, key)
    if key not in _LOADERS:
        raise UnknownModel(model_id)
    return key


def default_max_length(model_id: str = DEFAULT_MODEL) -> int:
    """The default `max_length` (tokens per example) for `model_id`."""
    return _MAX_LENGTH[canonical_model_id(model_id)]


def get_model(model_id: str = DEFAULT_MODEL) -> ChatModel:
    """The `ChatModel` for `model_id`, loaded on first use and cached for the process."""
    key = canonical_model_id(model_id)
    model = _cache.get(key)
    if model is None:
        with _lock:
            model = _cache.get(key)
            if model is None:
                module, loader = _LOADERS[key]
                model = getattr(import_module(module), loader)()
                _cache[key] = model
    return model


__all__ = [
    "DEFAULT_MODEL", "MODEL_ALIASES", "SUPPORTED_MODELS", "AssistantSpan", "TemplateRenderError",
    "TokenBoundaryError", "TokenCount", "UnknownModel", "canonical_model_id", "default_max_length",
    "get_model",
]
