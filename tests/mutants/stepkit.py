"""Driving the pipeline steps by hand (no state machine): each step is called the way a Lambda
task would call it, so a test can stop, fail or interleave a job at any point."""
from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lorafiles.config import Settings
from lorafiles.db.connect import Database, connect
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.ports import ObjectStore
from lorafiles.service import OUTPUT_BUCKET, TrainingFileService

OWNER = "0d0d0d0d-1111-4111-8111-000000000001"
OTHER = "0d0d0d0d-2222-4222-8222-000000000002"  # another user


class Starter:
    """A job starter that records what it was asked to start (or fails when told to)."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.fail: Exception | None = None

    def start(self, execution_name: str, payload: dict[str, Any]) -> str:
        if self.fail is not None:
            raise self.fail
        self.started.append(execution_name)
        return f"arn:aws:states:local:000000000000:execution:lorafiles:{execution_name}"


class HookStore:
    """The local store with a hook run before each `put_file` (name of the artifact file)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.before_put_file: Callable[[str, str], None] | None = None

    def put_file(self, bucket: str, key: str, path: Any, content_type: str = "application/json") -> None:
        if self.before_put_file is not None:
            self.before_put_file(bucket, key)
        self.inner.put_file(bucket, key, path, content_type=content_type)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class InThread:
    """Run a step in a thread of its own and keep what it raised (a test asserts on `errors`)."""

    def __init__(self, step: Callable[..., Any], *args: Any) -> None:
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(step, *args))
        self.thread.start()

    def _run(self, step: Callable[..., Any], *args: Any) -> None:
        try:
            step(*args)
        except BaseException as exc:  # noqa: BLE001 - the test asserts on it
            self.errors.append(exc)

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def is_alive(self) -> bool:
        return self.thread.is_alive()


@dataclass
class Kit:
    url: str
    service: TrainingFileService
    store: HookStore
    starter: Starter
    work: Path
    _n: Any = field(default_factory=lambda: iter(range(1_000_000)))

    def conversations(self, count: int, **kw: Any) -> list[str]:
        folder = self.work / f"in-{next(self._n)}"
        folder.mkdir(parents=True)
        paths = []
        for i in range(count):
            path = folder / f"{i}.json"
            path.write_bytes(dumps_enriched(generate_conversation(f"{folder.name}-{i}-{uuid.uuid4()}", turns=4, **kw)))
            paths.append(path)
        result = self.service.importing.import_files(OWNER, paths)
        assert not result["refused"], result["refused"]
        return [r["conversation_id"] for r in result["imported"]]

    def start(self, **kw: Any) -> str:
        return str(self.service.jobs.start_job(OWNER, **kw)["id"])

    def stage(self, job_id: str) -> dict[str, Any]:
        """validate -> create-file -> every append-batch (what runs before generate)."""
        steps = self.service.steps
        steps.validate(job_id)
        out = steps.create_file(job_id)
        for batch in out["batches"]:  # batch numbers (the Map input stays small)
            steps.append_batch(job_id, batch)
        return out

    def run(self, job_id: str) -> dict[str, Any]:
        self.stage(job_id)
        return self.service.steps.generate(job_id)

    def create(self, ids: list[str], name: str | None = None) -> str:
        job_id = self.start(kind="create", conversation_ids=ids, name=name or f"file {uuid.uuid4()}")
        return self.run(job_id)["file_id"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self.service.reading.get_job(OWNER, job_id)

    def file(self, file_id: str) -> dict[str, Any] | None:
        with connect(self.url) as conn:
            return conn.execute("select * from lora_training_files where id = %s", (file_id,)).fetchone()

    def versions(self, file_id: str) -> list[int]:
        with connect(self.url) as conn:
            return [r["version"] for r in conn.execute(
                "select version from lora_training_file_versions where file_id = %s order by version", (file_id,))]

    def members(self, file_id: str) -> list[dict[str, Any]]:
        with connect(self.url) as conn:
            return conn.execute("select * from lora_training_file_members where file_id = %s order by position",
                                (file_id,)).fetchall()

    def outputs(self, prefix: str = "") -> set[str]:
        return set(self.store.list(OUTPUT_BUCKET, f"{OWNER}/{prefix}"))


def make_kit(db_url: str, tmp_path: Path, **settings: Any) -> Kit:
    s = Settings(home=tmp_path / "home", storage="local", storage_root=tmp_path / "storage",
                 **{"batch_size": 2, **settings})
    store = HookStore(s.store())
    starter = Starter()
    service = TrainingFileService(Database(db_url), store, s, starter)
    return Kit(url=db_url, service=service, store=store, starter=starter, work=tmp_path / "work")


FRAGMENT_KEYS = ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key")
