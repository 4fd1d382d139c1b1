"""One conversation's exports, packed into a single object (the *exports bundle*).

Sections (each format's JSONL lines, then the conversation's report entry) are concatenated in
a fixed order; the byte range of each is kept in the database (`exports_layout`), so publishing
reads one object per conversation for all formats and slices it without parsing.
"""
from __future__ import annotations

from typing import Mapping

import orjson

from .exports import EXPORT_FORMATS, MemberExports

REPORT_SECTION = "report"
SECTIONS = (*EXPORT_FORMATS, REPORT_SECTION)


def pack(exports: MemberExports) -> tuple[bytes, dict[str, list[int]]]:
    """(bundle bytes, {section: [offset, length]}). Deterministic."""
    parts = {**{fmt: exports.lines[fmt] for fmt in EXPORT_FORMATS},
             REPORT_SECTION: orjson.dumps(exports.report_entry(), option=orjson.OPT_SORT_KEYS)}
    layout: dict[str, list[int]] = {}
    offset = 0
    for name in SECTIONS:
        layout[name] = [offset, len(parts[name])]
        offset += len(parts[name])
    return b"".join(parts[name] for name in SECTIONS), layout


def section(bundle: bytes, layout: Mapping[str, list[int]], name: str) -> bytes:
    """One section of a bundle; a layout that does not fit the bundle is an error, not a short read."""
    offset, length = layout[name]
    if offset < 0 or length < 0 or offset + length > len(bundle):
        raise ValueError(f"exports bundle section {name!r} [{offset}, {offset + length}) is outside its "
                         f"{len(bundle)} bytes")
    return bundle[offset:offset + length]
