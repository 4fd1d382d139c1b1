"""Trainer-ready exports (openai, trl, axolotl, sharegpt) of enriched conversations.

Pure domain code implementing docs/EXPORTS.md: no I/O; token counts and chat templates come
from a `lorafiles.ports.ChatModel`. Modules by concern: `policy` (TrainingPolicy, format
names), `dialogue` (turn structure), `fixes` (text fixes and scans), `checks` (pre-flight),
`length` (length policy), `formats` (line shapes), `build` (one conversation),
`aggregate` (version-wide figures), `trainers` (Axolotl / LLaMA-Factory config, format notes).
"""
from .aggregate import PERCENTILE_METHOD, ExportAccumulator, nearest_rank
from .build import (
    BUILDER_VERSION,
    CHANGE_KINDS,
    EXCLUSION_REASONS,
    MemberExports,
    build_member_exports,
)
from .checks import CHECK_NAMES, OPENAI_CHECKS, WELL_KNOWN_CONTROL_STRINGS
from .formats import view_of
from .policy import EXPORT_FILES, EXPORT_FORMATS, TrainingPolicy
from .trainers import axolotl_datasets_yaml, format_notes, llamafactory_dataset_info

__all__ = [
    "BUILDER_VERSION", "CHANGE_KINDS", "CHECK_NAMES", "EXCLUSION_REASONS", "EXPORT_FILES", "EXPORT_FORMATS",
    "OPENAI_CHECKS", "PERCENTILE_METHOD", "WELL_KNOWN_CONTROL_STRINGS", "ExportAccumulator", "MemberExports",
    "TrainingPolicy", "axolotl_datasets_yaml", "build_member_exports", "format_notes",
    "llamafactory_dataset_info", "nearest_rank", "view_of",
]
