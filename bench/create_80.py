"""Benchmark: an 80-conversation `create`, end to end through the production state machine,
against the floor of parsing the same inputs and writing the same outputs with orjson alone.

    .venv/bin/python bench/create_80.py [--runs N] [--keep]

Inputs: the 72 files of ../shared/fixtures/corpus/*.json plus the first 8 (sorted) of
../shared/fixtures/enriched/*.json when ../shared/fixtures exists (relative to the repo root);
otherwise 80 generated conversations of the same average size (generate_conversation with
target_bytes=55_000, seeded). They are imported first (service.import_files, not timed).

Timed ("create"): `service.jobs.start_job(kind="create")` -> the execution's stopDate as recorded by
moto's interpreter (LocalStateMachine.wait polls every 50 ms), with default Settings (batch size,
Map concurrency) and the ASL's real retry settings. The handlers run in this process, over a
throwaway PostgreSQL (embedded under a temp LORAFILES_HOME, or a throwaway database on
$DATABASE_URL's server) and a temp local storage root (which fsyncs the published artifacts, and syncs
the file system once before a version is published; fragments are not fsynced one by one).
Each run starts after os.sync() (untimed), so it does not pay for earlier writeback.

Timed ("floor", best of 3): read + `orjson.loads` of the same 80 input files, then write the
same two outputs to disk with orjson alone: `orjson.dumps(document, OPT_INDENT_2) + b"\\n"`
for the Full JSON and `orjson.dumps(record) + b"\\n"` per JSONL line. The output objects are
taken (untimed) from the artifacts the create just published, and the floor's bytes are
checked to be identical to them, so both sides write exactly the same bytes.

Prints: input and output bytes, create and floor times, the ratio, and a per-step breakdown
(state durations from moto's execution history, and the in-process handler times).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (FIXTURES, MB, OWNER, HandlerTimer, mb, run_job, state_durations, table,  # noqa: E402
                       throwaway_database, throwaway_home, wired_service)


def input_files(tmp: Path) -> tuple[list[Path], str]:
    if FIXTURES.is_dir():
        corpus = sorted((FIXTURES / "corpus").glob("*.json"))
        enriched = sorted((FIXTURES / "enriched").glob("*.json"))[:8]
        return corpus + enriched, f"{len(corpus)} files of {FIXTURES}/corpus + first {len(enriched)} of enriched/"
    from lorafiles.domain.samples import write_sample_dir

    paths = write_sample_dir(tmp / "generated", 80, seed=80, target_bytes=55_000)
    return paths, f"{len(paths)} generated conversations (target_bytes=55_000; {FIXTURES} not found)"


def floor(paths: list[Path], document: object, records: list[object], out_dir: Path) -> float:
    t0 = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            orjson.loads(f.read())
    with open(out_dir / "training.json", "wb") as f:
        f.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    with open(out_dir / "training.jsonl", "wb") as f:
        f.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3,
                    help="creates to run, each a new file of the same 80 (default 3): the first is cold (loads the "
                         "handler modules), the best is reported as warm")
    ap.add_argument("--keep", action="store_true", help="keep the throwaway home (prints its path)")
    args = ap.parse_args()

    with throwaway_home(keep=args.keep) as home, throwaway_database(home) as url, \
            wired_service(url, home) as (service, machine):
        timer = HandlerTimer(machine)
        paths, origin = input_files(home)
        imported = service.importing.import_files(OWNER, paths)
        if imported["refused"]:
            for bad in imported["refused"]:
                print(f"refused at import: {bad['file']}: {[p['code'] for p in bad['problems']]}")
            return 1
        ids = [i["conversation_id"] for i in imported["imported"]]
        in_bytes = sum(p.stat().st_size for p in paths)
        s = service.settings
        print(f"inputs: {origin}")
        print(f"        {len(ids)} conversations, {in_bytes:,} bytes ({mb(in_bytes)})")
        print(f"settings: batch_size={s.batch_size} map_concurrency={s.map_concurrency} "
              f"read_concurrency={s.read_concurrency}; retries as in infra/state-machine.asl.json")
        print(f"database: {'DATABASE_URL (throwaway database)' if 'DATABASE_URL' in os.environ else 'embedded PostgreSQL'}"
              f"; storage: local, {home / 'storage'}")

        best, times = None, []
        for run in range(args.runs):
            timer.reset()
            os.sync()  # untimed: write back what the import / the previous run left dirty
            job, elapsed, desc = run_job(machine, lambda: service.jobs.start_job(
                OWNER, kind="create", conversation_ids=ids, name=f"bench create 80 #{run}"))
            job = service.reading.get_job(OWNER, str(job["id"]))
            if job["status"] != "succeeded":
                print(f"create failed: {desc['status']}: {job['error']}")
                return 1
            times.append(elapsed)
            print(f"create run {run + 1}: {elapsed:.3f} s" + ("  (cold: first invocations load the handlers)" if not run else ""))
            if best is None or elapsed < best[0]:
                best = (elapsed, job, job["execution_arn"], timer.summary())
        elapsed, job, arn, handlers = best
        version = service.reading.artifact(OWNER, str(job["file_id"]), "json")
        with service.db.connection() as conn:
            v = conn.execute("select json_size, jsonl_size from lora_training_file_versions where file_id = %s "
                             "and version = 1", (job["file_id"],)).fetchone()
        out_bytes = v["json_size"] + v["jsonl_size"]

        # the floor's objects: decoded from what the create published (untimed)
        root = service.settings.local_storage_root / "training-files"
        json_bytes = (root / version["key"]).read_bytes()
        jsonl_bytes = (root / version["key"].replace("training.json", "training.jsonl")).read_bytes()
        document = orjson.loads(json_bytes)
        records = [orjson.loads(line) for line in jsonl_bytes.splitlines()]
        with tempfile.TemporaryDirectory(prefix="lorafiles-floor-", dir=home) as tmp:
            floors = [floor(paths, document, records, Path(tmp)) for _ in range(3)]
            same = ((Path(tmp) / "training.json").read_bytes() == json_bytes
                    and (Path(tmp) / "training.jsonl").read_bytes() == jsonl_bytes)
        best_floor = min(floors)

        print()
        print(table([
            ["input", f"{in_bytes:,}", f"{len(ids)} files"],
            ["output", f"{out_bytes:,}", f"json {v['json_size']:,} + jsonl {v['jsonl_size']:,}"],
            ["create, first run (cold)", f"{times[0]:.3f} s", f"{out_bytes / MB / times[0]:,.1f} MB/s written"],
            ["create, best run (warm)", f"{elapsed:.3f} s",
             f"best of {len(times)}; {out_bytes / MB / elapsed:,.1f} MB/s written"],
            ["floor (orjson only)", f"{best_floor:.3f} s",
             "best of 3: " + ", ".join(f"{f:.3f}" for f in floors) + ("" if same else "  (OUTPUT DIFFERS!)")],
            ["ratio create/floor, warm", f"{elapsed / best_floor:,.1f}x",
             "floor output byte-identical to the create's" if same else ""],
            ["ratio create/floor, cold", f"{times[0] / best_floor:,.1f}x", ""],
        ], ["", "value", "notes"], align="lrl"))

        print("\nbreakdown of the best run")
        print("per state (moto execution history, top level):")
        print(table([[n, f"{d:.3f} s"] for n, d in state_durations(machine, arn)], ["state", "duration"]))
        print("\nper handler (in-process Lambda invocations):")
        print(table([[n, c, f"{s:.3f} s", f"{w:.3f} s", f"{s / c:.3f} s"] for n, c, s, w in handlers],
                    ["function", "calls", "sum", "wall", "mean"]))
        if args.keep:
            print(f"\nkept {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
