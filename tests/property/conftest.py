"""One environment per module for the property suite: a migrated database, a storage directory, the
production state machine in moto with the real handlers, and a training file to add to."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from lorafiles.config import Settings
from lorafiles.db.connect import Database
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.runtime import use_service
from lorafiles.service import TrainingFileService

from propkit import OWNER, Env, _import


@pytest.fixture(scope="module")
def env(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    logging.getLogger("moto").setLevel(logging.CRITICAL)  # every refused file is a failed task in moto's log
    tmp = tmp_path_factory.mktemp("property")
    settings = Settings(home=tmp / "home", storage="local", storage_root=tmp / "storage", batch_size=10,
                        map_concurrency=2)
    with LocalStateMachine(retry_scale=0.01) as machine:
        service = TrainingFileService(Database(module_db_url, reuse=True), settings.store(), settings, machine)
        use_service(service)
        try:
            base = _import(service, tmp, OWNER, 2, "base")
            job = service.jobs.start_job(OWNER, kind="create", conversation_ids=base, name="Property target")
            machine.wait(job["execution_arn"], timeout=120)
            job = service.reading.get_job(OWNER, str(job["id"]))
            assert job["status"] == "succeeded", job["error"]
            yield Env(service, machine, tmp, str(job["file_id"]), _import(service, tmp, OWNER, 30, "pool"))
        finally:
            use_service(None)
            service.db.close()
