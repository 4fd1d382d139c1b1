"""Supabase Database Webhook on public.conversations, through the real enrichment-webhook
handler with API Gateway HTTP API (v2) events: shared-secret check (401), malformed payload
(422), and the decision which row changes are completed enrichments."""
from __future__ import annotations

import json

import pytest
from eventkit import OWNER, World, http_event, invoke

SECRET = "s3cret-webhook-value"


@pytest.fixture(autouse=True)
def webhook_secret(monkeypatch):
    monkeypatch.setenv("LORAFILES_WEBHOOK_SECRET", SECRET)


def call(payload, secret: str | None = SECRET, raw: str | None = None) -> tuple[int, dict]:
    headers = {"x-lorafiles-webhook-secret": secret} if secret is not None else {}
    resp = invoke("enrichment-webhook", http_event(raw if raw is not None else json.dumps(payload), headers))
    return resp["statusCode"], json.loads(resp["body"])


def row(cid: str, **over) -> dict:
    """A conversations row as Supabase sends it (many more columns than we read)."""
    base = {"id": "5d0f3c1e-8a4b-4c61-9f0e-2b7d9a6c1e44", "conversation_id": cid, "created_by": OWNER,
            "status": "pending_review", "processing_status": "completed", "enrichment_status": "completed",
            "enriched_file_path": f"{OWNER}/{cid}/enriched.json", "enriched_file_size": 21873,
            "enriched_at": "2026-01-01T10:00:00.123456+00:00", "enrichment_version": "v1.0",
            "enrichment_error": None, "validation_report": {"blockers": [], "warnings": []},
            "quality_score": 3.0, "turn_count": 3, "updated_at": "2026-01-01T10:00:00.2+00:00"}
    return {**base, **over}


def update(new: dict, old: dict) -> dict:
    return {"type": "UPDATE", "table": "conversations", "schema": "public", "record": new, "old_record": old}


UNAUTHORIZED = {"error": {"code": "unauthorized", "message": "missing or wrong x-lorafiles-webhook-secret"}}


def test_bad_or_missing_secret_is_401(world: World):
    [c0] = world.conversations(1)
    a = world.create("File A", [c0])
    world.reenrich(c0, "CONTENT-1")
    before, jobs = world.file(a), world.jobs(a)
    payload = update(row(c0), row(c0, enrichment_status="enriched"))
    assert call(payload, secret="wrong") == (401, UNAUTHORIZED)
    assert call(payload, secret=None) == (401, UNAUTHORIZED)
    assert call(payload, secret=SECRET[:-1]) == (401, UNAUTHORIZED)
    assert call(payload, secret=SECRET + "x") == (401, UNAUTHORIZED)
    assert call({"garbage": True}, secret="wrong") == (401, UNAUTHORIZED)  # the secret is checked before the body
    # nothing was marked, started or touched: the same row, the same jobs
    after = world.file(a)
    assert (after["status"], after["stale_since"]) == ("ready", None)
    assert after == before and world.jobs(a) == jobs
    # and the same delivery with the right secret does mark it (the 401s were about the secret only)
    status, body = call(payload)
    assert (status, body["action"], body["stale_files"]) == (202, "marked_stale", [a])


def test_malformed_payload_is_422(world: World):
    for raw in ("{not json", "null", "[]", json.dumps({"type": "UPSERT", "table": "conversations", "schema": "public"}),
                json.dumps({"type": "UPDATE", "table": "conversations", "schema": "public", "record": None}),
                json.dumps({"type": "INSERT", "table": "conversations", "schema": "public",
                            "record": {"enrichment_status": "completed"}, "old_record": None})):
        status, body = call(None, raw=raw)
        assert status == 422, raw
        assert body["error"]["code"] == "malformed_payload" and body["error"]["details"]


