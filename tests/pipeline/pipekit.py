"""Constants and helpers of the pipeline tests (a module of its own: `conftest` is not importable by name)."""
from __future__ import annotations

from datetime import datetime, timezone

OWNER = "11111111-1111-4111-8111-111111111111"
OTHER = "22222222-2222-4222-8222-222222222222"
FROZEN = datetime(2026, 11, 1, 9, 30, tzinfo=timezone.utc)


def run(service, machine, **kw) -> dict:
    """Start a job and wait for its execution; returns the job row."""
    job = service.jobs.start_job(OWNER, **kw)
    machine.wait(job["execution_arn"], timeout=300)
    return service.reading.get_job(OWNER, str(job["id"]))
