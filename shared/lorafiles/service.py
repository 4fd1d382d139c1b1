"""The application service: every use case of lorafiles, over two ports (database, object store)
and a job starter. Lambda handlers, the CLI, the HTTP API and the event triggers all call this.

Pipeline steps (validate -> create file -> append batches -> generate -> or compensate) are
idempotent: each can be re-run after a crash at any point and gives the fault-free result.
"""
from __future__ import annotations

import hashlib
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Protocol, Sequence

import psycopg

from .config import Settings
from .db.connect import Database
from .db.repository import Repository
from .domain.enriched import parse_enriched
from .domain.problems import ConversationReport
from .domain.render import FileHeader, MemberMeta, render_fragments, write_training_json, write_training_jsonl
from .domain.rules import check_file_name, check_selection, normalize_name
from .domain.summary import ConversationStats, SummaryAccumulator, conversation_stats
from .errors import (ConversationsInvalid, FileBusy, InvalidRequest, JobStateError, LorafilesError, NameTaken,
                     NotFound, SelectionBlocked, TransientError)
from .ports import ObjectNotFound, ObjectStore
from .storage import get_many, put_many

INPUT_BUCKET = "conversation-files"
OUTPUT_BUCKET = "training-files"
FORMATS = {"json": "training.json", "jsonl": "training.jsonl"}


class JobStarter(Protocol):
    """Starts the state machine for a job. Same name twice starts one execution."""

    def start(self, execution_name: str, payload: dict[str, Any]) -> str: ...


def artifact_key(owner_id: str, file_id: str, version: int, fmt: str) -> str:
    return f"{owner_id}/{file_id}/v{version}/{FORMATS[fmt]}"


def execution_name(job: dict[str, Any]) -> str:
    return f"lorafiles-{job['kind']}-{job['id']}"


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)


