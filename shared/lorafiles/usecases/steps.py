"""The pipeline steps the state machine runs (validate -> create file -> append batches -> generate,
or compensate). Each is idempotent: it can be re-run after a crash at any point and gives the
fault-free result."""
from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

import orjson

from ..cleanup import leftover_objects, scratch_dir
from ..config import Settings
from ..db.repository import FRAGMENT_COLUMNS, ITEM_COLUMNS, Repository
from ..domain import bundle
from ..domain.bounds import cap_error, clip, invalid_message, plan_batches, unstorable_columns
from ..domain.enriched import parse_enriched
from ..domain.exports import ExportAccumulator, MemberExports, TrainingPolicy, build_member_exports
from ..domain.problems import ConversationReport
from ..domain.render import ID_PREFIX, FileHeader, MemberMeta, jsonl_id_suffixes, render_fragments
from ..domain.summary import ConversationStats, SummaryAccumulator, conversation_stats
from ..errors import (ConversationsInvalid, InvalidRequest, JobStateError, LorafilesError, NameTaken, NotFound,
                      SelectionBlocked, TransientError)
from ..ports import ChatModel, ObjectNotFound
from ..storage import get_many, put_files, put_many
from ..tokens import get_model
from .common import (ARTIFACTS, INPUT_BUCKET, OUTPUT_BUCKET, UseCase, artifact_key, blocked_message,
                     selection_problems, source_file_of)
from .publish import VersionWriter, stream_members


