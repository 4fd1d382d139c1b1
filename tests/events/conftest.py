"""Fixtures for the event/schedule trigger tests: real PostgreSQL (tests/conftest.py), a real
local storage directory, and the production state machine run by moto with our handlers
(LocalStateMachine) as the service's job starter, wired like `lorafiles.cli.open_context`."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eventkit import Faults, World

from lorafiles.config import Settings
from lorafiles.db.connect import Database
from lorafiles.maintenance import Maintenance
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.runtime import use_service
from lorafiles.service import TrainingFileService



@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def machine(faults: Faults) -> Iterator[LocalStateMachine]:
    with LocalStateMachine(retry_scale=0.01, fault=faults) as m:
        yield m


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", storage="local", storage_root=tmp_path / "storage", batch_size=2,
                    map_concurrency=2)


@pytest.fixture
def service(db: Database, settings: Settings, machine: LocalStateMachine) -> Iterator[TrainingFileService]:
    svc = TrainingFileService(db, settings.store(), settings, machine)
    use_service(svc)
    yield svc
    use_service(None)


@pytest.fixture
def maintenance(service: TrainingFileService) -> Maintenance:
    return Maintenance(service)


@pytest.fixture
def world(service: TrainingFileService, machine: LocalStateMachine, tmp_path: Path) -> World:
    (tmp_path / "input").mkdir()
    return World(service, machine, tmp_path / "input")
