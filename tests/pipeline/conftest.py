"""A service wired like production, locally: real PostgreSQL, a real storage directory, the
real state machine (infra/) in moto with the real handlers, and a frozen clock so that two
runs of the same job render byte-identical artifacts."""
from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from lorafiles.config import Settings
from lorafiles.db.connect import Database
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.errors import TransientError
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.runtime import use_service
from lorafiles.service import TrainingFileService
from pipekit import FROZEN, OWNER



def _in_pipeline() -> bool:
    """Writes made by the state machine's tasks (moto's worker threads), not by the test itself."""
    return threading.current_thread() is not threading.main_thread()


class FlakyDatabase(Database):
    """Crashes (TransientError) right after the N-th connection block of a task committed."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commits, self.fail_at = 0, None

    @contextlib.contextmanager
    def connection(self):
        with super().connection() as conn:
            yield conn
        if not _in_pipeline():
            return
        self.commits += 1
        if self.commits == self.fail_at:
            raise TransientError(f"injected crash after database write {self.commits}")


class FlakyStore:
    """Wraps an ObjectStore; crashes right after the N-th completed write."""

    def __init__(self, inner) -> None:
        self.inner, self.writes, self.fail_at = inner, 0, None
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def _wrote(self) -> None:
        if not _in_pipeline():
            return
        with self._lock:
            self.writes += 1
            crash = self.writes == self.fail_at
        if crash:
            raise TransientError(f"injected crash after storage write {self.writes}")

    def put(self, *a, **kw):
        self.inner.put(*a, **kw)
        self._wrote()

    def put_file(self, *a, **kw):
        self.inner.put_file(*a, **kw)
        self._wrote()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path, storage="local", storage_root=tmp_path / "storage", batch_size=10,
                    map_concurrency=4)


@pytest.fixture
def machine() -> Iterator[LocalStateMachine]:
    with LocalStateMachine(retry_scale=0.01) as m:
        yield m


@pytest.fixture
def service(db_url: str, settings: Settings, machine: LocalStateMachine) -> Iterator[TrainingFileService]:
    svc = TrainingFileService(FlakyDatabase(db_url), FlakyStore(settings.store()), settings, machine,
                              clock=lambda: FROZEN)
    use_service(svc)
    yield svc
    use_service(None)


@pytest.fixture
def make_conversations(service: TrainingFileService, tmp_path: Path) -> Callable[..., list[str]]:
    counter = iter(range(10_000))

    def make(count: int, owner: str = OWNER, batch_id: str | None = None, **kw) -> list[str]:
        folder = tmp_path / f"input-{next(counter)}"
        folder.mkdir()
        for i in range(count):
            doc = generate_conversation(f"{folder.name}-{i}", **kw)
            (folder / f"{i}.json").write_bytes(dumps_enriched(doc))
        result = service.importing.import_files(owner, sorted(folder.glob("*.json")), batch_id=batch_id)
        assert not result["refused"], result["refused"]
        return [r["conversation_id"] for r in result["imported"]]

    return make
