"""Two batches of one job are inside their work at the same time (issue 11, item 2), over a real
PostgreSQL: both reach a barrier in their database reads (which ran under the job-row lock
before) and another in their object reads, and while they wait there the job row is not locked.
Completion is still recorded exactly once per batch, and the job publishes one version."""
from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from lorafiles.db.connect import connect
from lorafiles.db.repository import Repository
from lorafiles.errors import JobStateError

from stepkit import InThread, Kit, make_kit

TIMEOUT = 20  # seconds a batch waits for the other at a barrier: a serialised run breaks it


@pytest.fixture
def kit(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path)
    yield k
    k.service.db.close()


def test_two_batches_of_one_job_work_at_the_same_time_and_complete_once(kit: Kit, monkeypatch):
    job = kit.start(kind="create", conversation_ids=kit.conversations(4), name="parallel batches")
    kit.service.steps.validate(job)
    assert kit.service.steps.create_file(job)["batches"] == [0, 1]

    in_reads = threading.Barrier(2, timeout=TIMEOUT)
    in_objects = threading.Barrier(2, timeout=TIMEOUT)
    looked = threading.Barrier(2, timeout=TIMEOUT)
    row_free: list[bool] = []
    original = Repository.conversations_for_owner

    first_keys: set[str] = set()  # the first enriched file of each batch

    def reading(self: Repository, owner: str, ids: list[str], *args: Any, **kw: Any) -> Any:
        in_reads.wait()  # both batches are reading their conversations' rows
        rows = original(self, owner, ids, *args, **kw)
        first_keys.add(rows[ids[0]]["enriched_file_path"])
        return rows

    inner_get = kit.store.inner.get

    def get(bucket: str, key: str) -> bytes:
        if key in first_keys:
            if in_objects.wait() == 0:  # both batches are reading objects
                with connect(kit.url) as conn:  # and meanwhile nobody holds the job row
                    try:
                        conn.execute("select id from lora_training_jobs where id = %s for update nowait", (job,))
                        row_free.append(True)
                    except psycopg.errors.LockNotAvailable:
                        row_free.append(False)
            # the other batch waits here until the look is done: run on, it could finish and take the
            # row to record its completion, which is allowed (a slow machine made that look like a lock)
            looked.wait()
        return inner_get(bucket, key)

    monkeypatch.setattr(Repository, "conversations_for_owner", reading)
    kit.store.get = get  # HookStore forwards the rest to the local store
    threads = [InThread(kit.service.steps.append_batch, job, n) for n in (0, 1)]
    for t in threads:
        t.join(timeout=3 * TIMEOUT)
    assert not [e for t in threads for e in t.errors], [t.errors for t in threads]
    assert row_free == [True]
    assert kit.job(job)["completed_batches"] == [0, 1]
    with connect(kit.url) as conn:
        staged = conn.execute("select count(*) as n from lora_training_job_items where job_id = %s", (job,)).fetchone()
    assert staged["n"] == 4

    del kit.store.get
    monkeypatch.undo()
    out = kit.service.steps.generate(job)
    assert out["version"] == 1 and kit.versions(out["file_id"]) == [1]
    assert len(kit.members(out["file_id"])) == 4
    with pytest.raises(JobStateError):  # a batch delivered again after publishing stages nothing
        kit.service.steps.append_batch(job, 0)
    assert kit.job(job)["completed_batches"] == [0, 1]
