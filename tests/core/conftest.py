"""Fixtures of the core tests (see core_harness.py for the wiring)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core_harness import Harness, harness


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    """A fresh database and storage for one test."""
    with harness(db_url, tmp_path) as hh:
        yield hh


@pytest.fixture(scope="module")
def module_harness(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with harness(module_db_url, tmp_path_factory.mktemp("core")) as hh:
        yield hh

