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
    """One section of a bundle; a layout that does not fit the bundle is an error, not a short read.
    The layout is stored state (the database's `exports_layout`): anything but a pair of
    non-negative integers inside the bundle is refused, naming the section."""
    span = layout.get(name) if isinstance(layout, Mapping) else None
    if (not isinstance(span, (list, tuple)) or len(span) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
        raise ValueError(f"exports bundle layout has no [offset, length] for section {name!r}: {span!r}")
    offset, length = span
    if offset < 0 or length < 0 or offset + length > len(bundle):
        raise ValueError(f"exports bundle section {name!r} [{offset}, {offset + length}) is outside its "
                         f"{len(bundle)} bytes")
    return bundle[offset:offset + length]
