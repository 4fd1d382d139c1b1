"""Fixtures of the Supabase-like project tests (see supakit)."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from supakit import MIGRATOR, RESTRICTED, create_supabase_like, drop_database


@dataclass(frozen=True)
class Project:
    name: str
    url: str  # the migration role's URL (what `supabase db push --db-url` gets)
    role: str


def _project(pg_admin_url: str, role: str) -> Iterator[Project]:
    name = f"supa_{uuid.uuid4().hex[:12]}"
    url = create_supabase_like(pg_admin_url, name, migrator=role)
    yield Project(name, url, role)
    drop_database(pg_admin_url, name)


@pytest.fixture
def supabase_project(pg_admin_url: str) -> Iterator[Project]:
    """A fresh database set up like the app's Supabase project; migrations not applied."""
    yield from _project(pg_admin_url, MIGRATOR)


@pytest.fixture
def restricted_project(pg_admin_url: str) -> Iterator[Project]:
    """The same, with a migration role that does not own storage.objects (see the storage test)."""
    yield from _project(pg_admin_url, RESTRICTED)
