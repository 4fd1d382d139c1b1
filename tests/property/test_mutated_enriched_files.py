"""Issue 9 property suite: valid enriched files (generated and the real fixtures), mutated by
hypothesis, are each either accepted with their warnings or refused with a per-conversation
reason. 0 crashes, 0 raw database errors, and the training file stays byte-identical on every
refusal. Bounded (fixed example counts, derandomized, a deadline) so it runs in CI."""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import orjson
from hypothesis import HealthCheck, event, given, settings

from propkit import IMPORTER, OWNER, Env
from mutations import mutated

from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.render import MemberMeta, render_fragments
from lorafiles.domain.summary import conversation_stats

CID = "5d0c2a5e-8d9b-4c3e-9a57-2b6e1f0d4c81"
COMMON = dict(derandomize=True, database=None, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture])


def _storable(value) -> bool:
    """Independent of the code under test: PostgreSQL text/jsonb hold no NUL and no lone surrogate."""
    text = json.dumps(value, ensure_ascii=False)  # keys included
    if "\\u0000" in text or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@settings(max_examples=400, deadline=timedelta(seconds=5), **COMMON)
@given(case=mutated())
def test_parsing_never_crashes_and_what_it_accepts_renders_and_is_storable(case):
    blob, how = case
    parsed = parse_enriched(blob, source="property", conversation_id=CID)  # must not raise
    report = parsed.report
    assert report.conversation_id == CID
    if not parsed.ok:
        event(f"refused: {report.errors[0].code if report.errors else '?'}")
        assert report.errors, how
        for e in report.errors:
            assert e.code and e.message.strip(), (how, e)
        assert len(orjson.dumps(report.model_dump())) < 64 * 1024, how  # bounded whatever the file
        return
    event("accepted")
    scaffolding = parsed.scaffolding()
    stats = conversation_stats(parsed, scaffolding)
    meta = MemberMeta(conversation_id=CID, source_file="conversation-files/x", created_date=None, batch_id=None,
                      total_turns=stats.pairs, quality_tier=stats.quality_tier, scaffolding=scaffolding)
    json_fragment, jsonl = render_fragments(parsed, meta)  # must not raise
    orjson.loads(b"[" + json_fragment + b"]")
    for line in jsonl.splitlines():
        orjson.loads(line)
    # everything staging writes to the database
    stored = {"stats": stats.as_dict(), "warnings": [w.model_dump() for w in report.warnings],
              "vertical": parsed.dataset_metadata.get("vertical"), "consultant_profile": parsed.consultant_profile}
    assert _storable(stored), how


def _snapshot(env: Env) -> dict:
    with env.service.db.connection() as conn:
        f = conn.execute("select current_version, status, conversation_count, json_sha256, jsonl_sha256 "
                         "from lora_training_files where id = %s", (env.file_id,)).fetchone()
        members = conn.execute("select conversation_id, json_fragment_key, jsonl_fragment_key "
                               "from lora_training_file_members where file_id = %s order by position",
                               (env.file_id,)).fetchall()
        items = conn.execute("select count(*) as n from lora_training_job_items").fetchone()["n"]
    root = env.service.settings.local_storage_root / "training-files" / OWNER / env.file_id
    objects = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in sorted(root.rglob("*")) if p.is_file()}
    return {"file": f, "members": members, "items": items, "objects": objects}


@settings(max_examples=30, deadline=timedelta(seconds=60), **COMMON)
@given(case=mutated())
def test_a_mutated_file_added_through_the_pipeline_is_accepted_or_refused_cleanly(env: Env, case):
    blob, how = case
    service = env.service
    cid = env.take_conversation()
    with service.db.connection() as conn:
        path = conn.execute("select enriched_file_path from conversations where conversation_id = %s",
                            (cid,)).fetchone()["enriched_file_path"]
    service.store.put("conversation-files", path, blob)
    before = _snapshot(env)
    job = service.jobs.start_job(OWNER, kind="add", conversation_ids=[cid], file_id=env.file_id)
    env.machine.wait(job["execution_arn"], timeout=120)
    job = service.reading.get_job(OWNER, str(job["id"]))
    event("accepted" if job["status"] == "succeeded" else f"refused: {(job['error'] or {}).get('code')}")
    if job["status"] == "succeeded":
        shown = service.reading.show_file(OWNER, env.file_id)
        [member] = [m for m in shown["members"] if m["conversation_id"] == cid]
        assert isinstance(member["warnings"], list)
        for fmt in ("json", "jsonl"):
            a = service.reading.artifact(OWNER, env.file_id, fmt)
            data = service.store.get(a["bucket"], a["key"])
            if fmt == "json":
                orjson.loads(data)
            else:
                [orjson.loads(line) for line in data.splitlines()]
        return
    error = job["error"]
    assert job["status"] == "failed" and job["step"] == "compensated", (how, job["status"], job["step"])
    assert error["code"] == "conversations_invalid", (how, error)  # never a crash or a raw database error
    [detail] = error["details"]
    assert detail["conversation_id"] == cid, (how, detail)
    assert detail["errors"] and all(e["code"] and e["message"] for e in detail["errors"]), (how, detail)
    assert _snapshot(env) == before, how  # byte-identical on refusal


@settings(max_examples=60, deadline=timedelta(seconds=10), **COMMON)
@given(case=mutated())
def test_importing_a_mutated_file_imports_it_or_refuses_it_with_reasons(env: Env, case):
    blob, how = case
    path = env.tmp / "import-case.json"
    path.write_bytes(blob)
    result = env.service.importing.import_files(IMPORTER, [path])  # must not raise
    assert len(result["imported"]) + len(result["refused"]) == 1, how
    for refused in result["refused"]:
        assert refused["problems"] and all(p["code"] and p["message"] for p in refused["problems"]), how
