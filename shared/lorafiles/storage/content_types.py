"""The one mapping from an artifact's file name to the content type it is uploaded with.

Every adapter that records a content type (S3, Supabase Storage) takes it from here, and the
`training-files` bucket (migrations/20261202000400_training_files_bucket.sql) allows exactly
`ALLOWED_MIME_TYPES`: a new kind of artifact needs its extension here and in that list
(tests/supabase/test_storage_bucket.py checks both agree).
"""
from __future__ import annotations

from pathlib import PurePosixPath

__all__ = ["ALLOWED_MIME_TYPES", "ARTIFACT_NAMES", "BY_EXTENSION", "content_type_for", "resolve_content_type"]

BY_EXTENSION: dict[str, str] = {
    ".json": "application/json",     # training.json (v4), fragments, manifest.json, report.json, dataset_info.json
    ".jsonl": "application/jsonl",   # training.jsonl (v4), fragments, openai/trl/axolotl/sharegpt.jsonl
    ".yml": "application/yaml",      # axolotl.yml
    ".yaml": "application/yaml",
    ".md": "text/markdown",          # README.md (dataset card)
}

# What a published version folder holds (docs/EXPORTS.md), for tests and docs.
ARTIFACT_NAMES = ("training.json", "training.jsonl", "openai.jsonl", "trl.jsonl", "axolotl.jsonl", "axolotl.yml",
                  "sharegpt.jsonl", "dataset_info.json", "report.json", "manifest.json", "README.md")

ALLOWED_MIME_TYPES: tuple[str, ...] = tuple(sorted(set(BY_EXTENSION.values())))


def content_type_for(key: str) -> str | None:
    """The content type of an object named `key` (by its extension), None if unknown."""
    return BY_EXTENSION.get(PurePosixPath(key).suffix.lower())


def resolve_content_type(key: str, given: str | None = None) -> str:
    """The content type to upload `key` with. A known extension always gets its mapped type (a
    caller passing another one is a bug, raised here rather than by the bucket's MIME check in
    production); an unknown one gets `given`, else application/octet-stream."""
    mapped = content_type_for(key)
    if mapped is None:
        return given or "application/octet-stream"
    if given is not None and given.split(";")[0].strip().lower() != mapped:
        raise ValueError(f"{key}: content type {given!r} differs from {mapped!r} "
                         "(lorafiles.storage.content_types maps file names to content types)")
    return mapped
