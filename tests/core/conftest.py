"""Fixtures of the core tests (see core_harness.py for the wiring)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from lorafiles.db.connect import url_with_database

from core_harness import Harness, harness


@pytest.fixture
def h(db_url: str, tmp_path: Path) -> Iterator[Harness]:
    """A fresh database and storage for one test."""
    with harness(db_url, tmp_path) as hh:
        yield hh


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    """A migrated database shared by one test module (for expensive setups)."""
    name = f"m_{uuid.uuid4().hex}"
    with psycopg.connect(pg_admin_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(pg_template)))
    yield url_with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def module_harness(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with harness(module_db_url, tmp_path_factory.mktemp("core")) as hh:
        yield hh

