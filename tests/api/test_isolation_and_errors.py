"""Owner isolation (another user's objects are 404 / not_found), blocked selections (422 with
per-conversation problems), idempotency, body validation, busy files, signed URL tampering."""
from __future__ import annotations

import json
import time
import uuid

from apikit import OWNER_A, OWNER_B, Api, Client, http_request

from lorafiles.config import Settings


def make_file(api: Api, client: Client, ids: list[str], name: str = "A's file") -> dict:
    accepted = client.post("/training-files", {"name": name, "conversation_ids": ids})
    assert accepted.status == 202, accepted.body
    job = api.wait_job(client, accepted.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def test_another_users_file_job_and_download_are_not_found(api: Api) -> None:
    alice, bob = api.client(OWNER_A), api.client(OWNER_B, "HS256")
    ids = api.seed(OWNER_A, 2)
    bob_ids = api.seed(OWNER_B, 1)
    job = make_file(api, alice, ids)
    file_id, job_id = job["file_id"], job["id"]

    for path in (f"/training-files/{file_id}", f"/jobs/{job_id}", f"/training-files/{file_id}/download",
                 f"/training-files/{file_id}/download?format=jsonl&version=1"):
        reply = bob.get(path)
        assert reply.status == 404, (path, reply.body)
        assert reply.error["code"] == "not_found"
    reply = bob.post(f"/training-files/{file_id}/conversations", {"conversation_ids": bob_ids})
    assert reply.status == 404 and reply.error["code"] == "not_found"
    reply = bob.post("/selections/validate", {"conversation_ids": bob_ids, "file_id": file_id})
    assert reply.status == 404
    assert bob.get("/training-files").json()["items"] == []
    page = bob.get("/conversations").json()
    assert [c["conversation_id"] for c in page["items"]] == bob_ids and page["training_files"] == []
    # same-name files are per user
    assert make_file(api, bob, bob_ids, name="A's file")["status"] == "succeeded"


def test_blocked_selection_is_422_with_every_problem(api: Api) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 4)
    bobs = api.seed(OWNER_B, 1)
    in_file, ok, ineligible, unfinished = ids
    job = make_file(api, alice, [in_file])
    api.sql("update conversations set enriched_file_path = null where conversation_id = %s", (ineligible,))
    api.sql("update conversations set enrichment_status = 'enrichment_in_progress' where conversation_id = %s", (unfinished,))
    unknown = str(uuid.uuid4())
    selection = [ok, ineligible, unfinished, unknown, bobs[0], ok, in_file]

    reply = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": selection})
    assert reply.status == 422, reply.body
    error = reply.error
    assert error["code"] == "selection_blocked"
    problems = {(p["conversation_id"], p["code"]) for p in error["details"]}
    assert problems == {
        (ineligible, "not_eligible"), (unfinished, "not_eligible"), (unknown, "not_found"),
        (bobs[0], "not_found"),  # another user's conversation is exactly like a missing one
        (ok, "repeated_in_request"), (in_file, "already_in_file"),
    }
    # nothing started
    assert alice.get(f"/training-files/{job['file_id']}").json()["current_job"]["id"] == job["id"]

    # the same problems from the validate route (200), in request order
    report = alice.post("/selections/validate", {"conversation_ids": selection, "file_id": job["file_id"]}).json()
    assert report["ok"] is False and report["conversations"] == 7
    assert [(p["conversation_id"], p["code"]) for p in report["problems"]] == [
        (ineligible, "not_eligible"), (unfinished, "not_eligible"), (unknown, "not_found"), (bobs[0], "not_found"),
        (ok, "repeated_in_request"), (in_file, "already_in_file")]

    # create: a taken name, too many, empty
    reply = alice.post("/training-files", {"name": " a's FILE ", "conversation_ids": [ok]})
    assert reply.status == 422
    assert [(p["code"], p["field"]) for p in reply.error["details"]] == [("name_taken", "name")]
    reply = alice.post("/training-files", {"name": "big", "conversation_ids": [str(i) for i in range(81)]})
    assert reply.status == 422 and "too_many" in {p["code"] for p in reply.error["details"]}
    reply = alice.post("/training-files", {"name": "empty", "conversation_ids": []})
    assert reply.status == 422 and [p["code"] for p in reply.error["details"]] == ["empty_selection"]
    reply = alice.post("/training-files", {"name": "   ", "conversation_ids": [ok]})
    assert reply.status == 422 and "invalid_name" in {p["code"] for p in reply.error["details"]}


def test_idempotency_key_retries_start_one_job(api: Api) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 3)
    key = {"Idempotency-Key": "create-7f3a"}
    first = alice.post("/training-files", {"name": "once", "conversation_ids": ids[:2]}, headers=key)
    again = alice.post("/training-files", {"name": "once", "conversation_ids": ids[:2]}, headers=key)
    assert first.status == again.status == 202
    assert first.json()["job_id"] == again.json()["job_id"]
    job = api.wait_job(alice, first.json()["job_id"])
    late = alice.post("/training-files", {"name": "once", "conversation_ids": ids[:2]}, headers=key)
    assert late.status == 202 and late.json()["job_id"] == job["id"] and late.json()["status"] == "succeeded"
    assert late.json()["file_id"] == job["file_id"]
    add_key = {"idempotency-key": "add-1"}
    a1 = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:]}, headers=add_key)
    a2 = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:]}, headers=add_key)
    assert a1.status == a2.status == 202 and a1.json()["job_id"] == a2.json()["job_id"]
    api.wait_job(alice, a1.json()["job_id"])
    assert api.sql("select count(*) as n from lora_training_jobs")[0]["n"] == 2
    # keys are per user: Bob's same key is his own (blocked) request
    bob = api.client(OWNER_B)
    assert bob.post("/training-files", {"name": "once", "conversation_ids": ids[:2]}, headers=key).status == 422


