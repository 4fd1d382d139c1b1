"""The application's use cases over two ports (database, object store) and a job starter, wired
once: Lambda handlers, the CLI, the HTTP API and the event triggers all go through this object.

Each use case lives in its own module under `lorafiles.usecases`; this only builds them over one
shared `Context`:

* `service.jobs`      — validate a selection, start create/add/regenerate jobs (`usecases/jobs.py`)
* `service.steps`     — the state machine's steps and compensation (`usecases/steps.py`)
* `service.reading`   — files, jobs, versions, downloads (`usecases/reading.py`)
* `service.importing` — local import of enriched files (`usecases/importing.py`)
* `service.diffing`   — what changed between two versions of a file (`usecases/diffing.py`)
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

from .config import Settings
from .db.connect import Database
from .ports import ObjectStore
from .usecases.common import (FORMATS, INPUT_BUCKET, OUTPUT_BUCKET, Context, JobStarter, UseCase, artifact_key,
                              execution_name, source_file_of)
from .usecases.diffing import VersionDiffing
from .usecases.importing import LocalImport
from .usecases.jobs import JobStarting
from .usecases.reading import Reading
from .usecases.steps import PipelineSteps

__all__ = ["TrainingFileService", "FORMATS", "INPUT_BUCKET", "OUTPUT_BUCKET", "JobStarter", "artifact_key",
           "execution_name", "source_file_of"]


class TrainingFileService(UseCase):
    """The use cases wired over one `Context`; its ports (db, store, settings, starter) are read
    from that context like every use case's (`UseCase`)."""

    def __init__(self, db: Database, store: ObjectStore, settings: Settings | None = None,
                 starter: JobStarter | None = None, clock: Callable[[], datetime] | None = None) -> None:
        super().__init__(Context(db=db, store=store, settings=settings or Settings(), starter=starter,
                                 clock=clock or (lambda: datetime.now(timezone.utc))))
        self.jobs = JobStarting(self.ctx)
        self.steps = PipelineSteps(self.ctx)
        self.reading = Reading(self.ctx)
        self.importing = LocalImport(self.ctx)
        self.diffing = VersionDiffing(self.ctx)

    # the local server swaps the store for a signing one: every use case sees the new store
    @UseCase.store.setter
    def store(self, store: ObjectStore) -> None:
        self.ctx.store = store
