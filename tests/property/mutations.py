"""Hypothesis strategies that mutate valid enriched files the way a hostile or broken producer could:
values replaced by anything JSON can hold (NUL, blanks, huge numbers, wrong types, deep nesting),
keys dropped or duplicated, pairs reordered, bytes cut or spliced."""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import orjson
from hypothesis import strategies as st

from lorafiles.domain.samples import dumps_enriched, generate_conversation

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "enriched"
Path_ = tuple  # a path into the decoded document: keys and indices


@functools.lru_cache(maxsize=None)
def sources() -> tuple[bytes, ...]:
    """Valid enriched files: generated ones (with the accepted quirks) and the real fixtures."""
    docs = [dumps_enriched(generate_conversation("prop-clean", turns=4)),
            dumps_enriched(generate_conversation("prop-quirks", turns=6, quirks=(
                "truncated_backslash", "double_escaped_newline", "history_without_role"))),
            dumps_enriched(generate_conversation("prop-older", turns=4, quirks=("missing_scaffolding_keys",)))]
    if FIXTURES.is_dir():
        docs += [p.read_bytes() for p in sorted(FIXTURES.glob("*.json"))]
    return tuple(docs)


def _paths(node: Any, prefix: Path_ = ()) -> list[Path_]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, prefix + (i,))
    return out


def _get(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: Path_, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


HOSTILE_TEXT = st.sampled_from(["", " ", "\n\t", "\u00a0", "\u200b", "\x00", "a\x00b", "\\", "\\n", "\u202e",
                                "null", "true", "3", "\ufeff", "\U0001f600", "x" * 5000])
SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2 ** 63), max_value=2 ** 64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40), HOSTILE_TEXT,
)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                      st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=8)


def _deep(depth: int) -> Any:
    node: Any = "bottom"
    for _ in range(depth):
        node = {"x": node}
    return node


@st.composite
def mutated(draw) -> tuple[bytes, str]:
    """(bytes of a mutated enriched file, a description of the mutations for failure reports)."""
    blob = draw(st.sampled_from(sources()))
    doc = orjson.loads(blob)
    done: list[str] = []
    text_level: list[str] = []
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        kind = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate_key", "deep",
                                     "swap_pairs", "drop_pairs", "cut_bytes", "splice_bytes"]))
        if kind == "replace":
            path = draw(st.sampled_from(paths))
            value = draw(VALUES)
            doc = _set(doc, path, value)
            done.append(f"replace {list(path)} = {value!r:.60}")
        elif kind == "delete":
            keyed = [p for p in paths if p and isinstance(p[-1], str)]
            if keyed:
                path = draw(st.sampled_from(keyed))
                del _get(doc, path[:-1])[path[-1]]
                done.append(f"delete {list(path)}")
        elif kind == "deep":
            path = draw(st.sampled_from(paths))
            depth = draw(st.sampled_from([50, 260, 300]))
            doc = _set(doc, path, _deep(depth))
            done.append(f"nest {depth} levels at {list(path)}")
        elif kind in ("swap_pairs", "drop_pairs"):
            pairs = doc.get("training_pairs") if isinstance(doc, dict) else None
            if isinstance(pairs, list) and len(pairs) >= 2:
                i = draw(st.integers(0, len(pairs) - 1))
                j = draw(st.integers(0, len(pairs) - 1))
                if kind == "swap_pairs":
                    pairs[i], pairs[j] = pairs[j], pairs[i]
                else:
                    del pairs[i]
                done.append(f"{kind} {i} {j}")
        else:
            text_level.append(kind)
    out = json.dumps(doc, ensure_ascii=False).encode()  # stdlib: deeper than orjson can write
    for kind in text_level:
        if kind == "cut_bytes" and len(out) > 2:
            at = draw(st.integers(1, len(out) - 1))
            out = out[:at]
            done.append(f"cut at byte {at}")
        elif kind == "splice_bytes":
            at = draw(st.integers(0, len(out)))
            junk = draw(st.binary(min_size=1, max_size=8))
            out = out[:at] + junk + out[at:]
            done.append(f"splice {junk!r} at {at}")
    if draw(st.integers(0, 5)) == 0:  # a duplicate key, which orjson would read silently
        objects = [i for i in range(len(out)) if out[i:i + 1] == b"{" and out[i + 1:i + 2] == b'"']
        if objects:
            at = draw(st.sampled_from(objects))
            end = out.find(b'"', at + 2)
            if end != -1:
                key = out[at + 1:end + 1]
                out = out[:at + 1] + key + b":" + json.dumps(draw(SCALARS)).encode() + b"," + out[at + 1:]
                done.append(f"duplicate key {key.decode(errors='replace')} at byte {at}")
    return out, "; ".join(done)
