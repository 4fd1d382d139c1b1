"""Issue 9 item 1 over HTTP: an Idempotency-Key names one request. Reusing it for a different
request is 422 `idempotency_key_reused` naming what differs, and never returns the other job;
the same request (also 10 at once) returns the same job."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

from apikit import OWNER_A, Api

from test_isolation_and_errors import make_file


def _reused(reply, differs: list[str], job_id: str) -> None:
    assert reply.status == 422, reply.body
    error = reply.error
    assert error["code"] == "idempotency_key_reused", error
    assert error["details"]["differs"] == differs, error
    assert job_id not in reply.body.decode(), "the other request's job must never be returned"
    assert all(field in error["message"] for field in differs)


def test_a_key_reused_for_another_request_is_refused_naming_what_differs(api: Api) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 5)
    key = {"Idempotency-Key": "click-42"}
    body = {"name": "Elena v1", "description": "first cut", "conversation_ids": ids[:2]}
    first = alice.post("/training-files", body, headers=key)
    assert first.status == 202, first.body
    job_id = first.json()["job_id"]
    job = api.wait_job(alice, job_id)
    assert job["status"] == "succeeded"

    variants = [
        ({**body, "name": "Elena v2"}, ["name"]),
        ({**body, "name": "ELENA V1"}, ["name"]),                     # another display name
        ({**body, "description": "second cut"}, ["description"]),
        ({k: v for k, v in body.items() if k != "description"}, ["description"]),
        ({**body, "conversation_ids": ids[:1]}, ["conversation_ids"]),
        ({**body, "conversation_ids": ids[1::-1]}, ["conversation_ids"]),  # order is the file's order
        ({**body, "conversation_ids": ids[2:4]}, ["conversation_ids"]),
        ({"name": "Other", "conversation_ids": ids[2:4]}, ["name", "description", "conversation_ids"]),
    ]
    for variant, differs in variants:
        _reused(alice.post("/training-files", variant, headers=key), differs, job_id)
    # the same key on the add route: another kind of request, with a target
    _reused(alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:3]},
                       headers=key), ["kind", "file_id", "name", "description", "conversation_ids"], job_id)

    # the same request still returns the same job (surrounding spaces of the name do not count)
    again = alice.post("/training-files", {**body, "name": "  Elena v1 "}, headers=key)
    assert again.status == 202 and again.json()["job_id"] == job_id
    assert again.json()["status"] == "succeeded" and again.json()["file_id"] == job["file_id"]

    # add: the key names one target
    other = make_file(api, alice, ids[4:5], name="Other file")
    add_key = {"Idempotency-Key": "add-7"}
    added = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:3]},
                       headers=add_key)
    assert added.status == 202, added.body
    api.wait_job(alice, added.json()["job_id"])
    _reused(alice.post(f"/training-files/{other['file_id']}/conversations", {"conversation_ids": ids[2:3]},
                       headers=add_key), ["file_id"], added.json()["job_id"])
    _reused(alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[3:4]},
                       headers=add_key), ["conversation_ids"], added.json()["job_id"])
    same = alice.post(f"/training-files/{job['file_id']}/conversations", {"conversation_ids": ids[2:3]},
                      headers=add_key)
    assert same.status == 202 and same.json()["job_id"] == added.json()["job_id"]

    rows = api.sql("select idempotency_key, count(*) as n from lora_training_jobs where owner_id = %s "
                   "group by idempotency_key", (OWNER_A,))
    assert all(r["n"] == 1 for r in rows) and len(rows) == 3
    stored = api.sql("select request, request_fingerprint from lora_training_jobs where idempotency_key = 'click-42'")
    assert stored[0]["request"] == {"kind": "create", "file_id": None, "name": "Elena v1",
                                    "description": "first cut", "conversation_ids": ids[:2]}
    assert len(stored[0]["request_fingerprint"]) == 64


def test_ten_concurrent_requests_with_one_key_start_one_job(api: Api) -> None:
    alice = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 3)
    body = {"name": "Concurrent", "conversation_ids": ids}
    barrier = Barrier(10)

    def send(_: int):
        barrier.wait()
        return alice.post("/training-files", body, headers={"Idempotency-Key": "burst-1"})

    with ThreadPoolExecutor(10) as pool:
        replies = list(pool.map(send, range(10)))
    assert [r.status for r in replies] == [202] * 10, [r.body for r in replies]
    assert len({r.json()["job_id"] for r in replies}) == 1
    job = api.wait_job(alice, replies[0].json()["job_id"])
    assert job["status"] == "succeeded"
    assert api.sql("select count(*) as n from lora_training_jobs")[0]["n"] == 1
    assert api.sql("select count(*) as n from lora_training_files")[0]["n"] == 1
