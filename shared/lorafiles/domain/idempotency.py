"""What makes two job requests "the same request" (Idempotency-Key semantics). Pure.

A key names ONE request: retrying it with the same request returns the same job; reusing it for
a request that differs in anything (kind, target file, name, description, conversations, or any
option passed to `start_job` later, e.g. a training `policy`) is refused, naming what differs.

`canonical_request(**fields)` is the request as stored on the job row (JSON), and
`request_fingerprint(**fields)` the sha256 of its canonical JSON. Both are generic over the
keyword arguments: a new option of `start_job` joins the fingerprint by being passed through
(`request_fingerprint(kind=..., file_id=..., name=..., description=..., conversation_ids=...,
policy=policy)`). Extra options that are None are left out, so adding an optional argument
does not change the fingerprint of requests that do not use it.
"""
from __future__ import annotations

import hashlib
import re
import uuid
from typing import Any, Mapping

import orjson

CORE_FIELDS = ("kind", "file_id", "name", "description", "conversation_ids")


def _canonical(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


_UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _canonical_file_id(file_id: Any) -> Any:
    """A UUID in its lower-case 8-4-4-4-12 form; anything else as given (it names no file)."""
    if file_id is None:
        return None
    text = str(file_id)
    return text.lower() if _UUID_TEXT.fullmatch(text) else text


def canonical_request(*, kind: str, file_id: Any = None, name: str | None = None, description: str | None = None,
                      conversation_ids: Any = None, **extra: Any) -> dict[str, Any]:
    """The request as a JSON-able dict: the core fields always, extra options when not None.
    Order of `conversation_ids` is kept (it is the member order of the file)."""
    request: dict[str, Any] = {
        "kind": kind,
        "file_id": _canonical_file_id(file_id),
        "name": name,
        "description": description,
        "conversation_ids": None if conversation_ids is None else [str(c) for c in conversation_ids],
    }
    for key in sorted(extra):
        if extra[key] is not None:
            request[key] = _canonical(extra[key])
    return request


def fingerprint_of(request: Mapping[str, Any]) -> str:
    """sha256 (hex) of a canonical request's JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(dict(request), option=orjson.OPT_SORT_KEYS)).hexdigest()


def request_fingerprint(**fields: Any) -> str:
    """sha256 of the canonical request built from `start_job`'s keyword arguments."""
    return fingerprint_of(canonical_request(**fields))


def request_differences(stored: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The fields in which two canonical requests differ: core fields first (in CORE_FIELDS
    order), then any other option in name order. Empty when they are the same request."""
    keys = list(CORE_FIELDS) + sorted((set(stored) | set(new)) - set(CORE_FIELDS))
    return [k for k in keys if orjson.dumps(stored.get(k), option=orjson.OPT_SORT_KEYS)
            != orjson.dumps(new.get(k), option=orjson.OPT_SORT_KEYS)]
