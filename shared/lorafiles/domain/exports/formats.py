"""The four line shapes, built from the examples of one dialogue.

A line is a *window* of a dialogue (messages `start..end` after the system message) plus the
indices trained in it; its model view (what is rendered and counted) is exactly the messages
the line holds. openai and axolotl: one line per example, per-message training flag. TRL: one
line per trained turn, the prompt being the example up to that turn. sharegpt: every assistant
message of a line is trained, so an example is cut around its context-only exchanges.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .dialogue import ASSISTANT, Dialogue
from .length import Example

SHAREGPT_FROM = {"user": "human", "assistant": "gpt"}


@dataclass(frozen=True)
class Line:
    fmt: str
    start: int
    end: int
    trained: tuple[int, ...]
    record: dict[str, Any]

    def flags(self) -> list[bool]:
        """Trained flag per message of the model view (system first)."""
        return [False] + [i in self.trained for i in range(self.start, self.end + 1)]


def _window(d: Dialogue, start: int, end: int) -> list[tuple[int, str, str]]:
    return [(i, d.messages[i].role, d.messages[i].content) for i in range(start, end + 1)]


def openai_line(d: Dialogue, ex: Example) -> Line:
    trained = set(ex.trained)
    messages: list[dict[str, Any]] = [{"role": "system", "content": d.system_content}]
    for i, role, content in _window(d, ex.start, ex.end):
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == ASSISTANT:
            msg["weight"] = 1 if i in trained else 0
        messages.append(msg)
    return Line("openai", ex.start, ex.end, tuple(ex.trained), {"messages": messages})


def axolotl_line(d: Dialogue, ex: Example) -> Line:
    trained = set(ex.trained)
    messages = [{"role": "system", "content": d.system_content, "train": False}] + [
        {"role": role, "content": content, "train": i in trained} for i, role, content in _window(d, ex.start, ex.end)]
    return Line("axolotl", ex.start, ex.end, tuple(ex.trained), {"messages": messages})


def trl_lines(d: Dialogue, ex: Example) -> list[Line]:
    lines = []
    for a in ex.trained:
        prompt = [{"role": "system", "content": d.system_content}] + [
            {"role": role, "content": content} for _, role, content in _window(d, ex.start, a - 1)]
        completion = [{"role": ASSISTANT, "content": d.messages[a].content}]
        lines.append(Line("trl", ex.start, a, (a,), {"prompt": prompt, "completion": completion}))
    return lines


def sharegpt_windows(ex: Example) -> tuple[list[tuple[int, int, tuple[int, ...]]], int]:
    """Windows of an example in which every assistant message is trained, and the number of
    messages left out (each context-only assistant message with the user message before it)."""
    trained = set(ex.trained)
    windows: list[tuple[int, int, tuple[int, ...]]] = []
    start: int | None = None
    dropped = 0
    for u in range(ex.start, ex.end + 1, 2):  # exchanges: user u, assistant u + 1
        a = u + 1
        if a in trained:
            start = u if start is None else start
            continue
        dropped += 2
        if start is not None:
            windows.append((start, u - 1, tuple(i for i in range(start + 1, u, 2))))
            start = None
    if start is not None:
        windows.append((start, ex.end, tuple(i for i in range(start + 1, ex.end + 1, 2))))
    return windows, dropped


def sharegpt_lines(d: Dialogue, ex: Example) -> tuple[list[Line], int]:
    windows, dropped = sharegpt_windows(ex)
    lines = []
    for start, end, trained in windows:
        conversations = [{"from": SHAREGPT_FROM[role], "value": content} for _, role, content in _window(d, start, end)]
        lines.append(Line("sharegpt", start, end, trained, {"conversations": conversations, "system": d.system_content}))
    return lines, dropped


def view_of(fmt: str, record: dict[str, Any]) -> tuple[list[dict[str, str]], list[bool]]:
    """(messages, trained flags) a trainer reads from one decoded line of format `fmt`."""
    if fmt == "openai":
        msgs = record["messages"]
        return ([{"role": m["role"], "content": m["content"]} for m in msgs],
                [m.get("weight") == 1 for m in msgs])
    if fmt == "axolotl":
        msgs = record["messages"]
        return [{"role": m["role"], "content": m["content"]} for m in msgs], [m["train"] is True for m in msgs]
    if fmt == "trl":
        msgs = list(record["prompt"]) + list(record["completion"])
        return ([{"role": m["role"], "content": m["content"]} for m in msgs],
                [False] * len(record["prompt"]) + [True] * len(record["completion"]))
    if fmt == "sharegpt":
        role_of = {v: k for k, v in SHAREGPT_FROM.items()}
        msgs = [{"role": "system", "content": record["system"]}] + [
            {"role": role_of[c["from"]], "content": c["value"]} for c in record["conversations"]]
        return msgs, [m["role"] == ASSISTANT for m in msgs]
    raise ValueError(f"unknown export format {fmt!r}")
