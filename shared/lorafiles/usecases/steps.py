"""The pipeline steps the state machine runs (validate -> create file -> append batches -> generate,
or compensate). Each is idempotent: it can be re-run after a crash at any point and gives the
fault-free result."""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import psycopg

from ..cleanup import leftover_objects, scratch_dir
from ..db.repository import Repository
from ..domain.bounds import cap_error, clip, invalid_message, unstorable_columns
from ..domain.enriched import parse_enriched
from ..domain.problems import ConversationReport
from ..domain.render import FileHeader, MemberMeta, render_fragments, write_training_json, write_training_jsonl
from ..domain.summary import ConversationStats, SummaryAccumulator, conversation_stats
from ..errors import (ConversationsInvalid, InvalidRequest, JobStateError, LorafilesError, NameTaken, NotFound,
                      SelectionBlocked, TransientError)
from ..ports import ObjectNotFound
from ..storage import get_many, put_many
from .common import (FORMATS, INPUT_BUCKET, OUTPUT_BUCKET, UseCase, artifact_key, blocked_message,
                     selection_problems, source_file_of)


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out, self.sha, self.size = out, hashlib.sha256(), 0

    def write(self, data: bytes) -> None:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)


class PipelineSteps(UseCase):
    def validate(self, job_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = self._open_job(repo, job_id, step="validate")
            ids = list(job["requested_ids"])
            problems = selection_problems(repo, str(job["owner_id"]), ids, kind=job["kind"],
                                           file_id=str(job["file_id"]) if job["file_id"] else None,
                                           name=job["file_name"])
        if problems:
            raise SelectionBlocked(blocked_message(problems), details=problems)
        return {"job_id": job_id, "conversations": len(ids)}

    def create_file(self, job_id: str) -> dict[str, Any]:
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
                "batches": list(range(job["total_batches"])),  # numbers: the Map input stays small
                "max_concurrency": max(1, self.settings.map_concurrency)}

    def append_batch(self, job_id: str, batch_index: int) -> dict[str, Any]:
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
            parsed = parse_enriched(blob, source=f"{INPUT_BUCKET}/{path}", conversation_id=cid,
                                    limits=self.settings.enriched_limits)
            if not parsed.ok:
                reports.append(parsed.report)
                continue
            item = self._stage_item(job, file_id, batch_index * size + offset, row, blob, parsed)
            for column, why in unstorable_columns(item):  # a last guard before anything is written
                parsed.report.error("unstorable_text", f"the value staged as {column} {why}", column)
            if parsed.report.ok:
                items.append(item)
            else:
                reports.append(parsed.report)
        if reports:
            raise ConversationsInvalid(invalid_message(reports), details=[r.model_dump() for r in reports])
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

    def generate(self, job_id: str) -> dict[str, Any]:
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
        with scratch_dir() as tmp:
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
            deleted = f is not None and job["kind"] == "create" and f["current_version"] == 0
            garbage += leftover_objects(self.store, OUTPUT_BUCKET, repo, job, f, file_deleted=deleted)
            if deleted:
                repo.update_job(job_id, file_id=None)
                repo.delete_file(file_id)
            recorded = job["error"] or cap_error(error_from_state_machine(error))
            repo.update_job(job_id, status="failed", step="compensated", error=recorded,
                            finished_at=datetime.now(timezone.utc))
        for key in dict.fromkeys(garbage):
            self.store.delete(OUTPUT_BUCKET, key)
        # a task result: the code and message only (the details are on the job row)
        return {"job_id": job_id, "compensated": True,
                "error": {"code": recorded["code"], "message": clip(recorded["message"] or "", 500)}}

    def record_failure(self, job_id: str, exc: LorafilesError) -> None:
        """Keep a step's domain error (with its per-conversation details) on the job. The first error
        is the cause; a later one (an in-flight batch finding its job already failed) is not."""
        with self.db.connection() as conn:
            Repository(conn).record_first_error(job_id, cap_error(exc.as_dict()))  # bounded, storable

    def _open_job(self, repo: Repository, job_id: str, *, step: str) -> dict[str, Any]:
        job = repo.job(job_id, lock=True)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        if job["status"] in ("succeeded", "failed"):
            raise JobStateError(f"job {job_id} already {job['status']}")
        return repo.update_job(job_id, status="running", step=step,
                               started_at=job["started_at"] or datetime.now(timezone.utc))


def error_from_state_machine(error: dict[str, Any] | None) -> dict[str, Any]:
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
    return {"code": clip(str(name), 200), "message": clip(str(message), 2_000), "details": None}
