"""Bounds on what the pipeline carries and stores (issue 9, items 2 and 3). Pure: no I/O.

Step Functions limits every state's input and output, a task's result and its error `Cause` to
256 KiB, and a payload over it ends the execution with `States.DataLimitExceeded`, which no
Catch handles. So nothing that grows with the input may reach a payload: tasks return ids and
counts, the Map iterates over batch numbers (at most MAX_BATCHES), an error message is clipped to
MAX_TASK_MESSAGE_CHARS, and the full details go to the database instead, capped too
(MAX_STORED_ERROR_BYTES), with a count of what was left out.

PostgreSQL `text` and `jsonb` cannot hold NUL (U+0000), and a lone surrogate cannot be encoded
as UTF-8 at all: `unstorable` names such a string, `storable_text` makes our own messages safe.
"""
from __future__ import annotations

import math
from typing import Any

import orjson

STATE_PAYLOAD_LIMIT = 256 * 1024  # Step Functions: state input/output, task result and error
MAX_TASK_MESSAGE_CHARS = 2_000  # an error message a task raises (the Lambda error `Cause`)
MAX_TASK_RESULT_BYTES = 16 * 1024  # what a task may return
MAX_BATCHES = 500  # Map iterations of one job (and ~7 history events each, far below 25,000)
MAX_PROBLEMS_PER_REPORT = 20  # errors (and warnings) listed per conversation; the rest are counted
MAX_PROBLEM_MESSAGE_CHARS = 500
MAX_LISTED = 10  # ids or values quoted in one message
MAX_STORED_ERROR_BYTES = 64 * 1024  # a job's recorded error (jsonb)
MAX_STORED_DETAILS = 50  # per-conversation entries in a job's recorded error
MAX_STORED_MESSAGE_CHARS = 2_000


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    note = f"... [{len(text) - limit} more characters]"
    keep = max(0, limit - len(note) - 8)  # the count may grow by a digit or two once the text is cut
    note = f"... [{len(text) - keep} more characters]"
    return text[:keep] + note


def listing(values: list[Any], limit: int = MAX_LISTED, item_chars: int = 60) -> str:
    """'a, b, c' for a short list; the first `limit` and a count of the rest for a long one."""
    shown = ", ".join(clip(str(v), item_chars) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def plan_batches(count: int, batch_size: int, max_batches: int = MAX_BATCHES) -> tuple[int, int]:
    """(batch size, number of batches) for `count` conversations: the configured size, grown when
    needed so that a job never has more than `max_batches` Map iterations."""
    size = max(1, batch_size)
    if count > size * max_batches:
        size = math.ceil(count / max_batches)
    return size, math.ceil(count / size) if count else 0


# ---------------------------------------------------------------------------- storable strings
def unstorable(text: str) -> str | None:
    """Why PostgreSQL cannot store `text` (None when it can)."""
    if "\x00" in text:
        return "contains a NUL character (U+0000), which the database cannot store"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(text[exc.start]):04X}), which is not valid Unicode text"
    return None


def storable_text(text: str) -> str:
    """`text` with what the database cannot hold written as escapes (for our own messages)."""
    if unstorable(text) is None:
        return text
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _first_unstorable(value: Any) -> str | None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            why = unstorable(node)
            if why:
                return why
        elif isinstance(node, dict):
            for k, v in node.items():
                why = unstorable(str(k))
                if why:
                    return f"has a key that {why.removeprefix('contains ')}"
                stack.append(v)
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return None


def unstorable_columns(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(column, why) for every value of a row about to be written that PostgreSQL cannot store
    (keys starting with "_" are not columns)."""
    out = []
    for column, value in row.items():
        if not column.startswith("_"):
            why = _first_unstorable(value)
            if why:
                out.append((column, why))
    return out


def invalid_message(reports: list[Any], shown: int = 5) -> str:
    """One bounded line for conversations that cannot be used: the first few, each with its first
    errors, and a count of the rest (the full reports go to the job's recorded error)."""
    parts = []
    for r in reports[:shown]:
        errors = "; ".join(clip(e.message, 200) for e in r.errors[:2])
        more = len(r.errors) - 2 + getattr(r, "errors_omitted", 0)
        parts.append(f"{r.conversation_id} ({errors}{f'; {more} more' if more > 0 else ''})")
    rest = f", and {len(reports) - shown} more" if len(reports) > shown else ""
    return clip(f"{len(reports)} conversation(s) cannot be used: " + ", ".join(parts) + rest, MAX_TASK_MESSAGE_CHARS)


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable_text(str(k)): _storable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_storable(v) for v in value]
    return value


# ---------------------------------------------------------------------------- capped errors
def _cap_problem(problem: Any) -> Any:
    if isinstance(problem, dict):
        return {k: clip(v, MAX_PROBLEM_MESSAGE_CHARS) if isinstance(v, str) else v for k, v in problem.items()}
    return clip(str(problem), MAX_PROBLEM_MESSAGE_CHARS)


def _cap_detail(detail: Any, problems: int) -> Any:
    if not isinstance(detail, dict):
        return clip(str(detail), MAX_PROBLEM_MESSAGE_CHARS)
    out: dict[str, Any] = {}
    for key, value in detail.items():
        if key in ("errors", "warnings") and isinstance(value, list):
            out[key] = [_cap_problem(p) for p in value[:problems]]
            out[f"{key}_omitted"] = int(detail.get(f"{key}_omitted") or 0) + max(0, len(value) - problems)
        elif isinstance(value, str):
            out[key] = clip(value, MAX_PROBLEM_MESSAGE_CHARS)
        elif key.endswith("_omitted"):
            out.setdefault(key, value)
        else:
            out[key] = value
    return out


def cap_error(error: dict[str, Any] | None, max_bytes: int = MAX_STORED_ERROR_BYTES) -> dict[str, Any] | None:
    """A job error ({code, message, details}) bounded to `max_bytes` of JSON and storable: the
    message clipped, at most MAX_STORED_DETAILS details with at most MAX_PROBLEMS_PER_REPORT
    problems each, and `details_omitted` / `errors_omitted` counting what was left out."""
    if error is None:
        return None
    error = _storable(error)
    base = {k: v for k, v in error.items() if k not in ("message", "details")}
    base["code"] = clip(str(error.get("code") or "error"), 200)
    base["message"] = clip(str(error.get("message") or ""), MAX_STORED_MESSAGE_CHARS)
    details = error.get("details")
    keep, problems = MAX_STORED_DETAILS, MAX_PROBLEMS_PER_REPORT
    while True:
        out = dict(base)
        if isinstance(details, list):
            out["details"] = [_cap_detail(d, problems) for d in details[:keep]]
            omitted = int(error.get("details_omitted") or 0) + max(0, len(details) - keep)
            if omitted or "details_omitted" in error:
                out["details_omitted"] = omitted
        elif isinstance(details, dict):
            out["details"] = _cap_detail(details, problems)
        elif details is not None:
            out["details"] = clip(str(details), MAX_STORED_MESSAGE_CHARS)
        else:
            out["details"] = None
        size = len(orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS, default=str))
        if size <= max_bytes or (keep <= 1 and problems <= 1):
            return out
        if problems > 1 and (keep <= 10 or problems > 5):
            problems = max(1, problems // 2)
        else:
            keep = max(1, keep // 2)
