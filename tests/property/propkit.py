"""Helpers of the property suite (a module of its own: `conftest` is not importable by name)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.service import TrainingFileService

OWNER = "33333333-3333-4333-8333-333333333333"
IMPORTER = "44444444-4444-4444-8444-444444444444"


class Env:
    def __init__(self, service: TrainingFileService, machine: LocalStateMachine, tmp: Path, file_id: str,
                 pool: list[str]) -> None:
        self.service, self.machine, self.tmp, self.file_id = service, machine, tmp, file_id
        self.pool = pool  # conversations whose enriched file the examples overwrite, one per example

    def take_conversation(self) -> str:
        if not self.pool:
            self.pool.extend(_import(self.service, self.tmp, OWNER, 20, "pool-more"))
        return self.pool.pop()


def _import(service: TrainingFileService, tmp: Path, owner: str, count: int, prefix: str) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))
    for i in range(count):
        (folder / f"{i}.json").write_bytes(dumps_enriched(generate_conversation(f"{prefix}-{folder.name}-{i}",
                                                                                turns=2)))
    result = service.importing.import_files(owner, sorted(folder.glob("*.json")))
    assert not result["refused"], result["refused"]
    return [r["conversation_id"] for r in result["imported"]]
