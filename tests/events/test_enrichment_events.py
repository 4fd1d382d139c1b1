"""EnrichmentCompleted events through SQS (the real enrichment-events handler, Powertools batch
processing): duplicates and out-of-order deliveries are harmless, and a malformed record fails
alone (batchItemFailures) while the rest of its batch is processed."""
from __future__ import annotations

import hashlib
import json

from eventkit import OWNER, World, eventbridge_event, invoke, sqs_event, sqs_record

from lorafiles.maintenance import Maintenance
from lorafiles.service import INPUT_BUCKET


def _event_record(cid: str, sha: str | None = None, *, event_id: str, time: str, owner: str = OWNER) -> dict:
    detail = {"conversation_id": cid, "enriched_file_path": f"{owner}/{cid}/enriched.json"}
    if sha:
        detail["sha256"] = sha
    return sqs_record(json.dumps(eventbridge_event(detail, event_id=event_id, time=time)), message_id=f"msg-{event_id}")


def _state(world: World, file_id: str) -> tuple:
    f = world.file(file_id)
    return f["status"], f["stale_since"], f["current_version"], len(world.jobs(file_id))


def test_duplicate_and_out_of_order_events_are_harmless(world: World, maintenance: Maintenance):
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0, c1])
    original = world.file(a)

    sha_x = world.reenrich(c0, "CONTENT-X")  # enrichment X, event ex
    sha_y = world.reenrich(c0, "CONTENT-Y")  # enrichment Y (newer), event ey
    ex = _event_record(c0, sha_x, event_id="ex", time="2026-01-01T10:00:00Z")
    ey = _event_record(c0, sha_y, event_id="ey", time="2026-01-01T10:05:00Z")

    # the newer event arrives first, then duplicates and the older one
    assert invoke("enrichment-events", sqs_event(ey)) == {"batchItemFailures": []}
    marked = _state(world, a)
    assert marked[0] == "stale" and marked[2] == 1
    for batch in ([ey], [ex], [ey, ex, ey]):
        assert invoke("enrichment-events", sqs_event(*batch)) == {"batchItemFailures": []}
        assert _state(world, a) == marked  # nothing new: same stale_since, no job, same version

    # the rebuild takes the CURRENT content (Y), whatever order the events came in
    [outcome] = maintenance.regenerate_stale()
    assert world.wait(outcome["job"])["published_version"] == 2
    rebuilt = world.artifact_bytes(a, "json")
    assert b"CONTENT-Y" in rebuilt and b"CONTENT-X" not in rebuilt
    with world.service.db.connection() as conn:
        sha = conn.execute("select source_sha256 from lora_training_file_members where file_id = %s "
                           "and conversation_id = %s", (a, c0)).fetchone()["source_sha256"]
    assert sha == sha_y == hashlib.sha256(world.service.store.get(INPUT_BUCKET, f"{OWNER}/{c0}/enriched.json")).hexdigest()

    # late duplicates of both events after the rebuild: still nothing
    after = _state(world, a)
    assert after[0] == "ready" and after[1] is None
    assert invoke("enrichment-events", sqs_event(ex, ey, ex)) == {"batchItemFailures": []}
    assert _state(world, a) == after
    assert maintenance.regenerate_stale() == []
    assert world.file(a)["created_at"] == original["created_at"]


def test_malformed_record_fails_alone(world: World):
    c0, c1, loose = world.conversations(3)
    a = world.create("File A", [c0])
    b = world.create("File B", [c1])
    world.reenrich(c0, "CONTENT-Z")
    world.reenrich(c1, "CONTENT-W")

    good = _event_record(c0, event_id="good", time="2026-01-01T10:00:00Z")
    malformed = sqs_record(json.dumps(eventbridge_event({"enriched_file_path": "x/y/enriched.json"},
                                                        event_id="bad")), message_id="msg-bad")
    other = _event_record(c1, event_id="other", time="2026-01-01T10:00:01Z")
    result = invoke("enrichment-events", sqs_event(good, malformed, other))
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-bad"}]}
    assert world.file(a)["status"] == "stale" and world.file(b)["status"] == "stale"

    # other kinds of poison: a body that is not JSON, a wrong detail-type, a bad checksum
    not_json = sqs_record("{not json", message_id="msg-not-json")
    wrong_type = sqs_record(json.dumps(eventbridge_event({"conversation_id": loose}, detail_type="EnrichmentStarted")),
                            message_id="msg-wrong-type")
    bad_sha = sqs_record(json.dumps(eventbridge_event({"conversation_id": loose, "sha256": "nope"})),
                         message_id="msg-bad-sha")
    fine = _event_record(loose, event_id="loose", time="2026-01-01T10:00:02Z")  # not in any file: ignored, ok
    result = invoke("enrichment-events", sqs_event(not_json, fine, wrong_type, bad_sha))
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == [
        "msg-bad-sha", "msg-not-json", "msg-wrong-type"]
