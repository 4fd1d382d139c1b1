"""Issue 9 item 1 under real concurrency: 10 threads calling start_job at once against the real
PostgreSQL (the HTTP server serialises requests like one Lambda container; several containers
do not), with the production state machine in moto."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest

from lorafiles.errors import IdempotencyKeyReused
from pipekit import OWNER, run


def _all_at_once(calls):
    barrier = Barrier(len(calls))

    def call(fn):
        barrier.wait()
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(call, calls))


def _jobs(service, key: str) -> list[dict]:
    with service.db.connection() as conn:
        return conn.execute("select * from lora_training_jobs where idempotency_key = %s", (key,)).fetchall()


@pytest.mark.parametrize("kind", ["create", "add"])
def test_ten_concurrent_identical_requests_get_one_job(service, machine, make_conversations, kind):
    ids = make_conversations(3)
    target = {}
    if kind == "add":
        target = {"file_id": str(run(service, machine, kind="create", conversation_ids=ids[:1],
                                     name="Base")["file_id"])}
    request = {"kind": kind, "conversation_ids": ids[1:], **target,
               **({"name": "Burst"} if kind == "create" else {})}
    results = _all_at_once([lambda: service.jobs.start_job(OWNER, idempotency_key="burst", **request)] * 10)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({str(r["id"]) for r in results}) == 1
    [job] = _jobs(service, "burst")
    machine.wait(job["execution_arn"], timeout=300)
    assert service.reading.get_job(OWNER, str(job["id"]))["status"] == "succeeded"


def test_ten_concurrent_requests_with_one_key_and_two_bodies(service, machine, make_conversations):
    ids = make_conversations(4)
    a = {"kind": "create", "name": "Left", "conversation_ids": ids[:2]}
    b = {"kind": "create", "name": "Right", "conversation_ids": ids[2:]}
    calls = [(lambda r=r: service.jobs.start_job(OWNER, idempotency_key="race", **r)) for r in [a, b] * 5]
    results = _all_at_once(calls)
    [job] = _jobs(service, "race")
    winner = a if job["file_name"] == "Left" else b
    for request, result in zip([a, b] * 5, results):
        if request is winner:
            assert not isinstance(result, Exception) and str(result["id"]) == str(job["id"]), result
        else:
            assert isinstance(result, IdempotencyKeyReused), result
            assert result.details["differs"] == ["name", "conversation_ids"]
    machine.wait(job["execution_arn"], timeout=300)


def test_regenerate_key_is_one_request_too(service, machine, make_conversations):
    ids = make_conversations(2)
    job = run(service, machine, kind="create", conversation_ids=ids, name="Regen", idempotency_key="k-create")
    file_id = str(job["file_id"])
    with pytest.raises(IdempotencyKeyReused) as refused:
        service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-create")
    assert refused.value.details["differs"][:2] == ["kind", "file_id"]
    regen = service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen")
    machine.wait(regen["execution_arn"], timeout=300)
    assert str(service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen")["id"]) == str(regen["id"])
    with pytest.raises(IdempotencyKeyReused) as refused:
        service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen", only_changed=True)
    assert refused.value.details["differs"] == ["only_changed"]
