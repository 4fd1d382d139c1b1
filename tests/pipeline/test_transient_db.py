"""Issue 9 item 7: connection and pooler errors from psycopg are TransientError, so the state
machine retries them instead of failing the job."""
from __future__ import annotations

import socket
import uuid

import psycopg
import pytest
from psycopg import sql

from pipekit import run
from lorafiles.db.connect import Database
from lorafiles.errors import TransientError
from lorafiles.runtime import use_service
from lorafiles.service import TrainingFileService


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_transient():
    db = Database(f"postgresql://nobody@127.0.0.1:{_free_port()}/nothing", connect_timeout=2)
    with pytest.raises(TransientError) as info:
        with db.connection() as conn:
            conn.execute("select 1")
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


def test_a_role_at_its_connection_limit_is_transient(pg_admin_url, db_url):
    """What a pooler or server answers when it is full (SQLSTATE 53300)."""
    role = f"limited_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("create role {} login connection limit 0").format(sql.Identifier(role)))
    try:
        url = psycopg.conninfo.make_conninfo(db_url, user=role)
        with pytest.raises(TransientError):
            with Database(url).connection() as conn:
                conn.execute("select 1")
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("drop role {}").format(sql.Identifier(role)))


def test_a_connection_killed_mid_job_is_retried_and_the_job_succeeds(db_url, settings, machine, make_conversations,
                                                                     service):
    ids = make_conversations(4)
    # production wiring: one kept connection per container (Database(reuse=True)), no test wrapper
    db = Database(db_url, reuse=True)
    svc = TrainingFileService(db, service.store, settings, machine, clock=service.ctx.clock)
    use_service(svc)
    killed = []

    def kill_connections(name, payload):
        if name == "append-batch" and not killed:
            # the server (or the pooler in front of it) drops every session, the kept idle one included
            with psycopg.connect(db_url, autocommit=True) as admin:
                killed.extend(admin.execute(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = current_database() and pid <> pg_backend_pid()").fetchall())

    machine.fault = kill_connections
    try:
        job = run(svc, machine, kind="create", conversation_ids=ids, name="Survives a dropped connection")
    finally:
        use_service(service)
        db.close()
    assert killed, "the fault ran"
    assert job["status"] == "succeeded", job["error"]
    appends = [n for n, _ in machine.invocations if n == "append-batch"]
    assert len(appends) == 2  # the first attempt hit the dead connection; Step Functions retried it
