"""`GET /training-files/{file_id}/diff` over real HTTP (the local server, the same resolver as the
Lambda): the owner gets the diff of two versions, which is the service's; everyone else gets 404;
bad version numbers are 422 naming the field."""
from __future__ import annotations

import orjson

from apikit import OWNER_A, OWNER_B, Api


def test_the_owner_gets_the_diff_of_two_versions_and_nobody_else(api: Api) -> None:
    client = api.client(OWNER_A)
    ids = api.seed(OWNER_A, 5)
    created = client.post("/training-files", {"name": "diff over http", "conversation_ids": ids[:3]})
    assert created.status == 202, created.body
    file_id = api.wait_job(client, created.json()["job_id"])["file_id"]
    added = client.post(f"/training-files/{file_id}/conversations", {"conversation_ids": ids[3:]})
    assert api.wait_job(client, added.json()["job_id"])["published_version"] == 2

    reply = client.get(f"/training-files/{file_id}/diff", query={"from_version": 1, "to_version": 2})
    assert reply.status == 200, reply.body
    body = reply.json()
    assert body == orjson.loads(orjson.dumps(api.service.diffing.diff(OWNER_A, file_id, 1, 2), default=str))
    assert [e["conversation_id"] for e in body["conversations"]["added"]] == ids[3:]
    assert body["conversations"]["counts"]["unchanged"] == 3
    assert body["tokens"]["openai"]["lines"]["change"] > 0

    # another user: exactly like a file that does not exist
    other = api.client(OWNER_B).get(f"/training-files/{file_id}/diff", query={"from_version": 1, "to_version": 2})
    assert other.status == 404 and other.error["code"] == "not_found"
    assert other.error["message"] == f"training file {file_id} not found"
    missing = client.get(f"/training-files/{file_id}/diff", query={"from_version": 1, "to_version": 3})
    assert missing.status == 404 and missing.error["message"] == f"training file {file_id} has no version 3"

    for query, field in (({"from_version": 0, "to_version": 2}, "from_version"),
                         ({"from_version": 1}, "to_version"),
                         ({"from_version": "one", "to_version": 2}, "from_version"),
                         ({"from_version": 1, "to_version": 2**31}, "to_version")):
        bad = client.get(f"/training-files/{file_id}/diff", query=query)
        assert bad.status == 422 and bad.error["code"] == "invalid_request", (query, bad.body)
        assert field in orjson.dumps(bad.error["details"]).decode(), (query, bad.error)
    not_uuid = client.get("/training-files/not-a-uuid/diff", query={"from_version": 1, "to_version": 2})
    assert not_uuid.status == 422 and "file_id" in orjson.dumps(not_uuid.error["details"]).decode()
    assert api.anonymous.get(f"/training-files/{file_id}/diff", query={"from_version": 1, "to_version": 2}).status == 401
