"""The frontend's whole flow over real HTTP: validate, create (202), poll the job, download both
files through the signed URLs, add, download the new version; the old version stays downloadable."""
from __future__ import annotations

import hashlib
import json
import time
import uuid

from apikit import OWNER_A, Api, Client, http_request


def download(client: Client, file_id: str, fmt: str, version: int | None = None) -> tuple[dict, bytes, dict]:
    query = {"format": fmt} | ({"version": version} if version else {})
    reply = client.get(f"/training-files/{file_id}/download", query=query)
    assert reply.status == 200, reply.body
    link = reply.json()
    got = http_request(link["url"])  # no Authorization: the signed URL is the credential
    assert got.status == 200, got.body
    assert hashlib.sha256(got.body).hexdigest() == link["sha256"]
    assert len(got.body) == link["size"]
    return link, got.body, got.headers


def check_artifacts(json_bytes: bytes, jsonl_bytes: bytes, detail: dict, ids: list[str]) -> None:
    full = json.loads(json_bytes)
    meta = full["training_file_metadata"]
    assert meta["file_name"] == detail["name"]
    assert meta["file_version"] == detail["current_version"]
    assert meta["total_conversations"] == detail["conversation_count"] == len(full["conversations"]) == len(ids)
    assert meta["total_training_pairs"] == detail["training_pair_count"]
    lines = [json.loads(line) for line in jsonl_bytes.decode().splitlines()]
    assert lines[0]["_meta"]["total_pairs"] == detail["training_pair_count"] == len(lines) - 1
    assert {line["conversation_id"] for line in lines[1:]} == set(ids)


