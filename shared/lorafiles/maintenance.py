"""Event and schedule driven upkeep of training files (issue 5).

* `enrichment_completed`: a conversation was (re-)enriched. Files holding it as a member whose
  recorded checksum no longer matches the enriched file NOW in storage are marked stale. The
  decision reads the current object, never trusts the event's claim, so duplicates and
  out-of-order deliveries change nothing: the same inputs (database + storage) give the same
  answer however often and in whatever order events arrive.
* `regenerate_stale`: each stale file with no active job gets one `regenerate` job through the
  state machine (same job, same steps as create/add). The idempotency key derives from the
  file's `stale_since` and its members' latest `enriched_at` (plus an attempt number), so
  repeated schedule ticks start one job; a failed attempt is retried on later ticks up to
  MAX_REGENERATE_ATTEMPTS times, and a new enrichment of a member re-arms the file.
* `reap_stuck`: jobs whose execution is no longer running (Step Functions' DescribeExecution;
  locally: the process that ran it is gone) are compensated at once; jobs queued/running without
  progress past the timeout are stopped and compensated (staged items and their fragments
  removed, the file usable again). Then what crashed processes left behind is swept
  (`sweep_leftovers`: scratch directories, temp files of the local store).

Callers: functions/enrichment-webhook, functions/enrichment-events,
functions/scheduled-maintenance (via lorafiles.events) and the CLI (`regenerate`, `reap`).
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from . import cleanup

from .db.repository import ACTIVE_JOB, Repository
from .domain.rules import ELIGIBLE_STATUS
from .errors import FileBusy, LorafilesError, NotFound
from .observability import logger
from .ports import ObjectNotFound
from .service import TrainingFileService, source_file_of

MAX_REGENERATE_ATTEMPTS = 3
STALE_KEY_PREFIX = "regenerate-stale"
TIMED_OUT = "JobTimedOut"
EXECUTION_ENDED = "ExecutionEnded"


def execution_status_of(starter: Any):
    """How to ask whether a job's execution still runs: the starter's DescribeExecution (AWS) or
    moto (local runner); without a starter (`lorafiles reap`), whether the local process that ran
    it is alive."""
    from .pipeline.local import local_execution_status

    return getattr(starter, "execution_status", None) or local_execution_status


def stale_key_prefix(file_id: str, stale_since: datetime, last_enriched_at: datetime | None) -> str:
    """Idempotency-key prefix of the regenerations answering one staleness of one file, as of the
    latest enrichment among its members (a new enrichment re-arms a file whose attempts failed)."""
    def micros(ts: datetime | None) -> int:
        return int(ts.timestamp() * 1_000_000) if ts is not None else 0

    return f"{STALE_KEY_PREFIX}:{file_id}:{micros(stale_since)}:{micros(last_enriched_at)}:"


class Maintenance:
    def __init__(self, service: TrainingFileService) -> None:
        self.service = service
        self.db, self.store, self.settings = service.db, service.store, service.settings

    # ------------------------------------------------------------------ enrichment events
    def enrichment_completed(self, conversation_id: str, *, enriched_file_path: str | None = None,
                             sha256: str | None = None, event_id: str | None = None,
                             occurred_at: Any = None, source: str = "direct") -> dict[str, Any]:
        """React to a completed enrichment. Returns what was done (`action`) and which files.

        Idempotent and order-independent: compares each membership's recorded checksum with the
        checksum of the enriched file currently in storage. `sha256` and `enriched_file_path`
        from the event are only compared for the log.
        """
        info = {"conversation_id": conversation_id, "event_id": event_id, "event_source": source,
                "occurred_at": str(occurred_at) if occurred_at is not None else None}
        with self.db.connection() as conn:
            repo = Repository(conn)
            conv = repo.conversation(conversation_id)
            memberships = repo.memberships(conversation_id) if conv is not None else []
        if conv is None:
            return self._ignored(info, "unknown_conversation", "no such conversation")
        if conv["enrichment_status"] != ELIGIBLE_STATUS:
            return self._ignored(info, "not_completed",
                                 f"enrichment_status is {conv['enrichment_status']!r}, not 'completed'")
        if not memberships:
            return self._ignored(info, "not_in_any_file", "the conversation is not a member of any training file")
        path = conv["enriched_file_path"]
        if not path:
            return self._ignored(info, "no_enriched_file", "the conversation has no enriched_file_path")
        if enriched_file_path and enriched_file_path != path:
            logger.info("event names another enriched file than the conversation row; using the row's",
                        extra={**info, "event_path": enriched_file_path, "current_path": path})
        current = self.service.jobs.source_checksums([path])[path]
        if isinstance(current, ObjectNotFound):
            return self._ignored(info, "enriched_file_missing", f"{source_file_of(path)} is not in storage")
        if isinstance(current, Exception):
            raise current
        if sha256 and sha256.lower() != current:
            logger.info("event checksum differs from the stored enriched file (superseded or out-of-order event)",
                        extra={**info, "event_sha256": sha256, "current_sha256": current})
        source_file = source_file_of(path)
        changed = [m for m in memberships if m["source_sha256"] != current or m["source_file"] != source_file]
        up_to_date = [str(m["file_id"]) for m in memberships if m not in changed]
        result = {**info, "sha256": current, "stale_files": [], "already_stale": [], "up_to_date": up_to_date}
        if not changed:
            logger.info("enrichment unchanged for every file holding the conversation", extra=result)
            return {**result, "action": "unchanged"}
        with self.db.connection() as conn:
            rows = Repository(conn).mark_stale([str(m["file_id"]) for m in changed])
        result["stale_files"] = [str(r["id"]) for r in rows if r["previous_status"] != "stale"]
        result["already_stale"] = [str(r["id"]) for r in rows if r["previous_status"] == "stale"]
        result["action"] = "marked_stale" if result["stale_files"] else "already_stale"
        logger.info("enriched file changed: training files marked stale", extra=result)
        return result

    def _ignored(self, info: dict[str, Any], reason: str, message: str) -> dict[str, Any]:
        logger.info(f"enrichment event ignored: {message}", extra={**info, "reason": reason})
        return {**info, "action": "ignored", "reason": reason, "message": message,
                "stale_files": [], "already_stale": [], "up_to_date": []}

    # ------------------------------------------------------------------ scheduled regeneration
    def regenerate_stale(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Start one `regenerate` job per stale file that has no active job.

        Returns one outcome per stale file looked at: {file_id, owner_id, outcome, job, reason}
        with outcome `started` (job is the started job row), `in_progress` (our job is still
        running), `busy` (another job holds the file), `gave_up` (MAX_REGENERATE_ATTEMPTS
        attempts failed for this staleness; a new enrichment re-arms it) or `error`.
        `limit` bounds how many jobs are started in one call.
        """
        with self.db.connection() as conn:
            stale = Repository(conn).stale_files()
        outcomes: list[dict[str, Any]] = []
        started = 0
        for f in stale:
            if limit is not None and started >= limit:
                break
            outcome = self._regenerate_one(f)
            outcomes.append(outcome)
            started += outcome["outcome"] == "started"
        return outcomes

    def _regenerate_one(self, f: dict[str, Any]) -> dict[str, Any]:
        file_id, owner = str(f["id"]), str(f["owner_id"])
        base = {"file_id": file_id, "owner_id": owner, "job": None, "reason": None}
        with self.db.connection() as conn:
            mrepo = Repository(conn)
            prefix = stale_key_prefix(file_id, f["stale_since"], mrepo.last_enriched_at(file_id))
            active = Repository(conn).active_job_for_file(file_id)
            attempts = mrepo.jobs_with_key_prefix(owner, file_id, prefix)
        if active is not None:
            ours = active["idempotency_key"].startswith(prefix)
            if not (ours and active["execution_arn"] is None):
                return {**base, "outcome": "in_progress" if ours else "busy", "job": active,
                        "reason": f"job {active['id']} ({active['kind']}, {active['status']}) is active"}
            key = active["idempotency_key"]  # ours, but its execution never started: start it now
        else:
            failed = sum(a["status"] == "failed" for a in attempts)
            if failed >= MAX_REGENERATE_ATTEMPTS:
                logger.warning("stale file: regeneration gave up", extra={**base, "attempts": failed})
                return {**base, "outcome": "gave_up", "reason": f"{failed} regeneration attempts failed"}
            key = f"{prefix}{len(attempts) + 1}"
        try:
            job = self.service.jobs.start_regenerate(owner, file_id, idempotency_key=key, only_changed=True)
        except FileBusy as exc:
            return {**base, "outcome": "busy", "reason": exc.message}
        except NotFound as exc:
            return {**base, "outcome": "error", "reason": exc.message}
        except LorafilesError as exc:
            logger.warning("stale file: starting the regeneration failed", extra={**base, "error": exc.as_dict()})
            return {**base, "outcome": "error", "reason": exc.message}
        except Exception as exc:  # noqa: BLE001 - e.g. StartExecution throttled: the next tick resumes the job
            logger.exception("stale file: starting the regeneration failed", extra=base)
            return {**base, "outcome": "error", "reason": f"{type(exc).__name__}: {exc}"}
        logger.info("stale file: regeneration started",
                    extra={**base, "job_id": str(job["id"]), "idempotency_key": key})
        return {**base, "outcome": "started", "job": job}

    # ------------------------------------------------------------------ stuck jobs
    def reap_stuck(self, older_than_seconds: int | None = None) -> list[dict[str, Any]]:
        """Fail and compensate the jobs that will not finish: at once those whose execution is no
        longer running (DescribeExecution; locally, its process is gone), and those queued/running
        with no progress for `older_than_seconds` (default settings.job_timeout_seconds), after
        stopping their execution (so it runs no further step). Compensation removes staged items
        and their fragments and leaves the file untouched and free for the next job. Then sweeps
        what crashed processes left (`sweep_leftovers`). Returns one entry per reaped job."""
        timeout = self.settings.job_timeout_seconds if older_than_seconds is None else older_than_seconds
        with self.db.connection() as conn:
            repo = Repository(conn)
            active = repo.active_jobs()
            stuck = {str(j["id"]) for j in repo.stuck_jobs(timeout)}
        reaped: list[dict[str, Any]] = []
        stop = getattr(self.service.starter, "stop", None)
        status_of = execution_status_of(self.service.starter)
        for job in active:
            job_id = str(job["id"])
            ended = None
            if job["execution_arn"] and status_of is not None:
                try:
                    ended = status_of(job["execution_arn"])
                except Exception as exc:  # noqa: BLE001 - decide on the timeout alone
                    logger.warning("could not ask for the execution's status", extra={"job_id": job_id,
                                                                                     "error": str(exc)})
                if ended is not None and ended[0] == "RUNNING":
                    ended = None
            if ended is None and job_id not in stuck:
                continue
            with self.db.connection() as conn:
                now = Repository(conn).job(job_id)
            if now is None or now["status"] not in ACTIVE_JOB or now["updated_at"] != job["updated_at"]:
                continue  # finished or made progress meanwhile
            stopped = False
            if ended is not None:
                error = EXECUTION_ENDED
                cause = (f"job {job_id} ({job['kind']}) was still {job['status']} at step {job['step'] or '-'}, "
                         f"but {ended[1]}")
            else:
                error = TIMED_OUT
                cause = (f"job {job_id} ({job['kind']}) made no progress for more than {timeout}s "
                         f"(status {job['status']}, step {job['step'] or '-'}, "
                         f"last update {job['updated_at'].isoformat()})")
                if job["execution_arn"] and stop is not None:
                    try:
                        stop(job["execution_arn"], TIMED_OUT, cause)
                        stopped = True
                    except Exception as exc:  # noqa: BLE001 - compensating is what frees the file
                        logger.warning("stopping the execution failed", extra={"job_id": job_id, "error": str(exc)})
            result = self.service.steps.compensate(job_id, {"Error": error, "Cause": cause})
            entry = {"job_id": job_id, "file_id": str(job["file_id"]) if job["file_id"] else None,
                     "owner_id": str(job["owner_id"]), "kind": job["kind"], "action": "reaped",
                     "execution_stopped": stopped, "compensated": result.get("compensated", False), "cause": cause}
            logger.warning("stuck job reaped", extra=entry)
            reaped.append(entry)
        self.sweep_leftovers()
        return reaped

    def sweep_leftovers(self, scratch_base: str | Path | None = None) -> list[str]:
        """Remove the temporary files and directories that crashed processes left: generate's
        scratch directories (this host's temp dir, or `scratch_base`) and the local store's temp
        files. Unreferenced fragments go when their job is compensated. Returns what was removed."""
        removed = cleanup.sweep_scratch_dirs(scratch_base)
        sweep = getattr(self.store, "sweep_temp", None)
        if sweep is not None:
            try:
                removed += sweep()
            except Exception as exc:  # noqa: BLE001 - never let housekeeping fail the reaper
                logger.warning("sweeping the store's temp files failed", extra={"error": str(exc)})
        if removed:
            logger.info("swept what crashed processes left behind", extra={"removed": len(removed)})
        return removed
