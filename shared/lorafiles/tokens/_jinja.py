"""Chat-template rendering configured the way Hugging Face `transformers` renders `chat_template`.

What `tokenizer.apply_chat_template(messages, tokenize=False)` sets up (transformers 4.4x/4.5x,
`utils/chat_template_utils.py`), reproduced here:

- `jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)` with the
  `loopcontrols` extension (`{% break %}` / `{% continue %}`);
- globals `raise_exception(message)` (a template refusal; here it becomes `TemplateRenderError`)
  and `strftime_now(format)` (the current local time, used by Llama 3.2+ templates; the shipped
  Llama 3.1 template only reads `date_string`, whose default "26 Jul 2024" keeps renders
  deterministic);
- filter `tojson` replaced by `json.dumps(x, ensure_ascii=False, indent=..., separators=...,
  sort_keys=...)` (Jinja's own escapes HTML characters);
- render variables: `messages`, `tools=None`, `documents=None`, `add_generation_prompt`, and the
  tokenizer's special-token strings (`bos_token`, `eos_token`, ... as its `special_tokens_map`).

The `{% generation %}` tag (assistant masks) is not needed by the shipped templates and is not
provided: a template using it fails to compile.
"""
from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from importlib import resources
from typing import Any

from ..ports import TemplateRenderError

TEMPLATE_PACKAGE = "lorafiles.tokens"
TEMPLATE_DIR = "templates"


class _Refusal(Exception):
    """`raise_exception` inside a template; carried out of Jinja unchanged."""


def _raise_exception(message: str) -> None:
    raise _Refusal(str(message))


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def template_bytes(name: str) -> bytes:
    """The shipped template file `templates/<name>` (package data)."""
    return resources.files(TEMPLATE_PACKAGE).joinpath(TEMPLATE_DIR, name).read_bytes()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ChatTemplate:
    """One compiled chat template plus the special-token variables its tokenizer passes."""

    def __init__(self, file_name: str, special_tokens: Mapping[str, str]) -> None:
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        raw = template_bytes(file_name)
        self.file_name = file_name
        self.text = raw.decode("utf-8")
        self.sha256 = sha256_hex(raw)
        self.special_tokens = dict(special_tokens)
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self._template = env.from_string(self.text)
        # Token counting renders the same message lists again and again (each trained turn's
        # prompt and closed prefix, each export line's window): keep recent renders. A template
        # that reads the clock (`strftime_now`) is rendered every time.
        self._memo: dict[Any, str] | None = None if "strftime_now" in self.text else {}
        self._memo_chars = 0
        self._memo_lock = threading.Lock()

    MEMO_CHARS = 1_000_000  # rendered characters kept (the memo is emptied when it would hold more)

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False) -> str:
        memo = self._memo
        if memo is None:
            return self._render(messages, add_generation_prompt)
        try:
            key = (bool(add_generation_prompt), tuple(tuple(m.items()) for m in messages))
            hash(key)
        except (TypeError, AttributeError):  # unhashable values, or not mappings: render as given
            return self._render(messages, add_generation_prompt)
        text = memo.get(key)
        if text is None:
            text = self._render(messages, add_generation_prompt)
            with self._memo_lock:
                if self._memo_chars + len(text) > self.MEMO_CHARS:
                    memo.clear()
                    self._memo_chars = 0
                if key not in memo:
                    memo[key] = text
                    self._memo_chars += len(text)
        return text

    def _render(self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool) -> str:
        from jinja2.exceptions import TemplateError

        chat = [dict(m) for m in messages]
        try:
            return self._template.render(messages=chat, tools=None, documents=None,
                                         add_generation_prompt=add_generation_prompt, **self.special_tokens)
        except _Refusal as exc:
            raise TemplateRenderError(str(exc)) from None
        except (TemplateError, TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
            raise TemplateRenderError(f"{self.file_name}: {type(exc).__name__}: {exc}") from exc
