"""Starting jobs: validate a selection, register a create/add/regenerate job (idempotency key, one
active job per file) and start its state machine execution."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any, Iterable, Sequence

import psycopg

from ..db.repository import Repository
from ..domain.bounds import plan_batches
from ..domain.rules import normalize_name
from ..errors import FileBusy, InvalidRequest, JobStateError, NotFound, SelectionBlocked
from ..storage import get_many
from .common import INPUT_BUCKET, UseCase, blocked_message, execution_name, path_of, selection_problems


class JobStarting(UseCase):
    def validate_selection(self, owner_id: str, conversation_ids: Sequence[str], *, file_id: str | None = None,
                           name: str | None = None) -> dict[str, Any]:
        """Every problem of a selection against a target (an existing file, or a new name)."""
        with self.db.connection() as conn:
            problems = selection_problems(Repository(conn), owner_id, list(conversation_ids),
                                           kind="add" if file_id is not None else "create",
                                           file_id=file_id, name=name)
        return {"ok": not problems, "conversations": len(conversation_ids), "problems": problems}

    def start_job(self, owner_id: str, *, kind: str, conversation_ids: Sequence[str], name: str | None = None,
                  description: str | None = None, file_id: str | None = None,
                  idempotency_key: str | None = None) -> dict[str, Any]:
        """Validate, register and start a create/add job. A repeated idempotency key returns the same job."""
        if kind not in ("create", "add"):
            raise InvalidRequest(f"unknown job kind {kind!r}")
        key = idempotency_key or str(uuid.uuid4())
        with self.db.connection() as conn:
            row = Repository(conn).job_by_key(owner_id, key)
        if row is None:
            report = self.validate_selection(owner_id, conversation_ids, file_id=file_id if kind == "add" else None,
                                             name=name if kind == "create" else None)
            if not report["ok"]:
                raise SelectionBlocked(blocked_message(report["problems"]), details=report["problems"])
            row = self._insert_job(owner_id, kind=kind, ids=list(conversation_ids), file_id=file_id,
                                   name=normalize_name(name) if name else None, description=description, key=key)
        return self._ensure_started(row)

    def start_regenerate(self, owner_id: str, file_id: str, *, idempotency_key: str | None = None,
                         only_changed: bool = False) -> dict[str, Any]:
        """Rebuild a file from its current members as a new version (job kind `regenerate`)."""
        with self.db.connection() as conn:
            repo = Repository(conn)
            if repo.file(file_id, owner_id) is None:
                raise NotFound(f"training file {file_id} not found")
            members = repo.members(file_id)
        ids = [m["conversation_id"] for m in members]
        if only_changed:
            ids = self._changed_members(owner_id, members) or ids
        key = idempotency_key or str(uuid.uuid4())
        row = self._insert_job(owner_id, kind="regenerate", ids=ids, file_id=file_id, name=None, description=None,
                               key=key)
        return self._ensure_started(row)

    def _changed_members(self, owner_id: str, members: list[dict[str, Any]]) -> list[str]:
        """Members whose enriched file no longer matches the checksum recorded at inclusion."""
        paths = {m["conversation_id"]: path_of(m["source_file"]) for m in members}
        current = self.source_checksums(paths.values())
        return [m["conversation_id"] for m in members
                if isinstance(current[paths[m["conversation_id"]]], str)
                and current[paths[m["conversation_id"]]] != m["source_sha256"]]

    def source_checksums(self, paths: Iterable[str]) -> dict[str, str | Exception]:
        """sha256 of enriched files as stored now (the value recorded as a member's source_sha256);
        a failed read maps to its exception (ObjectNotFound for a missing file)."""
        blobs = get_many(self.store, INPUT_BUCKET, paths, max_workers=self.settings.read_concurrency)
        return {p: hashlib.sha256(b).hexdigest() if isinstance(b, bytes) else b for p, b in blobs.items()}

    def _insert_job(self, owner_id: str, *, kind: str, ids: list[str], file_id: str | None, name: str | None,
                    description: str | None, key: str) -> dict[str, Any]:
        batch, batches = plan_batches(len(ids), self.settings.batch_size)  # at most MAX_BATCHES Map iterations
        job = {"owner_id": owner_id, "file_id": file_id, "kind": kind, "file_name": name, "description": description,
               "requested_ids": ids, "batch_size": batch, "total_batches": batches,
               "idempotency_key": key, "created_at": self.clock()}
        try:
            with self.db.connection() as conn:
                row, _ = Repository(conn).insert_job(job)
        except psycopg.errors.UniqueViolation as exc:
            with self.db.connection() as conn:
                active = Repository(conn).active_job_for_file(file_id) if file_id else None
            busy = f" with job {active['id']} ({active['kind']}, {active['status']})" if active else ""
            raise FileBusy(f"training file {file_id} is busy{busy}; try again when it finishes",
                           details={"file_id": file_id, "job_id": str(active["id"]) if active else None}) from exc
        return row

    def _ensure_started(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["execution_arn"] or job["status"] in ("succeeded", "failed"):
            return job
        if self.starter is None:
            raise JobStateError("no job starter configured")
        name = execution_name(job)
        arn = self.starter.start(name, {"job_id": str(job["id"])})
        with self.db.connection() as conn:
            return Repository(conn).update_job(str(job["id"]), execution_name=name, execution_arn=arn)
