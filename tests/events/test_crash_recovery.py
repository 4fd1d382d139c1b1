"""Issue 9 item 6: crash recovery a user can follow.

* a `lorafiles` process killed in the middle of a job: the next command says what happened and
  how to recover, and `lorafiles reap` recovers at once (its process is gone: no 30-minute wait);
* in AWS the reaper asks Step Functions (DescribeExecution) and compensates a job whose
  execution is no longer running;
* the reaper removes the temporary files and the unreferenced fragments a crash leaves behind."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3

from eventkit import OWNER, World

from lorafiles.config import LOCAL_OWNER, Settings
from lorafiles.db.connect import Database
from lorafiles.domain.samples import write_sample_dir
from lorafiles.maintenance import Maintenance
from lorafiles.service import INPUT_BUCKET, OUTPUT_BUCKET, TrainingFileService


def _cli_env(home: Path, db_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("LORAFILES_STORAGE", "LORAFILES_STORAGE_ROOT", "LORAFILES_OWNER", "LORAFILES_STATE_MACHINE_ARN")}
    env.update(LORAFILES_HOME=str(home), DATABASE_URL=db_url)
    return env


def _cli(args: list[str], home: Path, db_url: str) -> tuple[int, str, str]:
    proc = subprocess.run([str(Path(sys.executable).parent / "lorafiles"), *args], env=_cli_env(home, db_url),
                          capture_output=True, text=True, timeout=180)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def _job(db: Database) -> dict:
    with db.connection() as conn:
        return conn.execute("select * from lora_training_jobs order by created_at desc limit 1").fetchone()


def test_a_killed_local_run_is_explained_by_the_next_command_and_reaped_at_once(db_url: str, tmp_path: Path):
    home = tmp_path / "home"
    write_sample_dir(tmp_path / "in", 14, seed=91)
    assert _cli(["import", str(tmp_path / "in")], home, db_url)[0] == 0
    db = Database(db_url)
    settings = Settings(home=home, storage="local")
    service = TrainingFileService(db, settings.store(), settings)
    with db.connection() as conn:
        rows = conn.execute("select conversation_id, enriched_file_path from conversations order by created_at, "
                            "conversation_id").fetchall()
    ids = [r["conversation_id"] for r in rows]
    # the last conversation's enriched file blocks whoever reads it (a named pipe): the run hangs
    # in its second batch, after the first batch was staged
    hung = settings.local_storage_root / INPUT_BUCKET / rows[-1]["enriched_file_path"]
    hung.unlink()
    os.mkfifo(hung)

    proc = subprocess.Popen([str(Path(sys.executable).parent / "lorafiles"), "create", "Killed midway",
                             "--conversations", *ids], env=_cli_env(home, db_url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            job = _job(db)
            if job is not None and job["completed_batches"]:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the job never staged its first batch")
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    job = _job(db)
    job_id, file_id = str(job["id"]), str(job["file_id"])
    assert job["status"] == "running"
    staged = service.store.list(OUTPUT_BUCKET, f"{LOCAL_OWNER}/{file_id}/fragments/")
    assert staged  # the first batch's fragments
    # a crash between writing a fragment and staging it leaves an unreferenced one behind
    orphan = f"{LOCAL_OWNER}/{file_id}/fragments/{ids[-2]}/0123456789abcdef0123.json"
    service.store.put(OUTPUT_BUCKET, orphan, b"{}")
    hung.unlink()

    # any next command says what happened and how to recover
    code, out, err = _cli(["list"], home, db_url)
    assert code == 0
    assert job_id in err and "interrupted" in err and "lorafiles reap" in err
    assert str(proc.pid) in err

    # reap does not wait for the 30-minute timeout: the process that ran the job is gone
    code, out, err = _cli(["reap", "--json"], home, db_url)
    assert code == 0, err
    [reaped] = json.loads(out)
    assert reaped["job_id"] == job_id and reaped["compensated"]
    assert "gone" in reaped["cause"] or "exited" in reaped["cause"]
    job = service.reading.get_job(LOCAL_OWNER, job_id)
    assert job["status"] == "failed" and job["step"] == "compensated"
    assert service.reading.list_files(LOCAL_OWNER) == []  # the name is free again
    assert service.store.list(OUTPUT_BUCKET, f"{LOCAL_OWNER}/{file_id}/") == []  # no fragment left
    # and the next command has nothing more to say
    code, out, err = _cli(["list"], home, db_url)
    assert "interrupted" not in err


def test_reaper_compensates_a_job_whose_aws_execution_ended(world: World, maintenance: Maintenance):
    """In AWS: DescribeExecution says the execution is no longer running (e.g. the EventBridge
    notification was lost): the job is reaped now, not after LORAFILES_JOB_TIMEOUT_SECONDS."""
    from lorafiles.pipeline.aws import StepFunctionsStarter

    c0, c1, c2 = world.conversations(3)
    a = world.create("Holder", [c0, c1])
    # a real (moto) Step Functions execution that FAILED
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    sm = client.create_state_machine(name="ended-elsewhere", roleArn="arn:aws:iam::123456789012:role/x",
                                     definition=json.dumps({"StartAt": "F", "States": {"F": {"Type": "Fail",
                                                            "Error": "States.Runtime", "Cause": "lost"}}}))
    arn = client.start_execution(stateMachineArn=sm["stateMachineArn"], name="ended")["executionArn"]
    for _ in range(100):
        if client.describe_execution(executionArn=arn)["status"] != "RUNNING":
            break
        time.sleep(0.05)
    assert client.describe_execution(executionArn=arn)["status"] == "FAILED"
    with world.service.db.connection() as conn:
        job = conn.execute("""insert into lora_training_jobs (owner_id, file_id, kind, status, step, requested_ids,
                                                               idempotency_key, execution_arn, base_version)
                              values (%s, %s, 'add', 'running', 'append', %s, 'aws-ended', %s, 1) returning *""",
                           (OWNER, a, [c2], arn)).fetchone()
    maintenance.service.ctx.starter = StepFunctionsStarter(sm["stateMachineArn"], client=client)
    assert maintenance.settings.job_timeout_seconds == 1800
    [reaped] = maintenance.reap_stuck()
    assert reaped["job_id"] == str(job["id"]) and reaped["compensated"]
    assert "FAILED" in reaped["cause"]
    again = world.service.reading.get_job(OWNER, str(job["id"]))
    assert again["status"] == "failed" and again["step"] == "compensated"


def test_reaper_leaves_a_running_aws_execution_alone(world: World, maintenance: Maintenance):
    from lorafiles.pipeline.aws import StepFunctionsStarter

    c0, c1 = world.conversations(2)
    a = world.create("Busy", [c0])
    client = boto3.client("stepfunctions", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    sm = client.create_state_machine(name="still-running", roleArn="arn:aws:iam::123456789012:role/x",
                                     definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Wait",
                                                            "Seconds": 60, "End": True}}}))
    arn = client.start_execution(stateMachineArn=sm["stateMachineArn"], name="running")["executionArn"]
    with world.service.db.connection() as conn:
        conn.execute("""insert into lora_training_jobs (owner_id, file_id, kind, status, step, requested_ids,
                                                        idempotency_key, execution_arn, base_version)
                        values (%s, %s, 'add', 'running', 'append', %s, 'aws-running', %s, 1)""", (OWNER, a, [c1], arn))
    maintenance.service.ctx.starter = StepFunctionsStarter(sm["stateMachineArn"], client=client)
    assert maintenance.reap_stuck() == []
    client.stop_execution(executionArn=arn)


def test_reaper_removes_temporary_files_left_by_dead_processes(world: World, maintenance: Maintenance, tmp_path):
    from lorafiles import cleanup

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = world.service.settings.local_storage_root
    leftovers = [root / OUTPUT_BUCKET / "x" / f".lorafiles-tmp-{dead.pid}-abc",
                 root / INPUT_BUCKET / f".lorafiles-tmp-{dead.pid}-def"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"partial")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    live_tmp = root / OUTPUT_BUCKET / "x" / f".lorafiles-tmp-{os.getpid()}-live"
    live_tmp.write_bytes(b"being written")
    with cleanup.scratch_dir(base=scratch) as mine:  # this process's own, in use
        dead_dir = scratch / f"{cleanup.SCRATCH_PREFIX}{dead.pid}-q1w2e3"
        dead_dir.mkdir()
        (dead_dir / "training.json").write_bytes(b"half a file")
        removed = maintenance.sweep_leftovers(scratch_base=scratch)
        assert Path(mine).is_dir()
    assert not any(p.exists() for p in leftovers) and not dead_dir.exists()
    assert live_tmp.exists()
    assert {str(p) for p in leftovers} | {str(dead_dir)} <= set(removed)


def test_compensation_removes_fragments_a_crash_left_unreferenced(world: World, maintenance: Maintenance, faults):
    """A crash between writing a batch's fragments and staging them leaves fragments no row names."""
    c0, c1, c2 = world.conversations(3)
    a = world.create("Keeps its fragments", [c0, c1])
    kept = set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/"))
    orphan = f"{OWNER}/{a}/fragments/{c2}/ffffffffffffffffffff.json"

    def crash_after_writing(payload):
        world.service.store.put(OUTPUT_BUCKET, orphan, b"{}")  # what the crashed attempt wrote
        raise RuntimeError("crashed after writing a fragment")

    faults.hooks["append-batch"] = crash_after_writing
    job = world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c2], file_id=a)
    world.machine.wait(job["execution_arn"], timeout=120)
    assert world.service.reading.get_job(OWNER, str(job["id"]))["step"] == "compensated"
    assert set(world.service.store.list(OUTPUT_BUCKET, f"{OWNER}/{a}/")) == kept


def test_a_new_scratch_dir_removes_the_one_a_timed_out_invocation_left(tmp_path):
    """Lambda: a timed-out invocation's runtime restarts (often with the same pid) and keeps /tmp."""
    from lorafiles import cleanup

    stale = tmp_path / f"{cleanup.SCRATCH_PREFIX}{os.getpid()}-left"  # this pid, but nobody uses it
    stale.mkdir()
    (stale / "training.json").write_bytes(b"half")
    with cleanup.scratch_dir(base=tmp_path) as mine:
        assert not stale.exists() and Path(mine).is_dir()
    assert not Path(mine).exists()
