"""Harness for the core tests: the service on real parts, wired like `cli.open_context`.

Real PostgreSQL (a copy of the migrated template), a local storage directory, and the
production state machine running in moto with the real handlers (`LocalStateMachine`), the
service registered with `use_service` so the handlers use it."""
from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from lorafiles.config import Settings
from lorafiles.db.connect import Database, connect
from lorafiles.domain.samples import dumps_enriched, generate_conversation
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.runtime import use_service
from lorafiles.service import INPUT_BUCKET, OUTPUT_BUCKET, TrainingFileService

OWNER = "0c0c0c0c-1111-4111-8111-000000000001"
OTHER = "0c0c0c0c-2222-4222-8222-000000000002"


@dataclass
class Harness:
    url: str
    root: Path
    service: TrainingFileService
    machine: LocalStateMachine
    work: Path
    _counter: Any = field(default_factory=lambda: iter(range(1_000_000)))

    @property
    def store(self):
        return self.service.store

    # --- data -----------------------------------------------------------------------
    def import_paths(self, paths: list[Path], owner: str = OWNER, batch_id: str | None = None) -> list[str]:
        result = self.service.importing.import_files(owner, paths, batch_id=batch_id)
        assert not result["refused"], result["refused"]
        return [r["conversation_id"] for r in result["imported"]]

    def generate(self, count: int, owner: str = OWNER, batch_id: str | None = None, **kw: Any) -> list[str]:
        folder = self.work / f"generated-{next(self._counter)}"
        folder.mkdir(parents=True)
        paths = []
        for i in range(count):
            doc = generate_conversation(f"{folder.name}-{i}-{uuid.uuid4()}", **kw)
            path = folder / f"{i:03d}.json"
            path.write_bytes(dumps_enriched(doc))
            paths.append(path)
        return self.import_paths(paths, owner=owner, batch_id=batch_id)

    # --- jobs -----------------------------------------------------------------------
    def run(self, owner: str = OWNER, **kw: Any) -> dict[str, Any]:
        """Start a job and wait for the execution; returns the job row."""
        job = self.service.jobs.start_job(owner, **kw)
        self.machine.wait(job["execution_arn"], timeout=300)
        return self.service.reading.get_job(owner, str(job["id"]))

    def create(self, ids: list[str], name: str | None = None, owner: str = OWNER) -> dict[str, Any]:
        job = self.run(owner, kind="create", conversation_ids=ids, name=name or f"file {uuid.uuid4()}")
        assert job["status"] == "succeeded", job["error"]
        return job

    def add(self, file_id: str, ids: list[str], owner: str = OWNER) -> dict[str, Any]:
        return self.run(owner, kind="add", conversation_ids=ids, file_id=file_id)

    def artifact_bytes(self, file_id: str, fmt: str, version: int | None = None, owner: str = OWNER) -> bytes:
        a = self.service.reading.artifact(owner, file_id, fmt, version)
        return self.store.get(a["bucket"], a["key"])

    def full_json(self, file_id: str, version: int | None = None) -> dict[str, Any]:
        return json.loads(self.artifact_bytes(file_id, "json", version))

    def jsonl_lines(self, file_id: str, version: int | None = None) -> list[dict[str, Any]]:
        data = self.artifact_bytes(file_id, "jsonl", version)
        assert data.endswith(b"\n")
        return [json.loads(line) for line in data[:-1].split(b"\n")]

    # --- observing ------------------------------------------------------------------
    @contextmanager
    def sql(self) -> Iterator[psycopg.Connection]:
        with connect(self.url) as conn:
            yield conn
            conn.commit()

    def table_counts(self) -> dict[str, int]:
        with self.sql() as conn:
            tables = [r["table_name"] for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = 'public' "
                "and (table_name like 'lora\\_%%' or table_name in ('conversations', 'batch_jobs', 'batch_items')) "
                "order by 1").fetchall()]
            assert "lora_training_files" in tables and "lora_training_jobs" in tables
            return {t: conn.execute(sql.SQL("select count(*) as n from {}").format(sql.Identifier(t))).fetchone()["n"]
                    for t in tables}

    def file_rows(self) -> list[dict[str, Any]]:
        with self.sql() as conn:
            return conn.execute("select * from lora_training_files order by id").fetchall()

    def storage_listing(self) -> dict[str, str]:
        """Every object under the storage root: relative path -> sha256."""
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                path = Path(dirpath) / name
                out[path.relative_to(self.root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out

    def input_key(self, conversation_id: str, owner: str = OWNER) -> str:
        with self.sql() as conn:
            return conn.execute("select enriched_file_path from conversations where conversation_id = %s and "
                                "created_by = %s", (conversation_id, owner)).fetchone()["enriched_file_path"]


@contextmanager
def harness(url: str, base: Path) -> Iterator[Harness]:
    settings = Settings(home=base, storage="local", storage_root=base / "storage", batch_size=10, map_concurrency=4)
    db = Database(url, reuse=True)
    with LocalStateMachine(retry_scale=0.01) as machine:
        service = TrainingFileService(db, settings.store(), settings, machine)
        use_service(service)
        try:
            yield Harness(url=url, root=base / "storage", service=service, machine=machine, work=base / "work")
        finally:
            use_service(None)
            db.close()


__all__ = ["Harness", "INPUT_BUCKET", "OUTPUT_BUCKET", "OTHER", "OWNER", "harness"]