class TrainingFileService:
    def __init__(self, db: Database, store: ObjectStore, settings: Settings | None = None,
                 starter: JobStarter | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.db, self.store, self.settings, self.starter = db, store, settings or Settings(), starter
        # A job's timestamps come from the clock when it is registered and are reused by every
        # retry, so re-running any step renders byte-identical artifacts.
        self.clock = clock or (lambda: datetime.now(timezone.utc))

    # ------------------------------------------------------------------ selection
    def validate_selection(self, owner_id: str, conversation_ids: Sequence[str], *, file_id: str | None = None,
                           name: str | None = None) -> dict[str, Any]:
        """Every problem of a selection against a target (an existing file, or a new name)."""
        with self.db.connection() as conn:
            problems = _selection_problems(Repository(conn), owner_id, list(conversation_ids),
                                           kind="add" if file_id is not None else "create",
                                           file_id=file_id, name=name)
        return {"ok": not problems, "conversations": len(conversation_ids), "problems": problems}

    # ------------------------------------------------------------------ starting jobs
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
                raise SelectionBlocked(_blocked_message(report["problems"]), details=report["problems"])
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
        paths = {m["conversation_id"]: _path_of(m["source_file"]) for m in members}
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
        batch = max(1, self.settings.batch_size)
        job = {"owner_id": owner_id, "file_id": file_id, "kind": kind, "file_name": name, "description": description,
               "requested_ids": ids, "batch_size": batch, "total_batches": (len(ids) + batch - 1) // batch,
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

    # ------------------------------------------------------------------ pipeline steps
    def step_validate(self, job_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = self._open_job(repo, job_id, step="validate")
            ids = list(job["requested_ids"])
            problems = _selection_problems(repo, str(job["owner_id"]), ids, kind=job["kind"],
                                           file_id=str(job["file_id"]) if job["file_id"] else None,
                                           name=job["file_name"])
        if problems:
            raise SelectionBlocked(_blocked_message(problems), details=problems)
        return {"job_id": job_id, "conversations": len(ids)}

    def step_create_file(self, job_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = self._open_job(repo, job_id, step="create")
            owner = str(job["owner_id"])
            if job["kind"] == "create" and job["file_id"] is None:
                try:
                    with conn.transaction():
                        f = repo.insert_file(owner, job["file_name"], job["description"], self.settings.target_model,
                                             created_at=job["created_at"])
                except psycopg.errors.UniqueViolation as exc:
                    raise NameTaken(f"you already have a training file named {job['file_name']!r}") from exc
                job = repo.update_job(job_id, file_id=f["id"], base_version=0)
            elif job["base_version"] is None:
                f = repo.file(str(job["file_id"]), owner, lock=True)
                job = repo.update_job(job_id, base_version=f["current_version"])
        return {"job_id": job_id, "file_id": str(job["file_id"]),
                "batches": [{"job_id": job_id, "batch_index": i} for i in range(job["total_batches"])],
                "max_concurrency": max(1, self.settings.map_concurrency)}

    def step_append_batch(self, job_id: str, batch_index: int) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = self._open_job(repo, job_id, step="append")
            ids = list(job["requested_ids"])
            size = job["batch_size"]
            if not 0 <= batch_index < job["total_batches"]:
                raise InvalidRequest(f"batch {batch_index} does not exist (job has {job['total_batches']})")
            batch = ids[batch_index * size:(batch_index + 1) * size]
            rows = repo.conversations_for_owner(str(job["owner_id"]), batch)
        missing = [c for c in batch if c not in rows]
        if missing:
            raise ConversationsInvalid(f"conversations no longer available: {', '.join(missing)}",
                                       details=[{"conversation_id": c, "code": "not_found",
                                                 "message": "no such conversation"} for c in missing])
        file_id = str(job["file_id"])
        blobs = get_many(self.store, INPUT_BUCKET, [rows[c]["enriched_file_path"] for c in batch],
                         max_workers=self.settings.read_concurrency)
        reports: list[ConversationReport] = []
        items: list[dict[str, Any]] = []
        for offset, cid in enumerate(batch):
            row = rows[cid]
            path = row["enriched_file_path"]
            blob = blobs[path]
            if isinstance(blob, ObjectNotFound):
                report = ConversationReport(conversation_id=cid, source=f"{INPUT_BUCKET}/{path}")
                report.error("file_missing", f"enriched file {INPUT_BUCKET}/{path} is missing from storage")
                reports.append(report)
                continue
            if isinstance(blob, Exception):
                raise TransientError(f"reading {INPUT_BUCKET}/{path} for {cid} failed: {blob}")
            parsed = parse_enriched(blob, source=f"{INPUT_BUCKET}/{path}", conversation_id=cid)
            if not parsed.ok:
                reports.append(parsed.report)
                continue
            items.append(self._stage_item(job, file_id, batch_index * size + offset, row, blob, parsed))
        if reports:
            bad = ", ".join(f"{r.conversation_id} ({'; '.join(e.message for e in r.errors)})" for r in reports)
            raise ConversationsInvalid(f"{len(reports)} conversation(s) cannot be used: {bad}",
                                       details=[r.model_dump() for r in reports])
        # fragments first: the database never points at an object that is not there
        put_many(self.store, OUTPUT_BUCKET, {k: v for i in items for k, v in
                                             ((i["json_fragment_key"], i.pop("_json")),
                                              (i["jsonl_fragment_key"], i.pop("_jsonl")))},
                 max_workers=self.settings.read_concurrency)
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = repo.job(job_id, lock=True)
            if job["status"] != "running":
                # The job failed meanwhile (another batch failed and compensation ran while this
                # invocation was in flight): stage nothing and take back what this one wrote.
                keep = repo.referenced_fragment_keys(file_id)
                orphans = [k for i in items for k in (i["json_fragment_key"], i["jsonl_fragment_key"]) if k not in keep]
            else:
                orphans = []
                repo.upsert_items(items)
                repo.mark_batch_done(job_id, batch_index)
        for key in orphans:
            self.store.delete(OUTPUT_BUCKET, key)
        if orphans:
            raise JobStateError(f"job {job_id} is {job['status']}; batch {batch_index} was not staged")
        return {"job_id": job_id, "batch_index": batch_index, "staged": len(items)}

    def _stage_item(self, job: dict[str, Any], file_id: str, position: int, row: dict[str, Any], blob: bytes,
                    parsed) -> dict[str, Any]:
        cid = row["conversation_id"]
        scaffolding = parsed.scaffolding(row)
        stats = conversation_stats(parsed, scaffolding)
        created = parsed.dataset_metadata.get("created_date") or (row["created_at"].date().isoformat()
                                                                  if row.get("created_at") else None)
        source = source_file_of(row["enriched_file_path"])
        meta = MemberMeta(conversation_id=cid, source_file=source, created_date=created,
                          batch_id=str(row["batch_id"]) if row.get("batch_id") else None,
                          total_turns=stats.pairs, quality_tier=stats.quality_tier, scaffolding=scaffolding)
        json_fragment, jsonl_fragment = render_fragments(parsed, meta)
        base = f"{job['owner_id']}/{file_id}/fragments/{cid}"
        return {
            "job_id": str(job["id"]), "conversation_id": cid, "owner_id": str(job["owner_id"]), "position": position,
            "conversation_pk": row["conversation_pk"], "batch_id": row.get("batch_id"), "source_file": source,
            "source_sha256": hashlib.sha256(blob).hexdigest(),
            "json_fragment_key": f"{base}/{hashlib.sha256(json_fragment).hexdigest()[:20]}.json",
            "jsonl_fragment_key": f"{base}/{hashlib.sha256(jsonl_fragment).hexdigest()[:20]}.jsonl",
            "json_fragment_size": len(json_fragment), "jsonl_fragment_size": len(jsonl_fragment),
            **stats.as_dict(), "warnings": [w.model_dump() for w in parsed.report.warnings],
            "vertical": parsed.dataset_metadata.get("vertical"), "consultant_profile": parsed.consultant_profile,
            "_json": json_fragment, "_jsonl": jsonl_fragment,
        }

    def step_generate(self, job_id: str) -> dict[str, Any]:
        """Render the next version from member fragments and publish it atomically."""
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = repo.job(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job["status"] == "succeeded":
                return {"job_id": job_id, "file_id": str(job["file_id"]), "version": job["published_version"]}
            job = self._open_job(repo, job_id, step="generate")
            missing = sorted(set(range(job["total_batches"])) - set(job["completed_batches"]))
            if missing:
                raise JobStateError(f"job {job_id}: batches {missing} are not staged yet")
            file_id, owner = str(job["file_id"]), str(job["owner_id"])
            f = repo.file(file_id)
            first = repo.first_item(job_id) or {}
        version = job["base_version"] + 1
        acc = SummaryAccumulator()
        with self.db.connection() as conn:
            acc.extend(ConversationStats.from_row(e) for e in Repository(conn).version_entries(file_id, job_id))
        if acc.conversations == 0:
            raise JobStateError(f"job {job_id}: the new version would hold no conversation")
        header = FileHeader(
            file_name=f["name"], file_version=version, created_date=_iso(f["created_at"]),
            last_updated=_iso(job["created_at"]), target_model=f["target_model"],
            vertical=f["vertical"] or first.get("vertical"), total_conversations=acc.conversations,
            total_training_pairs=acc.training_pairs, total_turns=acc.pairs, quality_summary=acc.quality_summary(),
            scaffolding_distribution=acc.scaffolding_distribution(),
            consultant_profile=f["consultant_profile"] or first.get("consultant_profile") or {},
        )
        keys = {fmt: artifact_key(owner, file_id, version, fmt) for fmt in FORMATS}
        written: dict[str, _HashingWriter] = {}
        with tempfile.TemporaryDirectory(prefix="lorafiles-") as tmp:
            for fmt in FORMATS:
                path = Path(tmp) / FORMATS[fmt]
                with open(path, "wb") as raw:
                    out = _HashingWriter(raw)
                    fragments = self._fragments(file_id, job_id, f"{fmt}_fragment_key")
                    if fmt == "json":
                        write_training_json(out, header, fragments)
                    else:
                        write_training_jsonl(out, f["name"], acc.training_pairs, fragments)
                written[fmt] = out
                self.store.put_file(OUTPUT_BUCKET, keys[fmt], path,
                                    content_type="application/json" if fmt == "json" else "application/jsonl")
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, lock=True)
            if repo.job(job_id, lock=True)["status"] != "running":  # e.g. reaped while this ran
                raise JobStateError(f"job {job_id} is no longer running; version {version} not published")
            if f["current_version"] >= version:
                done = repo.version(file_id, version)
                if done is None or str(done["job_id"]) != job_id:
                    raise JobStateError(f"training file {file_id} moved to version {f['current_version']} meanwhile")
            else:
                figures = {"conversation_count": acc.conversations, "training_pair_count": acc.training_pairs,
                           "total_turns": acc.pairs, "quality_summary": acc.quality_summary(),
                           "scaffolding_distribution": acc.scaffolding_distribution()}
                artifacts = {"json_path": keys["json"], "jsonl_path": keys["jsonl"],
                             "json_size": written["json"].size, "jsonl_size": written["jsonl"].size,
                             "json_sha256": written["json"].sha.hexdigest(),
                             "jsonl_sha256": written["jsonl"].sha.hexdigest()}
                # Only a regeneration clears staleness, and only of changes it may have read.
                if job["kind"] == "regenerate":
                    still_stale = f["stale_since"] is not None and f["stale_since"] > job["created_at"]
                else:
                    still_stale = f["status"] == "stale"
                repo.publish(
                    file_row=f, job=job,
                    version_row={"file_id": file_id, "version": version, "job_id": job_id, "created_at": job["created_at"],
                                 **artifacts, **figures},
                    file_fields={**figures, **artifacts, "current_version": version,
                                 "status": "stale" if still_stale else "ready",
                                 "stale_since": f["stale_since"] if still_stale else None,
                                 "vertical": header.vertical, "consultant_profile": header.consultant_profile},
                )
            repo.update_job(job_id, status="succeeded", step="published", published_version=version,
                            finished_at=datetime.now(timezone.utc), error=None)
        return {"job_id": job_id, "file_id": file_id, "version": version}

    def _fragments(self, file_id: str, job_id: str, column: str, window: int = 16) -> Iterator[bytes]:
        """Fragment bytes in version order, read ahead with a bounded window (constant memory)."""
        with self.db.connection() as conn, ThreadPoolExecutor(max_workers=min(window, 8)) as pool:
            pending: list[Any] = []
            for entry in Repository(conn).version_entries(file_id, job_id):
                pending.append(pool.submit(self.store.get, OUTPUT_BUCKET, entry[column]))
                if len(pending) >= window:
                    yield pending.pop(0).result()
            for fut in pending:
                yield fut.result()

    def compensate(self, job_id: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """Undo a failed job's staged work and record why it failed. The file is left as it was."""
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = repo.job(job_id, lock=True)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            if job["status"] == "succeeded" or job["step"] == "compensated":
                return {"job_id": job_id, "compensated": False, "status": job["status"]}
            file_id = str(job["file_id"]) if job["file_id"] else None
            garbage = repo.item_fragment_keys(job_id)
            repo.delete_items(job_id)
            f = repo.file(file_id, lock=True) if file_id else None
            if f is not None:
                garbage = [k for k in garbage if k not in repo.referenced_fragment_keys(file_id)]
                if job["base_version"] is not None and f["current_version"] <= job["base_version"]:
                    garbage += [artifact_key(str(job["owner_id"]), file_id, job["base_version"] + 1, fmt)
                                for fmt in FORMATS]
            if f is not None and job["kind"] == "create" and f["current_version"] == 0:
                repo.update_job(job_id, file_id=None)
                repo.delete_file(file_id)
            recorded = job["error"] or _error_from_state_machine(error)
            repo.update_job(job_id, status="failed", step="compensated", error=recorded,
                            finished_at=datetime.now(timezone.utc))
        for key in garbage:
            self.store.delete(OUTPUT_BUCKET, key)
        return {"job_id": job_id, "compensated": True, "error": recorded}

    def record_failure(self, job_id: str, exc: LorafilesError) -> None:
        """Keep a step's domain error (with its per-conversation details) on the job. The first error
        is the cause; a later one (an in-flight batch finding its job already failed) is not."""
        with self.db.connection() as conn:
            Repository(conn).record_first_error(job_id, exc.as_dict())

    def _open_job(self, repo: Repository, job_id: str, *, step: str) -> dict[str, Any]:
        job = repo.job(job_id, lock=True)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if job["status"] in ("succeeded", "failed"):
            raise JobStateError(f"job {job_id} already {job['status']}")
        return repo.update_job(job_id, status="running", step=step,
                               started_at=job["started_at"] or datetime.now(timezone.utc))

    # ------------------------------------------------------------------ reading
    def list_files(self, owner_id: str) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return Repository(conn).files(owner_id)

    def show_file(self, owner_id: str, file_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            jobs = repo.jobs_for_file(file_id, limit=1)
            return {"file": f, "members": repo.members(file_id), "versions": repo.versions(file_id),
                    "current_job": jobs[0] if jobs else None}

    def get_job(self, owner_id: str, job_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            job = Repository(conn).job(job_id, owner_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def artifact(self, owner_id: str, file_id: str, fmt: str, version: int | None = None) -> dict[str, Any]:
        """Where one artifact of a version lives (the owner's only)."""
        if fmt not in FORMATS:
            raise InvalidRequest(f"format must be json or jsonl, not {fmt!r}")
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            number = version if version is not None else f["current_version"]
            v = repo.version(file_id, number) if number else None
        if v is None:
            raise NotFound(f"training file {file_id} has no version {number}")
        return {"bucket": OUTPUT_BUCKET, "key": v[f"{fmt}_path"], "version": number, "filename": f"{f['name']}.{fmt}",
                "size": v[f"{fmt}_size"], "sha256": v[f"{fmt}_sha256"]}

    def presign_download(self, owner_id: str, file_id: str, fmt: str, version: int | None = None,
                         expires_in: int | None = None) -> dict[str, Any]:
        a = self.artifact(owner_id, file_id, fmt, version)
        ttl = expires_in or self.settings.signed_url_ttl
        url = self.store.signed_url(a["bucket"], a["key"], ttl, download_name=a["filename"])
        return {"url": url, "expires_in": ttl, "filename": a["filename"], "version": a["version"],
                "size": a["size"], "sha256": a["sha256"]}

    def download(self, owner_id: str, file_id: str, fmt: str, out: Path, version: int | None = None) -> dict[str, Any]:
        a = self.artifact(owner_id, file_id, fmt, version)
        with self.store.open_stream(a["bucket"], a["key"]) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        return {**a, "path": str(out)}

    # ------------------------------------------------------------------ local import
    def import_files(self, owner_id: str, paths: Iterable[Path], batch_id: str | None = None) -> dict[str, Any]:
        """Register enriched JSON files as completed conversations of `owner_id` (local use, demos)."""
        if batch_id is not None:
            try:
                batch_id = str(uuid.UUID(batch_id))
            except ValueError:
                raise InvalidRequest(f"batch id {batch_id!r} is not a UUID") from None
        imported, refused = [], []
        for path in paths:
            blob = Path(path).read_bytes()
            parsed = parse_enriched(blob, source=str(path))
            if not parsed.ok:
                refused.append({"file": str(path), "problems": [e.model_dump() for e in parsed.report.errors]})
                continue
            cid = parsed.report.conversation_id
            key = f"{owner_id}/{cid}/enriched.json"
            sc = parsed.scaffolding()
            stats = conversation_stats(parsed, sc)
            with self.db.connection() as conn:  # the object is written inside the row's transaction
                repo = Repository(conn)
                mine = repo.upsert_conversation({
                    "conversation_id": cid, "created_by": owner_id, "enriched_file_path": key,
                    "enriched_file_size": len(blob), "persona_key": sc.persona_key,
                    "emotional_arc_key": sc.emotional_arc_key, "topic_key": sc.training_topic_key,
                    "turn_count": stats.pairs,
                    "quality_score": round(stats.quality_score, 1) if stats.quality_score is not None else None,
                })
                if not mine:
                    refused.append({"file": str(path), "problems": [{
                        "code": "conversation_taken", "field": "dataset_metadata.dataset_name", "severity": "error",
                        "message": f"conversation {cid} belongs to another user"}]})
                    continue
                self.store.put(INPUT_BUCKET, key, blob)
                if batch_id:
                    repo.ensure_batch_link(batch_id, cid, owner_id)
            imported.append({"conversation_id": cid, "file": str(path), "warnings": len(parsed.report.warnings)})
        return {"imported": imported, "refused": refused}

    def owned_conversation_ids(self, owner_id: str) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute("select conversation_id from conversations where created_by = %s "
                                "order by created_at, conversation_id", (owner_id,)).fetchall()
        return [r["conversation_id"] for r in rows]


def _selection_problems(repo: Repository, owner_id: str, ids: list[str], *, kind: str, file_id: str | None,
                        name: str | None) -> list[dict[str, Any]]:
    """The one selection check, before a job starts and again inside it. `create` checks the name
    (a file of that name that this job created itself is not a clash); `add` blocks members;
    `regenerate` takes members only and may exceed the per-request limit."""
    problems: list[dict[str, Any]] = []
    in_file: set[str] = set()
    if kind == "create":
        problems += [p.model_dump(include={"code", "message", "field"}) for p in check_file_name(name)]
        other = repo.file_by_name(owner_id, normalize_name(name)) if not problems else None
        if other is not None and str(other["id"]) != file_id:
            problems.append({"code": "name_taken", "field": "name",
                             "message": f"you already have a training file named {normalize_name(name)!r}"})
    else:
        if file_id is None or repo.file(file_id, owner_id) is None:
            raise NotFound(f"training file {file_id} not found")
        members = repo.member_ids(file_id, ids)
        if kind == "add":
            in_file = members
        else:
            problems += [{"conversation_id": c, "code": "not_in_file", "message": "not a member of this file"}
                         for c in ids if c not in members]
    found = repo.conversations_for_owner(owner_id, ids)
    problems += [p.as_dict() for p in check_selection(ids, found, in_file)
                 if not (kind == "regenerate" and p.code == "too_many")]
    return problems


def source_file_of(enriched_file_path: str) -> str:
    """The storage path a member was read from, as recorded in the Full JSON's `source_file`."""
    return f"{INPUT_BUCKET}/{enriched_file_path}"


def _path_of(source_file: str) -> str:
    return source_file.split("/", 1)[1] if source_file.startswith(INPUT_BUCKET + "/") else source_file


def _blocked_message(problems: list[dict[str, Any]]) -> str:
    parts = [f"{p.get('conversation_id') or p.get('field') or 'request'}: {p['code']} ({p['message']})" for p in problems]
    return f"selection blocked, {len(problems)} problem(s): " + "; ".join(parts)


def _error_from_state_machine(error: dict[str, Any] | None) -> dict[str, Any]:
    """Turn a Step Functions `$.error` ({Error, Cause}) into our error shape."""
    import orjson

    if not error:
        return {"code": "failed", "message": "the job failed", "details": None}
    name, cause = error.get("Error", "Error"), error.get("Cause") or ""
    try:
        decoded = orjson.loads(cause)
        message = decoded.get("errorMessage") or cause
    except (orjson.JSONDecodeError, AttributeError):
        message = cause or name
    return {"code": name, "message": message, "details": None}
