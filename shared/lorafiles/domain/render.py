"""Rendering the two outputs: the Full Training JSON (for people) and the JSONL (for the trainer).

Both are assembled from per-conversation *fragments* rendered once, when a conversation joins a
file: publishing a version streams a small header, the fragments in member order and a footer,
so it never re-reads enriched files and its memory does not grow with the file.
The streamed Full JSON is byte-identical to `orjson.dumps(document, OPT_INDENT_2) + b"\\n"`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterable, Iterator, Sequence

import orjson

from .enriched import ParsedConversation, Scaffolding

FORMAT_VERSION = "4.0.0"
FORMAT_SPEC = "brightrun-lora-v4"
_INDENT = orjson.OPT_INDENT_2
_ELEMENT_PREFIX = b"    "  # a conversation sits two levels deep: document -> "conversations" -> [ ... ]
JSONL_FIELDS = (
    "conversation_metadata", "system_prompt", "conversation_history", "current_user_input",
    "emotional_context", "target_response", "training_metadata",
)


@dataclass(frozen=True)
class MemberMeta:
    """What the Full JSON says about one conversation, from the database and the file."""

    conversation_id: str
    source_file: str
    created_date: str | None
    batch_id: str | None
    total_turns: int
    quality_tier: str
    scaffolding: Scaffolding

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "source_file": self.source_file,
            "created_date": self.created_date,
            "batch_id": self.batch_id,
            "total_turns": self.total_turns,
            "quality_tier": self.quality_tier,
            "scaffolding": self.scaffolding.as_dict(),
        }


def conversation_element(parsed: ParsedConversation, meta: MemberMeta) -> dict[str, Any]:
    return {"conversation_metadata": meta.as_dict(), "training_pairs": parsed.pairs}


ID_PREFIX = 8  # formats.md: JSONL `id` = pair id + "_" + the first 8 characters of the conversation id


def jsonl_id_suffixes(conversation_ids: Sequence[str]) -> dict[str, str]:
    """The conversation part of the JSONL ids of conversations in FILE ORDER (members by position,
    then a job's new conversations in request order): the first 8 characters, unless an earlier
    conversation already starts with the same 8; then the shortest longer prefix (not ending in
    `-`) that no earlier conversation of that prefix shares and no earlier one uses.

    A conversation's suffix depends only on the conversations before it, so adding conversations
    never changes (or re-renders) the ids of the members already in a file, and re-rendering a
    member gives it the same id again. Only conversations sharing a first-8 prefix influence each
    other, so callers may pass just those. Suffixes are pairwise distinct; for UUIDs (no `_`) the
    ids `<pair id>_<suffix>` are therefore distinct across conversations."""
    out: dict[str, str] = {}
    used: set[str] = set()
    earlier: dict[str, list[str]] = {}
    for cid in conversation_ids:
        if cid in out:
            continue
        group = earlier.setdefault(cid[:ID_PREFIX], [])
        out[cid] = _suffix(cid, group, used)
        used.add(out[cid])
        group.append(cid)
    return out


def _suffix(cid: str, earlier: list[str], used: set[str]) -> str:
    short = cid[:ID_PREFIX]
    if not earlier:  # nobody uses `short`: every other suffix starts with another prefix or is longer
        return short
    for n in range(ID_PREFIX + 1, len(cid) + 1):
        candidate = cid[:n]
        if candidate.endswith("-") and n < len(cid):
            continue
        if candidate not in used and all(e[:n] != candidate for e in earlier):
            return candidate
    k = 2  # cid is a prefix of an earlier id (not a UUID): still unique, still deterministic
    while f"{cid}~{k}" in used:
        k += 1
    return f"{cid}~{k}"


def jsonl_records(parsed: ParsedConversation, conversation_id: str,
                  id_suffix: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per trainable pair (non-null target_response), in file order. `id_suffix`
    (from `jsonl_id_suffixes`) defaults to the first 8 characters of the conversation id."""
    suffix = conversation_id[:ID_PREFIX] if id_suffix is None else id_suffix
    for pair in parsed.pairs:
        if pair.get("target_response") is None:
            continue
        record: dict[str, Any] = {
            "id": f"{pair['id']}_{suffix}",
            "conversation_id": conversation_id,
            "turn_number": pair["turn_number"],
        }
        for key in JSONL_FIELDS:
            record[key] = pair.get(key)
        yield record


def render_fragments(parsed: ParsedConversation, meta: MemberMeta,
                     id_suffix: str | None = None) -> tuple[bytes, bytes]:
    """(Full JSON fragment, JSONL lines) of one conversation. Deterministic."""
    element = orjson.dumps(conversation_element(parsed, meta), option=_INDENT)
    json_fragment = _ELEMENT_PREFIX + element.replace(b"\n", b"\n" + _ELEMENT_PREFIX)
    jsonl = b"".join(orjson.dumps(r) + b"\n" for r in jsonl_records(parsed, meta.conversation_id, id_suffix))
    return json_fragment, jsonl


@dataclass(frozen=True)
class FileHeader:
    file_name: str
    file_version: int
    created_date: str
    last_updated: str
    target_model: str
    vertical: str | None
    total_conversations: int
    total_training_pairs: int
    total_turns: int
    quality_summary: dict[str, Any]
    scaffolding_distribution: dict[str, Any]
    consultant_profile: dict[str, Any] = field(default_factory=dict)

    def training_file_metadata(self) -> dict[str, Any]:
        return {
            "file_name": self.file_name,
            "version": FORMAT_VERSION,
            "file_version": self.file_version,
            "created_date": self.created_date,
            "last_updated": self.last_updated,
            "format_spec": FORMAT_SPEC,
            "target_model": self.target_model,
            "vertical": self.vertical,
            "total_conversations": self.total_conversations,
            "total_training_pairs": self.total_training_pairs,
            "total_turns": self.total_turns,
            "quality_summary": self.quality_summary,
            "scaffolding_distribution": self.scaffolding_distribution,
        }


def json_head(header: FileHeader) -> bytes:
    head = orjson.dumps(
        {"training_file_metadata": header.training_file_metadata(), "consultant_profile": header.consultant_profile},
        option=_INDENT,
    )
    assert head.endswith(b"\n}")
    return head[:-2] + b',\n  "conversations": ['


def write_training_json(out: BinaryIO, header: FileHeader, fragments: Iterable[bytes]) -> None:
    out.write(json_head(header))
    first = True
    for fragment in fragments:
        out.write(b"\n" if first else b",\n")
        out.write(fragment)
        first = False
    out.write(b"]\n}\n" if first else b"\n  ]\n}\n")


def jsonl_meta_line(file_name: str, total_pairs: int) -> bytes:
    return orjson.dumps({"_meta": {"file_name": file_name, "total_pairs": total_pairs, "version": FORMAT_VERSION}}) + b"\n"


def write_training_jsonl(out: BinaryIO, file_name: str, total_pairs: int, fragments: Iterable[bytes]) -> None:
    out.write(jsonl_meta_line(file_name, total_pairs))
    for fragment in fragments:
        out.write(fragment)