def _iso(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def fragment_base(owner_id: str, file_id: str, conversation_id: str) -> str:
    return f"{owner_id}/{file_id}/fragments/{conversation_id}"


def job_policy(job: dict[str, Any], file_row: dict[str, Any] | None, settings: Settings) -> TrainingPolicy:
    """The training policy a job builds with: its own (every job registered since exports exist has
    one), else its file's, else the deployment default for the file's target model."""
    if job.get("policy"):
        return TrainingPolicy(**job["policy"])
    if file_row is not None and file_row.get("policy"):
        return TrainingPolicy(**file_row["policy"])
    return settings.default_policy(target_model=file_row["target_model"]) if file_row else settings.default_policy()


def _with_exports(item: dict[str, Any], base: str, exports: MemberExports, policy: TrainingPolicy) -> dict[str, Any]:
    packed, layout = bundle.pack(exports)
    key = f"{base}/{hashlib.sha256(packed).hexdigest()[:20]}.exports"
    item.update({"exports_fragment_key": key, "exports_fragment_size": len(packed), "exports_layout": layout,
                 "export_stats": exports.stats, "policy_digest": policy.digest()})
    item["_objects"][key] = packed
    return item


def work_list(job: dict[str, Any]) -> list[str]:
    """A job's conversations in batch order: the requested ones, then the members it re-renders."""
    return [*job["requested_ids"], *job["rerender_ids"]]


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
                policy = job_policy(job, None, self.settings)
                try:
                    with conn.transaction():
                        f = repo.insert_file(owner, job["file_name"], job["description"], policy.target_model,
                                             created_at=job["created_at"], policy=policy.model_dump(mode="json"))
                except psycopg.errors.UniqueViolation as exc:
                    raise NameTaken(f"you already have a training file named {job['file_name']!r}") from exc
                job = repo.update_job(job_id, file_id=f["id"], base_version=0)
            elif job["base_version"] is None:
                # Read without a file lock of its own: only this job can change the file's version
                # or members (one active job per file, lora_training_jobs_one_active_per_file), a
                # retried create-file queues on the job row that _open_job updated, and a staleness
                # mark does not change what is read here. (The job update below still takes the
                # foreign key's share lock on the file row, so it waits for a mark in progress.)
                f = repo.file(str(job["file_id"]), owner)
                # Members rendered under another policy (a changed policy, or a version built
                # before exports existed) are re-rendered by this job's batches, after its own.
                digest = job_policy(job, f, self.settings).digest()
                requested = set(job["requested_ids"])
                rerender = [c for c in repo.members_rendered_otherwise(str(f["id"]), digest) if c not in requested]
                size, batches = plan_batches(len(job["requested_ids"]) + len(rerender), job["batch_size"])
                job = repo.update_job(job_id, base_version=f["current_version"], rerender_ids=rerender,
                                      batch_size=size, total_batches=batches)
        return {"job_id": job_id, "file_id": str(job["file_id"]),
                "batches": list(range(job["total_batches"])),  # numbers: the Map input stays small
                "max_concurrency": max(1, self.settings.map_concurrency)}

    def append_batch(self, job_id: str, batch_index: int) -> dict[str, Any]:
        """Read, check and render one batch of the job's conversations, then stage them.

        The job's work list is its requested conversations followed by the members it re-renders
        (an add whose training policy differs from the file's: their exports are rebuilt from
        their stored v4 fragments, so their content stays that of the current version)."""
        # No lock is held across a batch's work: the job's plan (work list, batch size) is fixed
        # by create-file before the Map starts, so it is read without a lock. Only the first
        # batch to arrive marks the step, in a transaction of its own. The one locked moment is
        # staging below (items + completion, one short transaction).
        with self.db.connection() as conn:
            job = self._job_for_batch(Repository(conn), job_id)
        with self.db.connection() as conn:
            repo = Repository(conn)
            work = work_list(job)
            size = job["batch_size"]
            if not 0 <= batch_index < job["total_batches"]:
                raise InvalidRequest(f"batch {batch_index} does not exist (job has {job['total_batches']})")
            batch = work[batch_index * size:(batch_index + 1) * size]
            rerender = set(job["rerender_ids"]) & set(batch)
            fresh = [c for c in batch if c not in rerender]
            rows = repo.conversations_for_owner(str(job["owner_id"]), fresh)
            suffixes = self._jsonl_id_suffixes(repo, str(job["file_id"]), list(job["requested_ids"]), fresh)
            members = repo.members_by_ids(str(job["file_id"]), rerender) if rerender else {}
        missing = [c for c in fresh if c not in rows] + [c for c in rerender if c not in members]
        if missing:
            raise ConversationsInvalid(f"conversations no longer available: {', '.join(missing)}",
                                       details=[{"conversation_id": c, "code": "not_found",
                                                 "message": "no such conversation"} for c in missing])
        file_id = str(job["file_id"])
        policy = job_policy(job, None, self.settings)
        model = get_model(policy.target_model)
        # the whole batch in one round trip (it is held in memory at once anyway); a batch of a
        # huge job (plan_batches grows the size) is still bounded by the shared pool's threads
        reads = max(self.settings.read_concurrency, len(batch))
        blobs = get_many(self.store, INPUT_BUCKET, [rows[c]["enriched_file_path"] for c in fresh], max_workers=reads)
        stored = get_many(self.store, OUTPUT_BUCKET, [members[c]["json_fragment_key"] for c in rerender],
                          max_workers=reads)
        reports: list[ConversationReport] = []
        items: list[dict[str, Any]] = []
        for offset, cid in enumerate(batch):
            if cid in rerender:
                item = self._rerender_item(job, members[cid], stored[members[cid]["json_fragment_key"]], policy,
                                           model, reports)
            else:
                item = self._fresh_item(job, file_id, batch_index * size + offset, rows[cid],
                                        blobs[rows[cid]["enriched_file_path"]], policy, model, reports,
                                        suffixes[cid])
            if item is not None:
                items.append(item)
        if reports:
            raise ConversationsInvalid(invalid_message(reports), details=[r.model_dump() for r in reports])
        # fragments first: the database never points at an object that is not there
        objects = {k: v for i in items for k, v in i.pop("_objects").items()}
        put_many(self.store, OUTPUT_BUCKET, objects, max_workers=max(self.settings.read_concurrency, len(objects)))
        with self.db.connection() as conn:
            repo = Repository(conn)
            job = repo.job(job_id, lock=True)
            if job["status"] != "running":
                # The job failed meanwhile (another batch failed and compensation ran while this
                # invocation was in flight): stage nothing and take back what this one wrote.
                keep = repo.referenced_fragment_keys(file_id)
                orphans = [i[k] for i in items for k in FRAGMENT_COLUMNS if i[k] not in keep]
            else:
                orphans = []
                repo.upsert_items(items)
                repo.mark_batch_done(job_id, batch_index)
        for key in orphans:
            self.store.delete(OUTPUT_BUCKET, key)
        if orphans:
            raise JobStateError(f"job {job_id} is {job['status']}; batch {batch_index} was not staged")
        return {"job_id": job_id, "batch_index": batch_index, "staged": len(items)}

    @staticmethod
    def _jsonl_id_suffixes(repo: Repository, file_id: str, requested: list[str], batch: list[str]) -> dict[str, str]:
        """The JSONL id suffix of each conversation of the batch, from the conversations before it
        in the next version's order (members by position, then the job's new ones in request
        order) that share its first 8 characters (domain.render.jsonl_id_suffixes)."""
        prefixes = sorted({c[:ID_PREFIX] for c in batch})
        order = repo.member_ids_with_prefixes(file_id, ID_PREFIX, prefixes) if prefixes else []
        members = set(order)
        order += [c for c in requested if c[:ID_PREFIX] in prefixes and c not in members]
        return jsonl_id_suffixes(order)

    def _fresh_item(self, job: dict[str, Any], file_id: str, position: int, row: dict[str, Any],
                    blob: bytes | Exception, policy: TrainingPolicy, model: ChatModel,
                    reports: list[ConversationReport], id_suffix: str) -> dict[str, Any] | None:
        """A conversation joining the file: parse its enriched file, render its v4 fragments and exports."""
        cid, path = row["conversation_id"], row["enriched_file_path"]
        if isinstance(blob, ObjectNotFound):
            report = ConversationReport(conversation_id=cid, source=f"{INPUT_BUCKET}/{path}")
            report.error("file_missing", f"enriched file {INPUT_BUCKET}/{path} is missing from storage")
            reports.append(report)
            return None
        if isinstance(blob, Exception):
            raise TransientError(f"reading {INPUT_BUCKET}/{path} for {cid} failed: {blob}")
        parsed = parse_enriched(blob, source=f"{INPUT_BUCKET}/{path}", conversation_id=cid,
                                limits=self.settings.enriched_limits)
        if not parsed.ok:
            reports.append(parsed.report)
            return None
        exports = build_member_exports(cid, parsed.pairs, policy, model)
        if not exports.ok:
            parsed.report.errors.extend(exports.errors)
            reports.append(parsed.report)
            return None
        scaffolding = parsed.scaffolding(row)
        stats = conversation_stats(parsed, scaffolding)
        created = parsed.dataset_metadata.get("created_date") or (row["created_at"].date().isoformat()
                                                                  if row.get("created_at") else None)
        source = source_file_of(path)
        meta = MemberMeta(conversation_id=cid, source_file=source, created_date=created,
                          batch_id=str(row["batch_id"]) if row.get("batch_id") else None,
                          total_turns=stats.pairs, quality_tier=stats.quality_tier, scaffolding=scaffolding)
        json_fragment, jsonl_fragment = render_fragments(parsed, meta, id_suffix)
        base = fragment_base(str(job["owner_id"]), file_id, cid)
        item = {
            "job_id": str(job["id"]), "conversation_id": cid, "owner_id": str(job["owner_id"]), "position": position,
            "conversation_pk": row["conversation_pk"], "batch_id": row.get("batch_id"), "source_file": source,
            "source_sha256": hashlib.sha256(blob).hexdigest(),
            "json_fragment_key": f"{base}/{hashlib.sha256(json_fragment).hexdigest()[:20]}.json",
            "jsonl_fragment_key": f"{base}/{hashlib.sha256(jsonl_fragment).hexdigest()[:20]}.jsonl",
            "json_fragment_size": len(json_fragment), "jsonl_fragment_size": len(jsonl_fragment),
            **stats.as_dict(), "warnings": [w.model_dump() for w in parsed.report.warnings],
            "vertical": parsed.dataset_metadata.get("vertical"), "consultant_profile": parsed.consultant_profile,
        }
        item["_objects"] = {item["json_fragment_key"]: json_fragment, item["jsonl_fragment_key"]: jsonl_fragment}
        for column, why in unstorable_columns(item):  # a last guard before anything is written
            parsed.report.error("unstorable_text", f"the value staged as {column} {why}", column)
        if not parsed.report.ok:
            reports.append(parsed.report)
            return None
        return _with_exports(item, base, exports, policy)

    def _rerender_item(self, job: dict[str, Any], member: dict[str, Any], fragment: bytes | Exception,
                       policy: TrainingPolicy, model: ChatModel, reports: list[ConversationReport]) -> dict[str, Any] | None:
        """A member whose exports are rebuilt under a new policy, from its stored v4 fragment (its
        content, checksums and v4 fragments stay those of the current version)."""
        cid = member["conversation_id"]
        if isinstance(fragment, Exception):
            if isinstance(fragment, ObjectNotFound):
                raise JobStateError(f"member {cid}: its stored fragment {member['json_fragment_key']} is missing")
            raise TransientError(f"reading the stored fragment of member {cid} failed: {fragment}")
        pairs = orjson.loads(fragment)["training_pairs"]
        exports = build_member_exports(cid, pairs, policy, model)
        if not exports.ok:
            report = ConversationReport(conversation_id=cid, source=member["source_file"])
            report.errors.extend(exports.errors)
            reports.append(report)
            return None
        item = {k: member[k] for k in ITEM_COLUMNS}
        item.update({"job_id": str(job["id"]), "conversation_id": cid, "owner_id": str(job["owner_id"]),
                     "position": member["position"], "vertical": None, "consultant_profile": None, "_objects": {}})
        base = fragment_base(str(job["owner_id"]), str(job["file_id"]), cid)
        return _with_exports(item, base, exports, policy)

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
            planned = len(work_list(job))
            if (staged := repo.count_items(job_id)) != planned:  # every batch done, yet not every conversation
                raise JobStateError(f"job {job_id}: {staged} of its {planned} conversations are staged")
            file_id, owner = str(job["file_id"]), str(job["owner_id"])
            f = repo.file(file_id)
            first = repo.first_item(job_id) or {}
        version = job["base_version"] + 1
        policy = job_policy(job, f, self.settings)
        model = get_model(policy.target_model)
        acc, exports, warnings = SummaryAccumulator(), ExportAccumulator(), Counter()
        with self.db.connection() as conn:
            for e in Repository(conn).version_entries(file_id, job_id):
                if e["policy_digest"] != policy.digest():
                    raise JobStateError(f"job {job_id}: member {e['conversation_id']} was rendered under another "
                                        "training policy")
                acc.add(ConversationStats.from_row(e))
                exports.add(e["export_stats"])
                warnings.update(w["code"] for w in e["warnings"])
        if acc.conversations == 0:
            raise JobStateError(f"job {job_id}: the new version would hold no conversation")
        figures_x = exports.result()
        header = FileHeader(
            file_name=f["name"], file_version=version, created_date=_iso(f["created_at"]),
            last_updated=_iso(job["created_at"]), target_model=policy.target_model,
            vertical=f["vertical"] or first.get("vertical"), total_conversations=acc.conversations,
            total_training_pairs=acc.training_pairs, total_turns=acc.pairs, quality_summary=acc.quality_summary(),
            scaffolding_distribution=acc.scaffolding_distribution(),
            consultant_profile=f["consultant_profile"] or first.get("consultant_profile") or {},
        )
        with scratch_dir() as tmp:
            writer = VersionWriter(Path(tmp), file_id=file_id, version=version, header=header, policy=policy,
                                   model=model, export_figures=figures_x, source_warnings=warnings)
            with self.db.connection() as conn:
                for entry, json_fragment, jsonl_lines, bundle_bytes in stream_members(
                        self.store, Repository(conn).version_entries(file_id, job_id)):
                    writer.add(entry, json_fragment, jsonl_lines, bundle_bytes)
            written = writer.finish()
            for name, a in written.items():
                a["path"] = artifact_key(owner, file_id, version, name)
            # every artifact at once (each one its own round trip against S3), all finished before
            # anything below points the database at them
            put_files(self.store, OUTPUT_BUCKET, [(a["path"], Path(tmp) / a["file"], a["content_type"])
                                                  for a in written.values()],
                      max_workers=max(self.settings.read_concurrency, len(written)))
        # Durability lives here: the artifacts are fsynced as they are stored (put_file), and the
        # fragments the members point at (written unsynced by the batches) once, now, before the
        # database publishes the version. Object stores that are durable on PUT have no sync().
        sync = getattr(self.store, "sync", None)
        if callable(sync):
            sync()
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
                artifacts = {"json_path": written["json"]["path"], "jsonl_path": written["jsonl"]["path"],
                             "json_size": written["json"]["size"], "jsonl_size": written["jsonl"]["size"],
                             "json_sha256": written["json"]["sha256"], "jsonl_sha256": written["jsonl"]["sha256"],
                             "artifacts": written, "policy": policy.model_dump(mode="json"),
                             "export_summary": figures_x}
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
                                 "target_model": policy.target_model,
                                 "vertical": header.vertical, "consultant_profile": header.consultant_profile},
                )
            repo.update_job(job_id, status="succeeded", step="published", published_version=version,
                            finished_at=datetime.now(timezone.utc), error=None)
        return {"job_id": job_id, "file_id": file_id, "version": version}

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
                    garbage += [artifact_key(str(job["owner_id"]), file_id, job["base_version"] + 1, name)
                                for name in ARTIFACTS]
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

    def _job_for_batch(self, repo: Repository, job_id: str) -> dict[str, Any]:
        """The job as a batch reads it: unlocked when it is already running its batches (every
        batch but the first to arrive), else opened for the append step like any other step."""
        job = repo.job(job_id)
        if job is not None and job["status"] == "running" and job["step"] == "append" and job["started_at"] is not None:
            return job
        return self._open_job(repo, job_id, step="append")  # (which refuses a missing or ended job)

    def _open_job(self, repo: Repository, job_id: str, *, step: str) -> dict[str, Any]:
        """Mark the job running at `step`, in one guarded update (a job that ended is never reopened,
        whatever commits meanwhile); when nothing was updated, say why."""
        job = repo.open_job(job_id, step)
        if job is not None:
            return job
        job = repo.job(job_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        raise JobStateError(f"job {job_id} already {job['status']}")


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
