"""What changed between two published versions of a training file (issue 12, item 5).

Pure domain code over two parsed `manifest.json` documents, each the complete record of one
version: its members (conversation id, source file and checksum, split, exclusion), the policy
and model it was built with, the token figures of every export, and its dataset section (splits,
duplicates, coverage). `usecases/diffing.py` fetches the two manifests (the owner's only) and
checks them against the checksums the database recorded before they get here.

The diff names the conversations added, removed, whose source changed, whose split or exclusion
changed, and moves every count: `{"from": a, "to": b, "change": b - a}` (`change` is None when
either side is unknown, e.g. a version published before the dataset-quality figures existed; a
note then says so). Lists are in member order of the version they come from; nothing is cut.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..exports import EXPORT_FORMATS
from .splits import SPLITS

TOKEN_FIGURES = ("lines", "trainable_tokens_per_epoch", "training_tokens_per_epoch", "examples_over_max_length",
                 "trainable_tokens_excluded", "context_tokens_trimmed")
DISTRIBUTION_FIGURES = ("p50", "p95", "max")
DUPLICATE_FIGURES = ("exact_responses", "exact_conversations", "near_response_pairs", "leakage")


class ManifestInvalid(ValueError):
    """A manifest that is not what the builder writes; the message names the version and the field."""


def moved(before: Any, after: Any) -> dict[str, Any]:
    """{from, to, change}; change is after - before when both are numbers, else None."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (before, after))
    change = round(after - before, 6) if numbers else None
    return {"from": before, "to": after, "change": change}


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def members_of(manifest: Any, label: str) -> dict[str, Mapping[str, Any]]:
    """conversation id -> member entry, in member order; refuses what the builder cannot have written."""
    if not isinstance(manifest, Mapping):
        raise ManifestInvalid(f"{label}: the manifest is not a JSON object")
    members = manifest.get("members")
    if not isinstance(members, list):
        raise ManifestInvalid(f"{label}: members is not a list")
    out: dict[str, Mapping[str, Any]] = {}
    for i, m in enumerate(members):
        if not isinstance(m, Mapping):
            raise ManifestInvalid(f"{label}: members[{i}] is not an object")
        cid = m.get("conversation_id")
        if not isinstance(cid, str) or not cid:
            raise ManifestInvalid(f"{label}: members[{i}].conversation_id is not a non-empty string")
        for field in ("source_sha256", "source_file"):
            if not isinstance(m.get(field), str):
                raise ManifestInvalid(f"{label}: members[{i}] (conversation {cid}): {field} is not a string")
        for field in ("split", "excluded"):
            if m.get(field) is not None and not isinstance(m.get(field), str):
                raise ManifestInvalid(f"{label}: members[{i}] (conversation {cid}): {field} is not a string")
        if cid in out:
            raise ManifestInvalid(f"{label}: conversation {cid} is listed twice (members[{i}])")
        out[cid] = m
    count = manifest.get("member_count")
    if count is not None and count != len(out):
        raise ManifestInvalid(f"{label}: member_count is {count!r} but members lists {len(out)}")
    return out


def _conversations(old: dict[str, Mapping[str, Any]], new: dict[str, Mapping[str, Any]]) -> dict[str, Any]:
    def placed(cid: str, m: Mapping[str, Any]) -> dict[str, Any]:
        return {"conversation_id": cid, "split": m.get("split"), "excluded": m.get("excluded")}

    added = [placed(c, m) for c, m in new.items() if c not in old]
    removed = [placed(c, m) for c, m in old.items() if c not in new]
    kept = [(c, old[c], m) for c, m in new.items() if c in old]
    source = [{"conversation_id": c, "source_file": b["source_file"], "from_sha256": a["source_sha256"],
               "to_sha256": b["source_sha256"], **({"from_source_file": a["source_file"]}
                                                   if a["source_file"] != b["source_file"] else {})}
              for c, a, b in kept if a["source_sha256"] != b["source_sha256"] or a["source_file"] != b["source_file"]]
    split = [{"conversation_id": c, "from": a.get("split"), "to": b.get("split")}
             for c, a, b in kept if a.get("split") != b.get("split")]
    excluded = [{"conversation_id": c, "from": a.get("excluded"), "to": b.get("excluded")}
                for c, a, b in kept if a.get("excluded") != b.get("excluded")]
    changed = {e["conversation_id"] for e in (*source, *split, *excluded)}
    return {"added": added, "removed": removed, "source_changed": source, "split_changed": split,
            "exclusion_changed": excluded,
            "counts": {"from": len(old), "to": len(new), "added": len(added), "removed": len(removed),
                       "source_changed": len(source), "split_changed": len(split),
                       "exclusion_changed": len(excluded), "unchanged": len(kept) - len(changed)}}