def test_whole_flow(api: Api) -> None:
    client = api.client(OWNER_A)
    batch = str(uuid.uuid4())
    ids = api.seed(OWNER_A, 5, batch_id=batch)
    first, more = ids[:3], ids[3:]

    # the conversations page: eligibility, and the files of the dropdown (none yet)
    page = client.get("/conversations", query={"batch_id": batch}).json()
    assert page["total"] == 5 and all(c["eligible"] for c in page["items"])
    assert page["training_files"] == []

    report = client.post("/selections/validate", {"conversation_ids": first, "name": "Elena v1"})
    assert report.status == 200 and report.json() == {"ok": True, "conversations": 3, "problems": []}

    created = client.post("/training-files", {"name": "Elena v1", "description": "first cut",
                                              "conversation_ids": first})
    assert created.status == 202, created.body
    accepted = created.json()
    assert accepted["kind"] == "create" and accepted["status"] in ("queued", "running")
    assert created.headers["location"] == accepted["links"]["job"] == f"/jobs/{accepted['job_id']}"

    job = api.wait_job(client, accepted["job_id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["progress"] == {"batches_done": 2, "batches_total": 2, "conversations": 3}  # batch_size=2
    assert job["published_version"] == 1 and job["error"] is None
    file_id = job["file_id"]
    assert job["links"]["file"] == f"/training-files/{file_id}"

    detail = client.get(f"/training-files/{file_id}").json()
    assert detail["name"] == "Elena v1" and detail["description"] == "first cut"
    assert detail["status"] == "ready" and detail["current_version"] == 1
    assert detail["conversation_count"] == 3
    assert [m["conversation_id"] for m in detail["members"]] == first
    assert [v["version"] for v in detail["versions"]] == [1]
    assert detail["batch_ids"] == [batch]
    assert sum(detail["scaffolding_distribution"]["personas"].values()) == 3
    assert detail["quality_summary"]["avg_quality_score"] == 3.0
    assert detail["current_job"]["id"] == job["id"] and detail["current_job"]["status"] == "succeeded"

    link_json, v1_json, headers = download(client, file_id, "json")
    assert link_json["filename"] == "Elena v1.json" and link_json["version"] == 1
    assert link_json["expires_in"] == 3600
    assert 'filename="Elena v1.json"' in headers["content-disposition"]
    assert headers["content-disposition"].startswith("attachment")
    link_jsonl, v1_jsonl, headers = download(client, file_id, "jsonl")
    assert link_jsonl["filename"] == "Elena v1.jsonl"
    assert 'filename="Elena v1.jsonl"' in headers["content-disposition"]
    check_artifacts(v1_json, v1_jsonl, detail, first)

    # my files (and the dropdown of the conversations page)
    listed = client.get("/training-files").json()["items"]
    assert [f["id"] for f in listed] == [file_id]
    page = client.get("/conversations", query={"batch_id": batch, "sort": "created_at", "order": "asc"}).json()
    assert page["training_files"] == [{"id": file_id, "name": "Elena v1", "status": "ready", "conversation_count": 3}]
    in_file = {c["conversation_id"]: c["training_file_ids"] for c in page["items"]}
    assert all(in_file[c] == [file_id] for c in first) and all(in_file[c] == [] for c in more)

    # add the other two: a new version
    report = client.post("/selections/validate", {"conversation_ids": more, "file_id": file_id})
    assert report.json()["ok"] is True
    added = client.post(f"/training-files/{file_id}/conversations", {"conversation_ids": more})
    assert added.status == 202, added.body
    assert added.json()["file_id"] == file_id and added.json()["kind"] == "add"
    job2 = api.wait_job(client, added.json()["job_id"])
    assert job2["status"] == "succeeded", job2["error"]
    assert job2["published_version"] == 2

    detail2 = client.get(f"/training-files/{file_id}").json()
    assert detail2["current_version"] == 2 and detail2["conversation_count"] == 5
    assert [v["version"] for v in detail2["versions"]] == [1, 2]
    assert [m["conversation_id"] for m in detail2["members"]] == first + more
    _, v2_json, _ = download(client, file_id, "json")
    _, v2_jsonl, _ = download(client, file_id, "jsonl")
    check_artifacts(v2_json, v2_jsonl, detail2, first + more)

    # the old version is still there, byte for byte
    old_link, old_json, _ = download(client, file_id, "json", version=1)
    assert old_link["version"] == 1 and old_json == v1_json
    _, old_jsonl, _ = download(client, file_id, "jsonl", version=1)
    assert old_jsonl == v1_jsonl
    missing = client.get(f"/training-files/{file_id}/download", query={"format": "json", "version": 3})
    assert missing.status == 404 and missing.error["code"] == "not_found"


def wait_for(client: Client, job_id: str, condition) -> dict:
    for _ in range(600):
        job = client.get(f"/jobs/{job_id}").json()
        if condition(job):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never got there: {job}")


def test_progress_is_reported_by_batch_while_running(api: Api, gate) -> None:
    client = api.client()
    ids = api.seed(OWNER_A, 3)
    gate.batches = {1}  # batch 0 goes through, batch 1 waits
    accepted = client.post("/training-files", {"name": "slow", "conversation_ids": ids}).json()
    job = wait_for(client, accepted["job_id"], lambda j: j["progress"]["batches_done"] == 1)
    assert job["status"] == "running" and job["step"] == "append"
    assert job["progress"] == {"batches_done": 1, "batches_total": 2, "conversations": 3}
    assert job["file_id"] is not None  # the file exists from the create step on
    gate.set()
    done = api.wait_job(client, accepted["job_id"])
    assert done["status"] == "succeeded" and done["progress"]["batches_done"] == 2


def test_failed_job_reports_its_error(api: Api, gate) -> None:
    client = api.client()
    ids = api.seed(OWNER_A, 2)
    accepted = client.post("/training-files", {"name": "broken", "conversation_ids": ids}).json()
    wait_for(client, accepted["job_id"], lambda j: j["file_id"] is not None)  # created, batch held
    # the enriched file disappears from storage after the selection was accepted
    path = api.sql("select enriched_file_path from conversations where conversation_id = %s", (ids[1],))[0]
    api.service.store.delete("conversation-files", path["enriched_file_path"])
    gate.set()
    job = api.wait_job(client, accepted["job_id"])
    assert job["status"] == "failed" and job["step"] == "compensated"
    assert job["error"]["code"] == "conversations_invalid"
    assert ids[1] in json.dumps(job["error"]["details"])
    assert client.get("/training-files").json()["items"] == []  # a failed create leaves no file
