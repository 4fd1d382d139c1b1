"""Where the shared fixture files are (`../shared/fixtures` beside the repository, or
$LORAFILES_FIXTURES), and how a test that needs them skips when they are absent: always with
REASON, so that tests/conftest.py can count those skips and say so at the end of the run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(os.environ.get("LORAFILES_FIXTURES") or Path(__file__).resolve().parents[2] / "shared" / "fixtures")
REASON = f"shared fixtures not found at {ROOT}"


def available(folder: str = "") -> bool:
    return (ROOT / folder).is_dir()


def names(folder: str) -> list[str]:
    """File names of one fixture folder (empty when absent)."""
    directory = ROOT / folder
    return sorted(p.name for p in directory.glob("*.json")) if directory.is_dir() else []


def params(folder: str, make=lambda name: name) -> list:
    """Parameters over one fixture folder's files, or, when the folder is absent, one parameter
    that is skipped with REASON (instead of an empty set, which pytest reports as if it were not a
    fixture test at all)."""
    found = names(folder)
    if found:
        return [make(n) for n in found]
    return [pytest.param(*_placeholder(make, folder), marks=pytest.mark.skip(reason=REASON), id=f"{folder}-absent")]


def _placeholder(make, folder: str) -> tuple:
    value = make(f"<{folder} absent>")
    return value if isinstance(value, tuple) else (value,)
