"""Starting jobs: validate a selection, register a create/add/regenerate job (idempotency key, one
active job per file) and start its state machine execution."""
from __future__ import annotations

import hashlib
import uuid
from typing import Any, Iterable, Mapping, Sequence

import psycopg
from pydantic import ValidationError

from ..db.repository import Repository
from ..domain.exports import TrainingPolicy
from ..domain.idempotency import canonical_request, fingerprint_of, request_differences
from ..domain.bounds import plan_batches
from ..domain.rules import normalize_name
from ..errors import FileBusy, IdempotencyKeyReused, InvalidRequest, JobStateError, NotFound, SelectionBlocked
from ..storage import get_many
from ..tokens import UnknownModel, canonical_model_id
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
                  idempotency_key: str | None = None, policy: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate, register and start a create/add job. A repeated idempotency key returns the same
        job for the same request, and is refused (IdempotencyKeyReused) for any other request.

        `policy` holds training-policy fields that override the file's policy (add) or the
        deployment's default (create); the job records the whole resolved policy."""
        if kind not in ("create", "add"):
            raise InvalidRequest(f"unknown job kind {kind!r}")
        # A create names a new file (name, description); an add names an existing one (file_id).
        # The other kind's fields are not part of the request: they are dropped here, once.
        if kind == "create":
            file_id = None
        elif file_id is None:
            raise InvalidRequest("an add names the training file it adds to (file_id)")
        else:
            name = description = None
        # What the job uses, as the request it answers (start_job's arguments, passed through):
        request = canonical_request(kind=kind, file_id=file_id, name=None if name is None else normalize_name(name),
                                    description=description, conversation_ids=list(conversation_ids),
                                    policy=dict(policy) if policy else None)
        key = idempotency_key or str(uuid.uuid4())
        with self.db.connection() as conn:
            row = Repository(conn).job_by_key(owner_id, key)
        if row is None:
            report = self.validate_selection(owner_id, conversation_ids, file_id=file_id, name=name)
            if not report["ok"]:
                raise SelectionBlocked(blocked_message(report["problems"]), details=report["problems"])
            resolved = self.resolve_policy(owner_id, file_id, policy)
            row = self._insert_job(owner_id, kind=kind, ids=list(conversation_ids), file_id=file_id,
                                   name=request["name"], description=description, key=key, request=request,
                                   policy=resolved)
        return self._ensure_started(self._same_request(row, key, request))

    def resolve_policy(self, owner_id: str, file_id: str | None,
                       overrides: Mapping[str, Any] | None) -> TrainingPolicy:
        """A request's policy fields laid over the file's policy (or the deployment default)."""
        if file_id is None:
            return self._policy_over(None, overrides)
        with self.db.connection() as conn:
            f = Repository(conn).file(file_id, owner_id)
        if f is None:
            raise NotFound(f"training file {file_id} not found")
        return self._policy_over(f, overrides)

    def _policy_over(self, f: Mapping[str, Any] | None, overrides: Mapping[str, Any] | None) -> TrainingPolicy:
        """`overrides` laid over the file row's policy (a file stored before policies holds `{}`:
        the default for its target model), or over the deployment default when there is no file."""
        overrides = dict(overrides or {})
        try:
            if f is None:
                return self.settings.default_policy(**overrides)
            base = (f["policy"] or self.settings.default_policy(target_model=f["target_model"]).model_dump(mode="json"))
            if "target_model" in overrides:
                overrides["target_model"] = canonical_model_id(str(overrides["target_model"]))
            return TrainingPolicy(**{**base, **overrides})
        except UnknownModel as exc:
            raise InvalidRequest(f"invalid training policy: policy.target_model: {exc}",
                                 details=[{"field": "policy.target_model", "code": "unknown_model",
                                           "message": str(exc)}]) from None
        except ValidationError as exc:
            details = [{"field": "policy." + ".".join(str(p) for p in e["loc"]), "code": "invalid_policy",
                        "message": e["msg"]} for e in exc.errors()]
            raise InvalidRequest("invalid training policy: " + "; ".join(f"{d['field']}: {d['message']}"
                                                                        for d in details), details=details) from None

    def start_regenerate(self, owner_id: str, file_id: str, *, idempotency_key: str | None = None,
                         only_changed: bool = False) -> dict[str, Any]:
        """Rebuild a file from its current members as a new version (job kind `regenerate`)."""
        with self.db.connection() as conn:  # the one ownership check: the policy comes from this row
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            members = repo.members(file_id)
        ids = [m["conversation_id"] for m in members]
        if only_changed:
            ids = self._changed_members(members) or ids
        key = idempotency_key or str(uuid.uuid4())
        request = canonical_request(kind="regenerate", file_id=file_id, only_changed=only_changed)
        row = self._insert_job(owner_id, kind="regenerate", ids=ids, file_id=file_id, name=None, description=None,
                               key=key, request=request, policy=self._policy_over(f, None))
        return self._ensure_started(self._same_request(row, key, request))

    def _changed_members(self, members: list[dict[str, Any]]) -> list[str]:
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
                    description: str | None, key: str, request: dict[str, Any],
                    policy: TrainingPolicy) -> dict[str, Any]:
        """The job of this key: inserted now, or the one a concurrent request with the key inserted.

        total_batches counts the requested conversations; create-file adds the members it must
        re-render (a changed policy) once it holds the file's lock."""
        batch, batches = plan_batches(len(ids), self.settings.batch_size)  # at most MAX_BATCHES Map iterations
        job = {"owner_id": owner_id, "file_id": file_id, "kind": kind, "file_name": name, "description": description,
               "requested_ids": ids, "batch_size": batch, "total_batches": batches,
               "idempotency_key": key, "created_at": self.clock(), "request": request,
               "request_fingerprint": fingerprint_of(request), "policy": policy.model_dump(mode="json")}
        try:
            with self.db.connection() as conn:
                row, _ = Repository(conn).insert_job(job)
        except psycopg.errors.UniqueViolation as exc:
            with self.db.connection() as conn:
                repo = Repository(conn)
                same_key = repo.job_by_key(owner_id, key)  # a concurrent request with this key won the race
                active = repo.active_job_for_file(file_id) if file_id and same_key is None else None
            if same_key is not None:
                return same_key
            busy = f" with job {active['id']} ({active['kind']}, {active['status']})" if active else ""
            raise FileBusy(f"training file {file_id} is busy{busy}; try again when it finishes",
                           details={"file_id": file_id, "job_id": str(active["id"]) if active else None}) from exc
        return row

    @staticmethod
    def _same_request(job: dict[str, Any], key: str, request: dict[str, Any]) -> dict[str, Any]:
        """`job` if it was registered for `request`; IdempotencyKeyReused naming what differs otherwise."""
        if job.get("request_fingerprint") == fingerprint_of(request):
            return job
        stored = job.get("request") or stored_request(job)
        differs = request_differences(stored, request)
        if not differs:
            return job
        raise IdempotencyKeyReused(
            f"the idempotency key {key!r} was already used for a different request (different "
            f"{', '.join(differs)}); use a new key for a new request",
            details={"idempotency_key": key, "differs": differs})

    def _ensure_started(self, job: dict[str, Any]) -> dict[str, Any]:
        if job["execution_arn"] or job["status"] in ("succeeded", "failed"):
            return job
        if self.starter is None:
            raise JobStateError("no job starter configured")
        name = execution_name(job)
        arn = self.starter.start(name, {"job_id": str(job["id"])})
        with self.db.connection() as conn:
            return Repository(conn).update_job(str(job["id"]), execution_name=name, execution_arn=arn)


def stored_request(job: dict[str, Any]) -> dict[str, Any]:
    """The request of a job registered before requests were stored (the migration backfills the
    same from these columns)."""
    kind = job["kind"]
    return canonical_request(kind=kind, file_id=None if kind == "create" else job["file_id"],
                             name=job["file_name"], description=job["description"],
                             conversation_ids=None if kind == "regenerate" else list(job["requested_ids"]),
                             only_changed=True if kind == "regenerate" else None)
