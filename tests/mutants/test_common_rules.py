"""The small rules the use cases share (issue 14, usecases/common.py and jobs.py): the one-line
message of a blocked request, artifact keys, storage paths, and the request of a job registered
before requests were stored. Expected values are written out."""
from __future__ import annotations

import pytest

from lorafiles.domain.idempotency import fingerprint_of
from lorafiles.errors import IdempotencyKeyReused
from lorafiles.usecases.common import MAX_BLOCKED_CHARS, artifact_key, blocked_message, is_artifact_key, path_of
from lorafiles.usecases.jobs import JobStarting, stored_request

FILE = "11111111-2222-4333-8444-555555555555"
OWNER = "0d0d0d0d-1111-4111-8111-000000000001"


def test_a_blocked_request_names_each_offender_by_conversation_then_field_then_request():
    problems = [{"conversation_id": "c1", "code": "not_found", "message": "no such conversation"},
                {"field": "name", "code": "name_taken", "message": "taken"},
                {"code": "too_many", "message": "81 > 80"},
                {"conversation_id": None, "field": None, "code": "x", "message": 7}]
    assert blocked_message(problems) == (
        "selection blocked, 4 problem(s): c1: not_found (no such conversation); name: name_taken (taken); "
        "request: too_many (81 > 80); request: x (7)")


def test_a_blocked_message_clips_each_reason_and_counts_what_it_does_not_show():
    long = "m" * 250
    one = blocked_message([{"conversation_id": "c", "code": "k", "message": long}])
    assert one == f"selection blocked, 1 problem(s): c: k ({long[:168]}... [82 more characters])"
    problems = [{"conversation_id": f"c{i}", "code": "k", "message": "r"} for i in range(102)]
    text = blocked_message(problems)
    assert text.startswith("selection blocked, 102 problem(s): c0: k (r); c1: k (r)")
    assert text.endswith("; c99: k (r); and 2 more") and "c100" not in text
    hundred = blocked_message(problems[:100])
    assert hundred.endswith("; c99: k (r)") and "more" not in hundred
    assert blocked_message(problems[:3], shown=2) == "selection blocked, 3 problem(s): c0: k (r); c1: k (r); and 1 more"
    huge = blocked_message([{"conversation_id": "c" * 300, "code": "k", "message": long}] * 100)
    assert MAX_BLOCKED_CHARS - 10 <= len(huge) <= MAX_BLOCKED_CHARS and huge.endswith("... [18068 more characters]")


def test_artifact_keys_are_exactly_what_artifact_key_makes():
    key = artifact_key(OWNER, FILE, 12, "axolotl_train")
    assert key == f"{OWNER}/{FILE}/v12/axolotl.train.jsonl" and is_artifact_key(key)
    assert is_artifact_key(artifact_key(OWNER, FILE, 1, "card"))
    for bad in (f"{OWNER}/{FILE}/v0/training.json", f"{OWNER}/{FILE}/v1/../v1/training.json",
                f"/{OWNER}/{FILE}/v1/training.json", f"{OWNER}/{FILE}/v1/training.json\x00",
                f"{OWNER}/{FILE}/v1/other.json", f"{OWNER}/{FILE}/v1/training.jsonx", f"{OWNER}/{FILE}/v1",
                None, 12, b"x"):
        assert not is_artifact_key(bad), bad


def test_a_source_file_path_drops_the_input_bucket_only():
    assert path_of(f"conversation-files/{OWNER}/c/enriched.json") == f"{OWNER}/c/enriched.json"
    assert path_of(f"{OWNER}/c/enriched.json") == f"{OWNER}/c/enriched.json"
    assert path_of("conversation-filesX/a/b") == "conversation-filesX/a/b"
    assert path_of("conversation-files/a/conversation-files/b") == "a/conversation-files/b"


LEGACY = {
    "create": ({"kind": "create", "file_id": FILE, "file_name": "my file", "description": "d",
                "requested_ids": ["c1", "c2"]},
               {"kind": "create", "file_id": None, "name": "my file", "description": "d",
                "conversation_ids": ["c1", "c2"]}),
    "add": ({"kind": "add", "file_id": FILE.upper(), "file_name": None, "description": None, "requested_ids": ["c2"]},
            {"kind": "add", "file_id": FILE, "name": None, "description": None, "conversation_ids": ["c2"]}),
    "regenerate": ({"kind": "regenerate", "file_id": FILE, "file_name": None, "description": None,
                    "requested_ids": ["c1"]},
                   {"kind": "regenerate", "file_id": FILE, "name": None, "description": None,
                    "conversation_ids": None, "only_changed": True}),
}


@pytest.mark.parametrize("kind", sorted(LEGACY))
def test_a_job_registered_before_requests_were_stored_answers_the_request_its_columns_hold(kind):
    job, request = LEGACY[kind]
    assert stored_request(job) == request
    legacy_row = {**job, "request": None, "request_fingerprint": None}
    assert JobStarting._same_request(legacy_row, "k", request) is legacy_row
    other = {**request, "description": "changed"}
    with pytest.raises(IdempotencyKeyReused) as err:
        JobStarting._same_request(legacy_row, "k", other)
    assert err.value.details == {"idempotency_key": "k", "differs": ["description"]}


def test_a_stored_request_is_compared_by_fingerprint_then_field_by_field():
    request = {"kind": "add", "file_id": FILE, "name": None, "description": None, "conversation_ids": ["c"]}
    row = {"request": dict(request), "request_fingerprint": fingerprint_of(request)}
    assert JobStarting._same_request(row, "k", request) is row
    stale = {"request": dict(request), "request_fingerprint": "0" * 64}  # (an older fingerprint form)
    assert JobStarting._same_request(stale, "k", request) is stale