def _changed_keys(a: Any, b: Any) -> dict[str, dict[str, Any]]:
    a = a if isinstance(a, Mapping) else {}
    b = b if isinstance(b, Mapping) else {}
    return {k: {"from": a.get(k), "to": b.get(k)} for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _tokens(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fmt in EXPORT_FORMATS:
        a, b = _get(old, "tokens", fmt), _get(new, "tokens", fmt)
        entry: dict[str, Any] = {k: moved(_get(a, k), _get(b, k)) for k in TOKEN_FIGURES}
        for dist in ("total_tokens", "trainable_tokens"):
            entry[dist] = {k: moved(_get(a, dist, k), _get(b, dist, k)) for k in DISTRIBUTION_FIGURES}
        out[fmt] = entry
    return out


def _splits(a: Any, b: Any) -> dict[str, Any]:
    return {
        "conversations": {s: moved(_get(a, "conversations", s), _get(b, "conversations", s)) for s in SPLITS},
        "lines": {f: {s: moved(_get(a, "lines", f, s), _get(b, "lines", f, s)) for s in SPLITS}
                  for f in EXPORT_FORMATS},
        "trainable_tokens": {f: {s: moved(_get(a, "trainable_tokens", f, s), _get(b, "trainable_tokens", f, s))
                                 for s in SPLITS} for f in EXPORT_FORMATS},
        "largest_stratum_count_deviation": moved(_get(a, "largest_stratum_count_deviation"),
                                                 _get(b, "largest_stratum_count_deviation")),
    }


def _coverage(a: Any, b: Any) -> dict[str, Any]:
    """Cells whose count changed; `filled` went from 0 to some, `emptied` from some to 0 (a cell that a
    version does not list counts 0: the table spans the keys that version's members have). Unknown
    (a version without coverage): no cell is claimed to have moved."""
    empty = {side: None if d is None else len(_get(d, "empty_cells") or []) for side, d in (("a", a), ("b", b))}
    if a is None or b is None:
        return {"changed_cells": [], "filled": [], "emptied": [], "empty_cells": moved(empty["a"], empty["b"])}
    cells_a = _get(a, "cells") if isinstance(_get(a, "cells"), Mapping) else {}
    cells_b = _get(b, "cells") if isinstance(_get(b, "cells"), Mapping) else {}
    changed = [{"cell": c, **moved(cells_a.get(c, 0), cells_b.get(c, 0))}
               for c in sorted(set(cells_a) | set(cells_b)) if cells_a.get(c, 0) != cells_b.get(c, 0)]
    return {"changed_cells": changed,
            "filled": [e["cell"] for e in changed if not e["from"]],
            "emptied": [e["cell"] for e in changed if not e["to"]],
            "empty_cells": moved(empty["a"], empty["b"])}


def version_diff(old: Mapping[str, Any], new: Mapping[str, Any], *, old_label: str = "the first version",
                 new_label: str = "the second version") -> dict[str, Any]:
    """The diff from manifest `old` to manifest `new` (either order of version numbers)."""
    members_old, members_new = members_of(old, old_label), members_of(new, new_label)
    data_old, data_new = _get(old, "dataset"), _get(new, "dataset")
    notes = [f"{label} was published before dataset quality existed: its splits, duplicates and coverage are "
             "unknown (regenerate the file to have them)" for label, d in ((old_label, data_old), (new_label, data_new))
             if d is None]
    warn_a = set(_get(data_old, "warnings") or [])
    warn_b = set(_get(data_new, "warnings") or [])
    exclusion_reasons = sorted(set(_get(old, "exclusions") or {}) | set(_get(new, "exclusions") or {}))
    return {
        "from_version": _get(old, "file", "version"), "to_version": _get(new, "file", "version"),
        "conversations": _conversations(members_old, members_new),
        "policy_changed": _changed_keys(_get(old, "policy"), _get(new, "policy")),
        "model_changed": _changed_keys(_get(old, "model"), _get(new, "model")),
        "tokens": _tokens(old, new),
        "exclusions": {r: {"count": moved(_get(old, "exclusions", r, "count"), _get(new, "exclusions", r, "count")),
                           "trainable_tokens": moved(_get(old, "exclusions", r, "trainable_tokens"),
                                                     _get(new, "exclusions", r, "trainable_tokens"))}
                       for r in exclusion_reasons},
        "changes": {k: moved(_get(old, "changes", k), _get(new, "changes", k))
                    for k in sorted(set(_get(old, "changes") or {}) | set(_get(new, "changes") or {}))},
        "conversation_exclusions": {
            r: moved(_get(data_old, "exclusions", "by_reason", r), _get(data_new, "exclusions", "by_reason", r))
            for r in sorted(set(_get(data_old, "exclusions", "by_reason") or {})
                            | set(_get(data_new, "exclusions", "by_reason") or {}))},
        "splits": _splits(_get(data_old, "splits"), _get(data_new, "splits")),
        "duplicates": {k: moved(_get(data_old, "duplicates", k), _get(data_new, "duplicates", k))
                       for k in DUPLICATE_FIGURES},
        "coverage": _coverage(_get(data_old, "coverage"), _get(data_new, "coverage")),
        "warnings": {"added": sorted(warn_b - warn_a), "resolved": sorted(warn_a - warn_b)},
        "notes": notes,
    }