def test_adding_to_a_busy_file_is_409(api: Api, gate) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 3)
    gate.batches = set()  # let the create through
    job = make_file(api, alice, ids[:1])
    gate.batches = None  # hold the add
    running = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[1:2]})
    assert running.status == 202  # held by the gate
    reply = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:]})
    assert reply.status == 409, reply.body
    assert reply.error["code"] == "file_busy"
    assert reply.error["details"]["job_id"] == running.json()["job_id"]
    gate.set()
    assert api.wait_job(alice, running.json()["job_id"])["status"] == "succeeded"


def test_body_validation_is_422_naming_the_field(api: Api) -> None:
    alice = api.client()
    cases = [
        ("/training-files", {"conversation_ids": ["a"]}, "body.name", "missing"),
        ("/training-files", {"name": 5, "conversation_ids": ["a"]}, "body.name", "string_type"),
        ("/training-files", {"name": "x" * 256, "conversation_ids": ["a"]}, "body.name", "string_too_long"),
        ("/training-files", {"name": "n", "conversation_ids": "a"}, "body.conversation_ids", "list_type"),
        ("/training-files", {"name": "n", "conversation_ids": [""]}, "body.conversation_ids.0", "string_too_short"),
        ("/training-files", {"name": "n\u0000", "conversation_ids": ["a"]}, "body.name", "string_pattern_mismatch"),
        ("/training-files", {"name": "n", "conversation_ids": ["a"], "owner_id": OWNER_B}, "body.owner_id",
         "extra_forbidden"),
        ("/selections/validate", {"conversation_ids": ["a"]}, "body", "value_error"),
        ("/selections/validate", {"conversation_ids": ["a"], "name": "n", "file_id": str(uuid.uuid4())}, "body",
         "value_error"),
        ("/selections/validate", {"conversation_ids": ["a"], "file_id": "nope"}, "body.file_id", "uuid_parsing"),
    ]
    for path, body, field, kind in cases:
        reply = alice.post(path, body)
        assert reply.status == 422, (body, reply.body)
        error = reply.error
        assert error["code"] == "invalid_request"
        assert (field, kind) in {(d["field"], d["type"]) for d in error["details"]}, (body, error)
        assert field in error["message"]
    reply = alice.request("POST", "/training-files", raw=b"{not json", headers={"Content-Type": "application/json"})
    assert reply.status == 422 and reply.error["details"][0]["type"] == "json_invalid"
    reply = alice.request("POST", "/training-files", raw=b"name=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 415 and reply.error["code"] == "unsupported_media_type"
    for path, query, field in (("/jobs/not-a-uuid", None, "path.job_id"),
                               ("/conversations", {"limit": 0}, "query.limit"),
                               ("/conversations", {"sort": "id; drop table conversations"}, "query.sort"),
                               ("/training-files/" + str(uuid.uuid4()) + "/download", {"format": "xml"},
                                "query.format")):
        reply = alice.get(path, query=query)
        assert reply.status == 422 and field in {d["field"] for d in reply.error["details"]}, reply.body


def test_signed_urls_expire_and_cannot_be_tampered_with(api: Api) -> None:
    alice = api.client()
    ids = api.seed(OWNER_A, 1)
    job = make_file(api, alice, ids, name="secret")
    link = alice.get(f"/training-files/{job['file_id']}/download").json()
    assert http_request(link["url"]).status == 200

    payload, _, signature = link["url"].rsplit("/", 1)[1].partition(".")
    base = link["url"].rsplit("/", 1)[0]
    decoded = json.loads(_unb64(payload))
    # point the link at another object (here: the JSONL), keeping the signature
    forged = {**decoded, "k": decoded["k"].replace("training.json", "training.jsonl")}
    for url in (f"{base}/{_b64(json.dumps(forged).encode())}.{signature}",  # payload changed
                f"{base}/{payload}.{signature[:-2]}AA",                      # signature changed
                f"{base}/{payload}",                                         # signature removed
                f"{base}/{_b64(json.dumps({**decoded, 'e': decoded['e'] + 86400}).encode())}.{signature}"):
        reply = http_request(url)
        assert reply.status == 403, url
        assert json.loads(reply.body)["error"]["code"] == "download_invalid"

    expired = api.server.signer(decoded["b"], decoded["k"], -1, decoded["n"])
    reply = http_request(expired)
    assert reply.status == 403 and json.loads(reply.body)["error"]["code"] == "download_expired"
    short = api.server.signer(decoded["b"], decoded["k"], 1, decoded["n"])
    assert http_request(short).status == 200
    time.sleep(1.1)
    assert http_request(short).status == 403


def test_signed_url_expiry_is_configurable(api: Api, monkeypatch) -> None:
    monkeypatch.setenv("LORAFILES_SIGNED_URL_TTL", "120")
    assert Settings().signed_url_ttl == 120
    api.service.settings.signed_url_ttl = 120
    alice = api.client()
    job = make_file(api, alice, api.seed(OWNER_A, 1))
    link = alice.get(f"/training-files/{job['file_id']}/download", query={"format": "jsonl"}).json()
    assert link["expires_in"] == 120
    exp = json.loads(_unb64(link["url"].rsplit("/", 1)[1].partition(".")[0]))["e"]
    assert abs(exp - (time.time() + 120)) < 5


def _b64(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