def test_completed_enrichment_marks_stale_and_other_changes_are_ignored(world: World):
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0])
    b = world.create("File B", [c1])
    world.reenrich(c0, "CONTENT-2")

    # not an enrichment completion: 200, nothing done
    cases = [
        {"type": "DELETE", "table": "conversations", "schema": "public", "record": None, "old_record": row(c0)},
        {"type": "INSERT", "table": "personas", "schema": "public", "record": {"id": 1}, "old_record": None},
        update(row(c0, enrichment_status="enrichment_in_progress"), row(c0)),
        update(row(c0, status="approved"), row(c0)),  # an unrelated column changed
    ]
    for payload in cases:
        status, body = call(payload)
        assert (status, body["action"]) == (200, "ignored"), payload
    assert world.file(a)["status"] == "ready"

    # status became completed: 202, exactly the file holding it is stale
    status, body = call(update(row(c0), row(c0, enrichment_status="enriched")))
    assert status == 202 and body["action"] == "marked_stale" and body["stale_files"] == [a]
    assert world.file(a)["status"] == "stale" and world.file(b)["status"] == "ready"

    # the same delivery again (webhooks can repeat): 200, nothing new
    stale_since = world.file(a)["stale_since"]
    status, body = call(update(row(c0), row(c0, enrichment_status="enriched")))
    assert status == 200 and body["action"] == "already_stale" and body["stale_files"] == []
    assert world.file(a)["stale_since"] == stale_since

    # a completed conversation re-enriched again (new enriched_at) but the file content is the same
    status, body = call(update(row(c1, enriched_at="2026-01-02T00:00:00+00:00"), row(c1)))
    assert status == 200 and body["action"] == "unchanged" and body["up_to_date"] == [b]

    # an INSERT of a completed conversation that is in no file
    status, body = call({"type": "INSERT", "table": "conversations", "schema": "public",
                         "record": row("00000000-0000-4000-8000-00000000beef"), "old_record": None})
    assert status == 200 and body["reason"] == "unknown_conversation"


def test_unconfigured_secret_refuses(world: World, monkeypatch):
    [c0] = world.conversations(1)
    a = world.create("File A", [c0])
    world.reenrich(c0, "CONTENT-3")
    monkeypatch.delenv("LORAFILES_WEBHOOK_SECRET")
    monkeypatch.delenv("LORAFILES_WEBHOOK_SECRET_SSM", raising=False)
    for secret in (SECRET, "", None):  # no secret configured: nothing is accepted, not even an empty one
        status, body = call(update(row(c0), row(c0, enrichment_status="enriched")), secret=secret)
        assert (status, body) == (503, {"error": {"code": "not_configured", "message": "webhook secret not configured"}})
    assert world.file(a)["status"] == "ready" and world.file(a)["stale_since"] is None


def test_secret_from_ssm(world: World, monkeypatch, machine):
    """In AWS the secret is an SSM SecureString named by LORAFILES_WEBHOOK_SECRET_SSM (moto here)."""
    import boto3

    monkeypatch.delenv("LORAFILES_WEBHOOK_SECRET")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = "/lorafiles/test/webhook-secret"
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name=name, Value="from-ssm", Type="SecureString")
    monkeypatch.setenv("LORAFILES_WEBHOOK_SECRET_SSM", name)
    payload = update(row("x"), row("x", enrichment_status="enriched"))
    status, body = call(payload, secret="from-ssm")
    assert status == 200 and body["reason"] == "unknown_conversation"  # authenticated, then handled
    assert call(payload, secret=SECRET) == (401, UNAUTHORIZED)


def test_updates_that_change_nothing_it_reads_are_ignored_without_the_database(world: World, monkeypatch):
    """The batch_id back-fill and the app's updated_at bumps fire the webhook once per row: record
    and old_record then differ only in columns the webhook does not read. Those calls are answered
    at once, without the database or storage (a completion would have marked the file stale)."""
    import lorafiles.events as events

    [c0] = world.conversations(1)
    a = world.create("File A", [c0])
    world.reenrich(c0, "CONTENT-3")

    def no_database():
        raise AssertionError("an ignored webhook call must not reach the service")

    monkeypatch.setattr(events, "get_maintenance", no_database)
    batch = "6a1f0c2e-0000-4000-8000-000000000042"
    for new, old in [
        (row(c0, batch_id=batch, updated_at="2026-02-01T00:00:00+00:00"), row(c0, batch_id=None)),  # back-fill
        (row(c0, updated_at="2026-02-02T00:00:00+00:00", quality_score=4.0), row(c0)),
        (row(c0, enrichment_status="validated", batch_id=batch), row(c0, enrichment_status="validated")),
    ]:
        status, body = call(update(new, old))
        assert (status, body) == (200, {"action": "ignored", "reason": "no_relevant_change"})
    assert world.file(a)["status"] == "ready"

    # a change of something it reads still goes through
    monkeypatch.undo()
    monkeypatch.setenv("LORAFILES_WEBHOOK_SECRET", SECRET)
    status, body = call(update(row(c0, enriched_at="2026-02-03T00:00:00+00:00"), row(c0)))
    assert status == 202 and body["stale_files"] == [a]
