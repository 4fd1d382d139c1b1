"""Enrichment notifications and the maintenance schedule: payload models and the dispatch from
an event to `Maintenance`. Parsing and dispatch only; the Lambda handlers in functions/ wire
these to Powertools (HTTP resolver, SQS batch processor, schedule).

Sources of "enrichment completed":
* Supabase Database Webhook on `public.conversations` (POST {type, table, schema, record,
  old_record}, shared-secret header `x-lorafiles-webhook-secret`), see `handle_webhook_request`;
* EventBridge `EnrichmentCompleted` events delivered through SQS, see `EnrichmentEventRecord`
  and `handle_enrichment_event`.
Both end in `Maintenance.enrichment_completed`, which is idempotent and order-independent.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Literal, Mapping

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.models import (
    EventBridgeModel,
    SqsRecordModel,
)
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Json,
    PrivateAttr,
    ValidationError,
    model_validator,
)

from .domain.rules import ELIGIBLE_STATUS
from .maintenance import Maintenance
from .observability import logger, metrics

WEBHOOK_SECRET_HEADER = "x-lorafiles-webhook-secret"
RELEVANT_COLUMNS = ("enriched_file_path", "enriched_at", "enriched_file_size")
# Every column of a conversations row the webhook reads: an UPDATE whose record and old_record agree
# on all of them (e.g. the batch_id back-fill, the app's updated_at bumps) is ignored at once,
# without touching the database or storage.
CARED_ABOUT = ("conversation_id", "created_by", "enrichment_status", *RELEVANT_COLUMNS)
DEFAULT_REGENERATE_LIMIT = 25


# ---------------------------------------------------------------------------- payload models
class ConversationRecord(BaseModel):
    """The columns of a `conversations` row that matter here (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    conversation_id: str = Field(min_length=1, max_length=200)
    created_by: str | None = None
    enrichment_status: str | None = None
    enriched_file_path: str | None = None
    enriched_file_size: int | None = None
    enriched_at: str | None = None  # compared as delivered, never computed with
    updated_at: str | None = None


class OldConversationRecord(ConversationRecord):
    conversation_id: str | None = None  # type: ignore[assignment]


def _row(model: type[ConversationRecord], row: dict[str, Any], field: str) -> Any:
    try:
        return model.model_validate(row)
    except ValidationError as exc:  # re-raised as ValueError so the outer error names the field
        problems = "; ".join(f"{field}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(problems) from None


class SupabaseWebhookPayload(BaseModel):
    """Supabase Database Webhook body. For INSERT/UPDATE of `conversations` the record must be a
    conversation row; other tables and DELETE are accepted (and ignored by the dispatch)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    type: Literal["INSERT", "UPDATE", "DELETE"]
    table: str = Field(min_length=1)
    db_schema: str = Field(alias="schema", min_length=1)
    record: dict[str, Any] | None = None
    old_record: dict[str, Any] | None = None
    _conversation: ConversationRecord | None = PrivateAttr(default=None)
    _previous: OldConversationRecord | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _conversation_rows(self) -> "SupabaseWebhookPayload":
        if self.table == "conversations" and self.type in ("INSERT", "UPDATE"):
            if self.record is None:
                raise ValueError(f"{self.type} of conversations without a record")
            self._conversation = _row(ConversationRecord, self.record, "record")
            if self.old_record is not None:
                self._previous = _row(OldConversationRecord, self.old_record, "old_record")
        return self

    @property
    def conversation(self) -> ConversationRecord | None:
        return self._conversation

    @property
    def previous(self) -> OldConversationRecord | None:
        return self._previous


class EnrichmentCompletedDetail(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: str = Field(min_length=1, max_length=200)
    enriched_file_path: str | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class EnrichmentCompletedEvent(EventBridgeModel):
    detail_type: Literal["EnrichmentCompleted"] = Field(alias="detail-type")
    detail: EnrichmentCompletedDetail  # type: ignore[assignment]


class EnrichmentEventRecord(SqsRecordModel):
    """An SQS record whose body is an EventBridge `EnrichmentCompleted` event (JSON)."""

    body: Json[EnrichmentCompletedEvent]  # type: ignore[assignment]


# ---------------------------------------------------------------------------- dispatch
def get_maintenance() -> Maintenance:
    from .runtime import get_service

    return Maintenance(get_service())


def _count(result: dict[str, Any]) -> None:
    metrics.add_metric(name="EnrichmentEvents", unit=MetricUnit.Count, value=1)
    if result["action"] == "ignored":
        metrics.add_metric(name="EnrichmentEventsIgnored", unit=MetricUnit.Count, value=1)
    if result["stale_files"]:
        metrics.add_metric(name="FilesMarkedStale", unit=MetricUnit.Count, value=len(result["stale_files"]))


def webhook_ignore_reason(payload: SupabaseWebhookPayload) -> str | None:
    """Why a (valid) webhook call is not an enrichment completion; None when it is one."""
    if payload.table != "conversations" or payload.db_schema != "public":
        return "other_table"
    if payload.type == "DELETE":
        return "delete"
    rec, old = payload.conversation, payload.previous
    assert rec is not None  # guaranteed by the model for INSERT/UPDATE of conversations
    if payload.type == "UPDATE" and old is not None and all(getattr(rec, c) == getattr(old, c) for c in CARED_ABOUT):
        return "no_relevant_change"
    if rec.enrichment_status != ELIGIBLE_STATUS:
        return "not_completed"
    return None


def webhook_event_id(rec: ConversationRecord) -> str:
    """A stable id for the log: the same enrichment gives the same id however often it is sent."""
    raw = "|".join(str(v) for v in (rec.conversation_id, rec.enriched_file_path, rec.enriched_at,
                                    rec.enriched_file_size))
    return "webhook-" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def handle_webhook(payload: SupabaseWebhookPayload, maintenance: Maintenance | None = None) -> dict[str, Any]:
    reason = webhook_ignore_reason(payload)
    if reason is not None:
        logger.info("webhook call ignored", extra={"reason": reason, "type": payload.type, "table": payload.table})
        metrics.add_metric(name="WebhookCallsIgnored", unit=MetricUnit.Count, value=1)
        return {"action": "ignored", "reason": reason}
    rec = payload.conversation
    result = (maintenance or get_maintenance()).enrichment_completed(
        rec.conversation_id, enriched_file_path=rec.enriched_file_path, event_id=webhook_event_id(rec),
        occurred_at=rec.enriched_at or rec.updated_at, source="supabase-webhook")
    _count(result)
    return result


def webhook_secret() -> str | None:
    """LORAFILES_WEBHOOK_SECRET, else the SSM SecureString named by LORAFILES_WEBHOOK_SECRET_SSM."""
    if os.environ.get("LORAFILES_WEBHOOK_SECRET"):
        return os.environ["LORAFILES_WEBHOOK_SECRET"]
    name = os.environ.get("LORAFILES_WEBHOOK_SECRET_SSM")
    if not name:
        return None
    from aws_lambda_powertools.utilities import parameters

    return parameters.get_parameter(name, decrypt=True)  # cache: POWERTOOLS_PARAMETERS_MAX_AGE


def handle_webhook_request(headers: Mapping[str, str], body: str | bytes | None,
                           maintenance: Maintenance | None = None) -> tuple[int, dict[str, Any]]:
    """(status, body) for one webhook POST: 401 bad secret, 422 malformed, 202 files marked
    stale, 200 anything else (ignored, unchanged, already stale)."""
    expected = webhook_secret()
    if not expected:
        logger.error("webhook secret not configured (LORAFILES_WEBHOOK_SECRET or LORAFILES_WEBHOOK_SECRET_SSM)")
        return 503, {"error": {"code": "not_configured", "message": "webhook secret not configured"}}
    given = headers.get(WEBHOOK_SECRET_HEADER) or ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        logger.warning("webhook call rejected: bad or missing secret header", extra={"header": WEBHOOK_SECRET_HEADER})
        metrics.add_metric(name="WebhookUnauthorized", unit=MetricUnit.Count, value=1)
        return 401, {"error": {"code": "unauthorized", "message": f"missing or wrong {WEBHOOK_SECRET_HEADER}"}}
    try:
        payload = SupabaseWebhookPayload.model_validate_json(body or b"")
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in exc.errors()]
        logger.warning("webhook call rejected: malformed payload", extra={"errors": errors})
        metrics.add_metric(name="WebhookMalformed", unit=MetricUnit.Count, value=1)
        return 422, {"error": {"code": "malformed_payload", "message": "malformed webhook payload",
                               "details": errors}}
    result = handle_webhook(payload, maintenance)
    return (202 if result.get("stale_files") else 200), result


def handle_enrichment_event(event: EnrichmentCompletedEvent, maintenance: Maintenance | None = None) -> dict[str, Any]:
    d = event.detail
    result = (maintenance or get_maintenance()).enrichment_completed(
        d.conversation_id, enriched_file_path=d.enriched_file_path, sha256=d.sha256, event_id=event.id,
        occurred_at=event.time, source=event.source)
    _count(result)
    return result


def run_scheduled(maintenance: Maintenance | None = None, *, limit: int | None = None) -> dict[str, Any]:
    """The schedule: reap stuck jobs first (frees their files), then regenerate stale files."""
    m = maintenance or get_maintenance()
    if limit is None:
        limit = int(os.environ.get("LORAFILES_REGENERATE_LIMIT") or DEFAULT_REGENERATE_LIMIT)
    reaped = m.reap_stuck()
    outcomes = m.regenerate_stale(limit=limit)
    counts = {"reaped": len(reaped)}
    for o in outcomes:
        counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
    metrics.add_metric(name="JobsReaped", unit=MetricUnit.Count, value=counts["reaped"])
    metrics.add_metric(name="RegenerationsStarted", unit=MetricUnit.Count, value=counts.get("started", 0))
    result = {"reaped": counts["reaped"], "reaped_jobs": [r["job_id"] for r in reaped],
              "regenerations_started": counts.get("started", 0), "stale_files": len(outcomes),
              "outcomes": counts,
              "started_jobs": [{"job_id": str(o["job"]["id"]), "file_id": o["file_id"]}
                               for o in outcomes if o["outcome"] == "started"]}
    logger.info("scheduled maintenance done", extra=result)
    return result
