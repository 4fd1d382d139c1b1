"""HTTP API fixtures: the local server (lorafiles.api.local_server) on 127.0.0.1 with a random
port, over a fresh migrated database (tests/conftest.py `db`), a temporary local storage root and
the production state machine in moto (LocalStateMachine) — the same stack as `lorafiles serve`.

Tokens: ES256 and RS256 keys published in a static JWKS, and a legacy HS256 secret, all for the
issuer ISSUER, like a Supabase project's.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apikit import Api, Keys, make_verifier
from lorafiles.api.local_server import LocalApiServer
from lorafiles.config import Settings
from lorafiles.pipeline.local import LocalStateMachine
from lorafiles.runtime import use_service
from lorafiles.service import TrainingFileService
from lorafiles.storage import LocalObjectStore


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(ec=ec.generate_private_key(ec.SECP256R1()), rsa=rsa.generate_private_key(65537, 2048))


@pytest.fixture
def api(db, tmp_path: Path, keys: Keys) -> Iterator[Api]:
    settings = Settings(home=tmp_path / "home", storage_root=tmp_path / "storage", batch_size=2)
    store = LocalObjectStore(settings.local_storage_root)
    with LocalStateMachine(retry_scale=0.01) as machine:
        service = TrainingFileService(db, store, settings, machine)
        server = LocalApiServer(service, verifier=make_verifier(keys), signing_key=b"test-signing-key-0123456789",
                                port=0, quiet=True)
        try:
            with server:
                yield Api(server.base_url, server, service, machine, keys, tmp_path)
                _wait_idle(service)
        finally:
            use_service(None)


def _wait_idle(service: TrainingFileService, timeout: float = 60) -> None:
    """Let jobs started by a test finish before the state machine and the database go away; a job
    still active after `timeout` seconds fails the test (naming the jobs), it is not ignored."""
    deadline = time.monotonic() + timeout
    while True:
        with service.db.connection() as conn:
            active = conn.execute("select id, kind, status, step from lora_training_jobs"
                                  " where status in ('queued', 'running') order by created_at").fetchall()
        if not active:
            return
        if time.monotonic() >= deadline:
            pytest.fail(f"{len(active)} job(s) still active {timeout:.0f} s after the test: "
                        + ", ".join(f"{j['id']} ({j['kind']}, {j['status']}, step {j['step']})" for j in active))
        time.sleep(0.1)


class Gate(threading.Event):
    """Holds append-batch invocations (of the batch indexes in `batches`, default all) until set.
    A batch held longer than `hold` seconds fails that batch and, at teardown, the test."""

    batches: set[int] | None = None
    hold: float = 60.0
    expired: list[dict]

    def __init__(self) -> None:
        super().__init__()
        self.expired = []


@pytest.fixture
def gate(api: Api) -> Iterator[Gate]:
    """Keeps a job running on purpose: see Gate."""
    event = Gate()

    def fault(function: str, payload: dict) -> None:
        if function == "append-batch" and (event.batches is None or payload.get("batch_index") in event.batches):
            if not event.wait(event.hold):
                event.expired.append(payload)
                raise TimeoutError(f"the test's gate held {function} {payload} for {event.hold:.0f} s "
                                   "without releasing it")

    api.machine.fault = fault
    yield event
    event.set()
    api.machine.fault = None
    if event.expired:
        pytest.fail(f"the gate timed out holding {len(event.expired)} batch(es): {event.expired}")
