"""Fixtures of the CLI tests: a migrated database shared by a module (DATABASE_URL for the CLI)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from lorafiles.db.connect import url_with_database


@pytest.fixture(scope="module")
def module_db_url(pg_admin_url: str, pg_template: str) -> Iterator[str]:
    name = f"cli_{uuid.uuid4().hex}"
    with psycopg.connect(pg_admin_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(pg_template)))
    yield url_with_database(pg_admin_url, name)
    with psycopg.connect(pg_admin_url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
