"""Benchmark: the worst-case Step Functions state payloads and stored job errors (issue 9, item 2).

    .venv/bin/python bench/worst_case.py [--members N] [--pairs P] [--keep]

Every job runs through the production state machine (infra/state-machine.asl.json) in moto with the
real handlers, over a throwaway PostgreSQL and local storage (bench/_benchlib.py). For each job it
prints:

* **largest state payload**: the largest value AWS would hold against its 256 KiB limit, over
  every event of the execution history (each state's input and output, each task's error
  `Cause`, the execution's own error) and every Lambda request and response the runner
  dispatched (an error response is the Lambda `Cause`);
* **largest job error**: the size of the error recorded on the job row (`lora_training_jobs.error`,
  JSON);
* how the job ended (status/step) and whether AWS would have failed the execution with the
  uncatchable `States.DataLimitExceeded` (payload > 256 KiB), leaving the job `running`.

Jobs:

1. `create-80 many errors`: 80 conversations whose enriched files each hold P pairs (default 400)
   with 1,000-character pair ids, no `quality_score` and reversed turn numbers (every pair is an
   error, and each error message quotes the pair id), imported valid and then overwritten in
   storage, as the enrichment service could.
2. `create-80 many warnings`: 80 conversations that are valid but carry every warning on many
   pairs (truncated targets with long ids, double-escaped newlines, role-less history).
3. `regenerate N all members`: a file of N members (default 5,000 small conversations, seeded
   through the service's own steps as bench/add_scaling.py does), rebuilt as a new version from
   every member: the Map input grows with the number of batches.
4. `regenerate N ineligible`: the same file after every member's conversation stopped being
   `completed` (re-enrichment under way): the validate step blocks every member.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

os.environ.setdefault("LOG_LEVEL", "CRITICAL")  # the handlers' step-failure warnings would drown the figures
logging.getLogger("moto").setLevel(logging.CRITICAL)  # moto's interpreter logs every failed task in full
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import OWNER, table, throwaway_database, throwaway_home, wired_service  # noqa: E402

LIMIT = 256 * 1024  # Step Functions: state input/output, task results and errors
_SIZED_KEYS = ("input", "output", "cause", "error", "parameters")


class PayloadMeter:
    """Largest request/response of the in-process Lambda invocations (wraps the machine's dispatch)."""

    def __init__(self, machine: Any) -> None:
        self.largest: tuple[int, str] = (0, "-")
        inner = machine._dispatch

        def measured(function_name: str, body: Any, response_headers: dict) -> bytes:
            name = function_name.rsplit(":", 1)[-1].removeprefix("lorafiles-local-")
            self._see(len(body or b""), f"{name} request")
            out = inner(function_name, body, response_headers)
            kind = "error" if response_headers.get("x-amz-function-error") else "result"
            self._see(len(out), f"{name} {kind}")
            return out

        machine._dispatch = measured

    def _see(self, size: int, what: str) -> None:
        if size > self.largest[0]:
            self.largest = (size, what)

    def reset(self) -> None:
        self.largest = (0, "-")


def largest_history_value(machine: Any, execution_arn: str) -> tuple[int, str]:
    """(bytes, where) of the largest input/output/cause in the execution history."""
    best: tuple[int, str] = (0, "-")
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = machine.client.get_execution_history(**kwargs)
        for event in page["events"]:
            for key, details in event.items():
                if not key.endswith("EventDetails") or not isinstance(details, dict):
                    continue
                for field in _SIZED_KEYS:
                    value = details.get(field)
                    if isinstance(value, str) and len(value.encode()) > best[0]:
                        where = details.get("name") or event["type"]
                        best = (len(value.encode()), f"{event['type']}.{field} ({where})")
        if not page.get("nextToken"):
            return best
        kwargs["nextToken"] = page["nextToken"]


# ------------------------------------------------------------------ adversarial inputs
def many_errors_doc(seed: str, pairs: int) -> bytes:
    """A v4 file in which every pair is an error that quotes a long pair id."""
    from lorafiles.domain.samples import generate_conversation

    doc = generate_conversation(seed, turns=2)
    template = doc["training_pairs"][1]
    template.update(system_prompt="You are a careful financial planning assistant.", conversation_history=[],
                    current_user_input="What should I do first?", target_response="Let's start with the basics.")
    template["training_metadata"].pop("quality_score", None)
    out = []
    for i in range(pairs):
        pair = orjson.loads(orjson.dumps(template))
        pair["id"] = f"{'x' * 1000}-{i}"
        pair["turn_number"] = pairs - i
        out.append(pair)
    doc["training_pairs"] = out
    return orjson.dumps(doc)


def many_warnings_doc(seed: str, pairs: int) -> bytes:
    """A valid v4 file whose every target pair triggers a warning quoting a long pair id."""
    from lorafiles.domain.samples import generate_conversation

    doc = generate_conversation(seed, turns=2, quirks=("history_without_role",))
    user, assistant = doc["training_pairs"][0], doc["training_pairs"][1]
    out = []
    for i in range(pairs // 2):
        u = orjson.loads(orjson.dumps(user))
        a = orjson.loads(orjson.dumps(assistant))
        u["turn_number"], a["turn_number"] = 2 * i + 1, 2 * i + 2
        a["id"] = f"{'w' * 1000}-{i}"
        a["target_response"] = "A line\\nthat was double escaped and then cut \\"
        a["conversation_history"] = [{"turn": 1, "content": "no role here"}]
        out += [u, a]
    doc["training_pairs"] = out
    return orjson.dumps(doc)


def import_valid(service: Any, directory: Path, prefix: str, count: int, **kw: Any) -> list[str]:
    from lorafiles.domain.samples import dumps_enriched, generate_conversation

    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = directory / f"{prefix}-{i}.json"
        path.write_bytes(dumps_enriched(generate_conversation(f"{prefix}:{i}", **kw)))
        paths.append(path)
    result = service.importing.import_files(OWNER, paths)
    if result["refused"]:
        raise SystemExit(f"import refused {len(result['refused'])} file(s): {result['refused'][:1]}")
    return [r["conversation_id"] for r in result["imported"]]


def overwrite(service: Any, ids: list[str], make: Any) -> int:
    total = 0
    with service.db.connection() as conn:
        rows = conn.execute("select conversation_id, enriched_file_path from conversations "
                            "where conversation_id = any(%s)", (ids,)).fetchall()
    for row in rows:
        blob = make(row["conversation_id"])
        service.store.put("conversation-files", row["enriched_file_path"], blob)
        total += len(blob)
    return total


def seed_file(service: Any, home: Path, ids: list[str]) -> str:
    """A file holding `ids`, built by the service's own steps with 80-conversation batches."""
    from lorafiles.config import Settings
    from lorafiles.domain.idempotency import canonical_request
    from lorafiles.service import TrainingFileService

    seeder = TrainingFileService(service.db, service.store,
                                 Settings(home=home, storage="local", storage_root=home / "storage", batch_size=80),
                                 starter=None)
    name = f"worst case {len(ids)}"
    job = seeder.jobs._insert_job(OWNER, kind="create", ids=ids, file_id=None, name=name, description=None,
                                  key=f"bench-seed-{uuid.uuid4()}",
                                  request=canonical_request(kind="create", name=name, conversation_ids=ids),
                                  policy=seeder.settings.default_policy())
    job_id = str(job["id"])
    seeder.steps.create_file(job_id)
    for b in range(job["total_batches"]):
        seeder.steps.append_batch(job_id, b)
    return seeder.steps.generate(job_id)["file_id"]


# ------------------------------------------------------------------ measuring one job
def measure(service: Any, machine: Any, meter: PayloadMeter, label: str, start: Any) -> dict[str, Any]:
    meter.reset()
    t0 = time.perf_counter()
    job = start()
    desc = machine.wait(job["execution_arn"], timeout=3600)
    elapsed = time.perf_counter() - t0
    time.sleep(0.5)  # let a runner that compensates after the execution ended finish
    history = largest_history_value(machine, job["execution_arn"])
    largest = max(history, meter.largest)
    row = service.reading.get_job(OWNER, str(job["id"]))
    error_bytes = len(orjson.dumps(row["error"])) if row["error"] is not None else 0
    f = None
    if row["file_id"]:
        with service.db.connection() as conn:
            f = conn.execute("select status from lora_training_files where id = %s", (row["file_id"],)).fetchone()
    return {"job": label, "batches": row["total_batches"], "execution": desc["status"],
            "job status": f"{row['status']}/{row['step']}", "file": f["status"] if f else "-",
            "largest payload": largest[0], "where": largest[1], "job error": error_bytes,
            "over 256 KiB": "YES" if largest[0] > LIMIT else "no", "seconds": f"{elapsed:.1f}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=5000, help="members of the large file to regenerate")
    ap.add_argument("--pairs", type=int, default=400, help="pairs per adversarial enriched file")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway home")
    args = ap.parse_args()
    rows = []
    with throwaway_home(prefix="lorafiles-worst-", keep=args.keep) as home, throwaway_database(home) as url, \
            wired_service(url, home) as (service, machine):
        meter = PayloadMeter(machine)
        inputs = home / "inputs"

        bad = import_valid(service, inputs, "bad", 80, turns=2)
        size = overwrite(service, bad, lambda cid: many_errors_doc(cid, args.pairs))
        print(f"create-80 many errors: 80 files, {size / 1e6:.1f} MB", flush=True)
        rows.append(measure(service, machine, meter, "create-80 many errors", lambda: service.jobs.start_job(
            OWNER, kind="create", conversation_ids=bad, name="worst case: errors")))

        warn = import_valid(service, inputs, "warn", 80, turns=2)
        size = overwrite(service, warn, lambda cid: many_warnings_doc(cid, args.pairs))
        print(f"create-80 many warnings: 80 files, {size / 1e6:.1f} MB", flush=True)
        rows.append(measure(service, machine, meter, "create-80 many warnings", lambda: service.jobs.start_job(
            OWNER, kind="create", conversation_ids=warn, name="worst case: warnings")))

        t0 = time.perf_counter()
        members = import_valid(service, inputs, "member", args.members, turns=2)
        file_id = seed_file(service, home, members)
        print(f"seeded a file of {args.members} members in {time.perf_counter() - t0:.1f} s", flush=True)
        rows.append(measure(service, machine, meter, f"regenerate {args.members} all members",
                            lambda: service.jobs.start_regenerate(OWNER, file_id, only_changed=False)))

        with service.db.connection() as conn:
            conn.execute("update conversations set enrichment_status = 'enrichment_in_progress' where conversation_id = any(%s)",
                         (members,))
        rows.append(measure(service, machine, meter, f"regenerate {args.members} ineligible",
                            lambda: service.jobs.start_regenerate(OWNER, file_id, only_changed=False)))

    cols = ["job", "batches", "execution", "job status", "file", "largest payload", "job error", "over 256 KiB",
            "seconds"]
    print()
    print(table([[f"{r[c]:,}" if isinstance(r[c], int) and c != "batches" else r[c] for c in cols] for r in rows],
                cols, "lrllrrrlr"))
    print()
    for r in rows:
        print(f"{r['job']}: largest payload at {r['where']}")
    print("\nlargest payload and job error in bytes; 'over 256 KiB': AWS would end the execution with the "
          "uncatchable States.DataLimitExceeded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
