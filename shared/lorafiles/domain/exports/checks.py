"""Pre-flight checks: the text of every message, and every produced line.

Text checks run on the dialogue messages before any token is counted (errors stop the build of
the conversation's lines). Line checks run on the decoded bytes of each produced line: the
OpenAI data-preparation cookbook's seven format checks on openai lines, and the structural
invariants (user first after the system message, alternation, trained assistant last, no blank
content) on the messages of every line of every format. Non-zero line checks are errors: they
mean the builder is wrong, not the data.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..problems import Problem
from .dialogue import ASSISTANT, USER, Dialogue
from .fixes import (
    control_characters,
    fix_literal_escapes,
    has_literal_escapes,
    invalid_unicode,
    is_blank,
)

# Control strings of every supported chat template; checked in addition to the model's own.
WELL_KNOWN_CONTROL_STRINGS = (
    "[INST]", "[/INST]", "<s>", "</s>",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>",
    "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
)
OPENAI_CHECKS = (
    "data_type", "missing_messages_list", "message_missing_key", "message_unrecognized_key",
    "unrecognized_role", "missing_content", "example_missing_assistant_message",
)
CHECK_NAMES = OPENAI_CHECKS + (
    "alternation", "starts_with_user", "ends_on_assistant", "repeated_user_input", "role_inferred",
    "empty_content", "truncated_target", "literal_escapes", "template_render_failed", "control_tokens",
    "control_characters", "invalid_unicode", "over_max_length", "zero_trainable_tokens",
    "weight_on_non_assistant", "view_mismatch",
)
_OPENAI_KEYS = ("role", "content", "name", "function_call", "weight")
_OPENAI_ROLES = ("system", "user", "assistant", "function")
_WHAT = {"system_prompt": "system prompt", "current_user_input": "user input", "target_response": "target response"}


def _what(field_name: str) -> str:
    return _WHAT.get(field_name.rpartition(".")[2], "history content")


def prepare_text(dialogues: Iterable[Dialogue], *, fix: bool, control_strings: Iterable[str],
                 problems: list[Problem], changes: Counter[str], checks: Counter[str]) -> None:
    """Set each message's export `content` (text fixes) and check it; errors go in `problems`."""
    tokens = sorted(set(control_strings) | set(WELL_KNOWN_CONTROL_STRINGS))
    for d in dialogues:
        d.system_content = _prepare_one(d.system, d.system_field, fix, tokens, problems, changes, checks)
        for m in d.messages:
            m.content = _prepare_one(m.text, m.field, fix, tokens, problems, changes, checks)


def _prepare_one(text: str, where: str, fix: bool, tokens: Sequence[str], problems: list[Problem],
                 changes: Counter[str], checks: Counter[str]) -> str:
    bad = invalid_unicode(text)
    if bad:
        checks["invalid_unicode"] += 1
        problems.append(Problem(code="invalid_unicode", field=where,
                                message=f"{_what(where)} holds {bad}, which is not valid Unicode text"))
    escaped = has_literal_escapes(text)
    content = fix_literal_escapes(text) if fix and escaped else text
    if escaped:
        checks["literal_escapes"] += 1
        changes["literal_escapes_fixed"] += int(fix)
        problems.append(Problem(
            code="literal_escapes", severity="warning", field=where,
            message=f"{_what(where)} holds literal backslash-n, backslash-quote or backslash-t: "
                    + ("replaced by real characters in the exports" if fix
                       else "kept as written (fix_literal_escapes is off)")))
    if is_blank(content):
        checks["empty_content"] += 1
        problems.append(Problem(code="empty_content", field=where,
                                message=f"{_what(where)} is empty or whitespace only"))
    for token in tokens:
        if token in content:
            checks["control_tokens"] += 1
            problems.append(Problem(code="control_token", field=where,
                                    message=f"{_what(where)} contains the chat-template control string {token!r}"))
    ctrl = control_characters(content)
    if ctrl:
        checks["control_characters"] += 1
        problems.append(Problem(code="control_characters", severity="warning", field=where,
                                message=f"{_what(where)} contains control character(s) {', '.join(ctrl)}; kept"))
    return content


def openai_format_errors(example: Any) -> Counter[str]:
    """The OpenAI cookbook's format checks of one decoded line (chat fine-tuning data preparation)."""
    if not isinstance(example, dict):
        return Counter(data_type=1)
    messages = example.get("messages")
    if not messages:
        return Counter(missing_messages_list=1)
    errors: Counter[str] = Counter()
    for message in messages:
        if not isinstance(message, dict):
            errors["data_type"] += 1
            continue
        if "role" not in message or "content" not in message:
            errors["message_missing_key"] += 1
        if any(k not in _OPENAI_KEYS for k in message):
            errors["message_unrecognized_key"] += 1
        if message.get("role") not in _OPENAI_ROLES:
            errors["unrecognized_role"] += 1
        content = message.get("content")
        function_call = message.get("function_call")
        if (not content and not function_call) or not isinstance(content, str):
            errors["missing_content"] += 1
    if not any(isinstance(m, dict) and m.get("role") == ASSISTANT for m in messages):
        errors["example_missing_assistant_message"] = 1
    return errors


def line_violations(messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> list[str]:
    """Structural invariants of one line's messages (optional system first); names of those violated."""
    out: list[str] = []
    body = list(messages[1:] if messages and messages[0].get("role") == "system" else messages)
    flags = list(trained[len(messages) - len(body):])
    if not body or body[0].get("role") != USER:
        out.append("starts_with_user")
    if any(m.get("role") != (USER if i % 2 == 0 else ASSISTANT) for i, m in enumerate(body)):
        out.append("alternation")
    if not body or body[-1].get("role") != ASSISTANT or not flags[-1]:
        out.append("ends_on_assistant")
    if any(not isinstance(m.get("content"), str) or is_blank(m["content"]) for m in messages):
        out.append("empty_content")
    return out
