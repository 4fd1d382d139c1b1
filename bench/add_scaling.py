"""Benchmark: the add-80 scaling series. Adds 80 new conversations, through the production
state machine, to training files that already hold 0, 1,000 and 5,000 conversations, and
reports wall time, peak RSS and bytes written.

    .venv/bin/python bench/add_scaling.py [--sizes 0,1000,5000] [--repeat 3] [--no-tracemalloc] [--keep]

Target (issue 3, item 5): adding 80 to a 5,000-conversation file peaks below 300 MB RSS and its
time grows linearly with the bytes written. This prints whether that holds; it asserts nothing.

How each size runs (the parent only orchestrates and prints the table):
  * Its own throwaway LORAFILES_HOME, storage root and PostgreSQL (the embedded server under
    that home, started by the parent; or a throwaway database on $DATABASE_URL's server).
  * A "seed" subprocess builds the base file (untimed, see below).
  * A fresh "measure" subprocess runs the add and measures it, so peaks do not mix with seeding
    or with other sizes. It loads the handler modules first (what a warm Lambda container
    has), then samples its own VmRSS (/proc/self/status) every 10 ms in a thread during
    `start_job(kind="add")` -> execution finished, and also reads the kernel's VmHWM after
    resetting it (/proc/self/clear_refs). Everything (moto, the Map's worker threads, every
    handler) runs in this one process, so the absolute RSS is an upper bound of any single
    Lambda's.
  * Size 0 means "a file that holds nothing yet": a file cannot exist without members, so the
    0 row is the `create` of the same 80 conversations.

Seeding (honest shortcut, all through the service's own code): the conversations are the seeded
generator's (generate_conversation(target_bytes=50_000), ~50 KB each), written to disk and
imported with `service.import_files` (real conversations rows, real objects in the input
bucket). The base file is then built by the service's own pipeline steps on one crafted job
instead of N/80 separate adds: a `create` job row registered with `service.jobs._insert_job` with
all N ids and batch_size 80, then `steps.create_file`, `steps.append_batch` for every batch (the
real fetch/parse/render/stage of each conversation) and one `steps.generate` (the real publish:
members, fragments, version 1 artifacts). Only `steps.validate` is skipped, because it refuses
selections over 80 (MAX_SELECTION); the Step Functions interpreter is skipped because it adds
nothing to the resulting state. The result is the members, fragments and current version a
series of adds would leave (only the version history is shorter, which the add never reads),
without re-rendering a growing file N/80 times.

Each size is measured `--repeat` times (default 3), every run in a fresh process adding a
different 80 (so run k adds to a file of N+80k); the table shows the median and the best run.
Before each run the measure process calls os.sync(), so it does not pay for the writeback of what
seeding or the previous run left dirty. Per run it prints the state and handler breakdown; at the
end one table and the verdict (the linearity verdict uses the best run of each size: the disk of
a shared VM adds noise that only ever makes a run slower).

With tracemalloc (default on), the last measure process then runs one more add of 80 with
tracemalloc enabled only around `steps.generate` and reports its traced peak (that add is not
part of the timing or of the RSS figures).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (MB, OWNER, HandlerTimer, RssSampler, current_rss, mb, reset_vm_hwm, run_job,  # noqa: E402
                       state_durations, table, throwaway_database, throwaway_home, vm_hwm, wired_service)

NEW = 80            # conversations per add (MAX_SELECTION)
TARGET_BYTES = 50_000
RSS_TARGET = 300 * 1024 * 1024  # 300 MB as Lambda counts it (MiB)


# ------------------------------------------------------------------ seed (child process)
def _write_one(args: tuple[str, str]) -> tuple[str, int]:
    from lorafiles.domain.samples import dumps_enriched, generate_conversation

    seed, directory = args
    doc = generate_conversation(seed, target_bytes=TARGET_BYTES)
    blob = dumps_enriched(doc)
    path = Path(directory) / f"{seed.replace(':', '-')}.json"
    path.write_bytes(blob)
    return str(path), len(blob)


def _generate(directory: Path, seeds: list[str]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return [Path(p) for p, _ in pool.map(_write_one, [(s, str(directory)) for s in seeds], chunksize=50)]


def seed(home: Path, size: int, repeat: int, traced: bool) -> dict[str, Any]:
    from lorafiles.config import Settings
    from lorafiles.domain.idempotency import canonical_request
    from lorafiles.service import TrainingFileService

    url = os.environ["DATABASE_URL"]
    t_start = time.perf_counter()
    n_new = NEW * (repeat + (1 if traced else 0))
    base_seeds = [f"base:{i}" for i in range(size)]
    new_seeds = [f"new:{i}" for i in range(n_new)]
    inputs = home / "inputs"
    paths = _generate(inputs, base_seeds + new_seeds)
    t_gen = time.perf_counter()
    with wired_service(url, home, pipeline=False) as (service, _):
        result = service.importing.import_files(OWNER, paths)
        if result["refused"]:
            raise SystemExit(f"import refused {len(result['refused'])} file(s): {result['refused'][:2]}")
        ids = [r["conversation_id"] for r in result["imported"]]
        input_bytes = sum(p.stat().st_size for p in paths)
        for p in paths:
            p.unlink()
        base_ids, new_ids = ids[:size], ids[size:]
        t_import = time.perf_counter()
        file_id = None
        if size:
            # the same service code, with the staging batch at the per-request cap
            seeder = TrainingFileService(service.db, service.store,
                                         Settings(home=home, storage="local", storage_root=home / "storage",
                                                  batch_size=NEW),
                                         starter=None)
            name = f"bench base {size}"
            job = seeder.jobs._insert_job(OWNER, kind="create", ids=base_ids, file_id=None, name=name,
                                          description=None, key=f"bench-seed-{uuid.uuid4()}",
                                          request=canonical_request(kind="create", name=name,
                                                                    conversation_ids=base_ids),
                                          policy=seeder.settings.default_policy())
            job_id = str(job["id"])
            seeder.steps.create_file(job_id)
            for b in range(job["total_batches"]):
                seeder.steps.append_batch(job_id, b)
            t_staged = time.perf_counter()
            published = seeder.steps.generate(job_id)
            file_id = published["file_id"]
            shown = service.reading.show_file(OWNER, file_id)
            assert shown["file"]["conversation_count"] == size, shown["file"]["conversation_count"]
        else:
            t_staged = time.perf_counter()
        t_end = time.perf_counter()
    out = {"file_id": file_id, "new_ids": new_ids, "input_bytes": input_bytes,
           "seed_generate_s": t_gen - t_start, "seed_import_s": t_import - t_gen,
           "seed_stage_s": t_staged - t_import, "seed_publish_s": t_end - t_staged, "seed_total_s": t_end - t_start}
    print(f"  seeded {size}: generate {out['seed_generate_s']:.1f} s, import {out['seed_import_s']:.1f} s, "
          f"stage {out['seed_stage_s']:.1f} s, publish v1 {out['seed_publish_s']:.1f} s "
          f"({len(ids)} conversations imported, {mb(input_bytes)})", flush=True)
    return out


# ------------------------------------------------------------------ measure (fresh child process)
def measure(home: Path, size: int, seeded: dict[str, Any], run: int, traced: bool) -> dict[str, Any]:
    from lorafiles.pipeline.local import FUNCTIONS, load_handler

    url = os.environ["DATABASE_URL"]
    os.sync()  # write back what seeding / the previous run left dirty, so this run does not pay for it
    for fn in FUNCTIONS.values():  # a warm container: handler modules (Powertools, pydantic, lorafiles) loaded
        load_handler(fn)
    gc.collect()
    rss_handlers = current_rss()  # what one Lambda container holds before it works (all five handlers)
    with wired_service(url, home) as (service, machine):
        rss_moto = current_rss() - rss_handlers  # moto's mock_aws + Step Functions interpreter: local only
        timer = HandlerTimer(machine)
        new_ids = seeded["new_ids"][run * NEW:(run + 1) * NEW]
        kind = "add" if size else "create"
        members_before = 0
        if kind == "add":
            with service.db.connection() as conn:
                members_before = conn.execute("select conversation_count from lora_training_files where id = %s",
                                              (seeded["file_id"],)).fetchone()["conversation_count"]

        def start() -> dict[str, Any]:
            if kind == "add":
                return service.jobs.start_job(OWNER, kind="add", file_id=seeded["file_id"], conversation_ids=new_ids)
            return service.jobs.start_job(OWNER, kind="create", conversation_ids=new_ids, name=f"bench size 0 #{run}")

        gc.collect()
        hwm_reset = reset_vm_hwm()
        with RssSampler(0.01) as rss:
            job, elapsed, desc = run_job(machine, start)
        hwm = vm_hwm() if hwm_reset else None
        job = service.reading.get_job(OWNER, str(job["id"]))
        if job["status"] != "succeeded":
            raise SystemExit(f"{kind} failed: {desc['status']}: {job['error']}")
        file_id = str(job["file_id"])
        with service.db.connection() as conn:
            v = conn.execute("select * from lora_training_file_versions"
                             " where file_id = %s and version = %s", (file_id, job["published_version"])).fetchone()
        handlers = timer.summary()
        states = state_durations(machine, job["execution_arn"])
        gen_span = timer.spans["generate-jsonl"][-1]
        append_spans = timer.spans["append-batch"]
        res: dict[str, Any] = {
            "size": size, "run": run, "members_before": members_before, "kind": kind, "elapsed_s": elapsed,
            "version": v["version"],
            "conversations_after": v["conversation_count"], "json_size": v["json_size"], "jsonl_size": v["jsonl_size"],
            "written": v["json_size"] + v["jsonl_size"],
            # every artifact of the version (v4 + trainer exports, report, manifest) when it has them
            "written_all": sum(a["size"] for a in (v.get("artifacts") or {}).values()) or v["json_size"] + v["jsonl_size"],
            "rss_baseline": rss.baseline, "rss_peak": rss.peak,
            "rss_samples": len(rss.samples), "vm_hwm": hwm,
            "rss_peak_generate": rss.peak_between(*gen_span),
            "rss_peak_append": rss.peak_between(min(s for s, _ in append_spans), max(e for _, e in append_spans)),
            "generate_s": gen_span[1] - gen_span[0], "states": states,
            "generate_user_s": timer.cpu["generate-jsonl"][-1][0], "generate_sys_s": timer.cpu["generate-jsonl"][-1][1],
            "rss_handlers": rss_handlers, "rss_moto": rss_moto,
            "handlers": handlers,
        }
        print(f"  run {run + 1}: {kind} of {NEW} to a file of {members_before}: {elapsed:.2f} s, wrote {mb(res['written'])}, "
              f"RSS {mb(rss.baseline)} -> peak {mb(rss.peak)} ({len(rss.samples)} samples; handlers loaded "
              f"{mb(rss_handlers)}, moto adds {mb(rss_moto)})", flush=True)
        print("    per state: " + ", ".join(f"{n} {d:.2f} s" for n, d in states)
              + f"; generate CPU user {res['generate_user_s']:.2f} s sys {res['generate_sys_s']:.2f} s", flush=True)
        print("    per handler: " + ", ".join(f"{n} {c}x sum {s:.2f} s wall {w:.2f} s" for n, c, s, w in handlers),
              flush=True)

        if traced:
            import tracemalloc

            inner = service.steps.generate
            traced_peak: dict[str, int] = {}

            def traced_generate(job_id: str) -> dict[str, Any]:
                tracemalloc.start()
                try:
                    return inner(job_id)
                finally:
                    traced_peak["peak"] = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()

            service.steps.generate = traced_generate  # the handler calls get_service().steps.generate
            job2 = service.jobs.start_job(OWNER, kind="add", file_id=file_id,
                                     conversation_ids=seeded["new_ids"][(run + 1) * NEW:(run + 2) * NEW])
            machine.wait(job2["execution_arn"], timeout=7200, poll=0.01)
            job2 = service.reading.get_job(OWNER, str(job2["id"]))
            if job2["status"] != "succeeded":
                raise SystemExit(f"traced add failed: {job2['error']}")
            res["tracemalloc_generate_peak"] = traced_peak.get("peak")
            print(f"    then an add traced with tracemalloc (file at {v['conversation_count']}): peak of step_generate "
                  f"{mb(traced_peak.get('peak', 0))}", flush=True)
    return res


# ------------------------------------------------------------------ parent
def child(role: str, home: Path, size: int, repeat: int, run: int, traced: bool, url: str) -> dict[str, Any]:
    env = {**os.environ, "DATABASE_URL": url, "LORAFILES_HOME": str(home)}
    cmd = [sys.executable, __file__, "--child", role, "--home", str(home), "--size", str(size),
           "--repeat", str(repeat), "--run", str(run)]
    if not traced:
        cmd.append("--no-tracemalloc")
    subprocess.run(cmd, env=env, check=True)
    return json.loads((home / f"{role}-{run}.json").read_text())


def median(values: list[float]) -> float:
    v = sorted(values)
    return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2


def fit(points: list[tuple[float, float]]) -> tuple[float, float, float]:
    """Least squares t = a + b*x; returns (a, b, r2)."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for _, y in points)
    ss_res = sum((y - (a + b * x)) ** 2 for x, y in points)
    return a, b, 1 - ss_res / ss_tot if ss_tot else 1.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,1000,5000", help="comma-separated member counts (default 0,1000,5000)")
    ap.add_argument("--no-tracemalloc", dest="traced", action="store_false",
                    help="skip the extra add traced with tracemalloc")
    ap.add_argument("--repeat", type=int, default=3,
                    help="adds measured per size, each in a fresh process (default 3); medians are reported")
    ap.add_argument("--keep", action="store_true", help="keep each size's throwaway home")
    ap.add_argument("--child", choices=("seed", "measure"), help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        home = Path(args.home)
        if args.child == "seed":
            out = seed(home, args.size, args.repeat, args.traced)
        else:
            seeded = json.loads((home / "seed-0.json").read_text())
            out = measure(home, args.size, seeded, args.run, args.traced and args.run == args.repeat - 1)
        (home / f"{args.child}-{args.run}.json").write_text(json.dumps(out, default=str))
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"add-{NEW} scaling series, sizes {sizes}; ~{TARGET_BYTES // 1000} KB generated conversations; "
          f"{os.cpu_count()} CPUs; database: "
          f"{'throwaway database on $DATABASE_URL' if os.environ.get('DATABASE_URL') else 'embedded PostgreSQL'}",
          flush=True)
    results = []
    for size in sizes:
        print(f"\n== file of {size} conversations", flush=True)
        with throwaway_home(prefix=f"lorafiles-bench-add{size}-", keep=args.keep) as home, \
                throwaway_database(home) as url:
            seeded = child("seed", home, size, args.repeat, 0, args.traced, url)
            runs = [child("measure", home, size, args.repeat, r, args.traced, url) for r in range(args.repeat)]
            res = {**runs[-1], **{k: v for k, v in seeded.items() if k.startswith("seed_")}, "runs": runs}
            for key in ("elapsed_s", "generate_s", "written", "rss_baseline", "rss_moto", "members_before",
                        "conversations_after"):
                res[key] = median([r[key] for r in runs])
            fastest = min(runs, key=lambda r: r["elapsed_s"])
            res["best"] = {k: fastest[k] for k in ("elapsed_s", "generate_s", "written", "generate_user_s",
                                                   "generate_sys_s")}
            for key in ("generate_user_s", "generate_sys_s"):
                res[key] = median([r[key] for r in runs])
            for key in ("rss_peak", "rss_peak_generate"):
                res[key] = max(r[key] for r in runs)
            res["vm_hwm"] = max((r["vm_hwm"] or 0) for r in runs) or None
            res["elapsed_all"] = [r["elapsed_s"] for r in runs]
            results.append(res)
            if args.keep:
                print(f"  kept {home}")

    print(f"\nadd-80 scaling: median of {args.repeat} add(s) per size, each in a fresh process; RSS columns are the max "
          f"over the runs, of that whole process (moto included)")
    rows = []
    for r in results:
        hwm = mb(r["vm_hwm"]) if r["vm_hwm"] else "n/a"
        rows.append([
            f"{r['size']:,}" + (" (create)" if r["kind"] == "create" else ""), f"{r['conversations_after']:,.0f}",
            mb(r["written"]), f"{r['elapsed_s']:.2f} s", f"{r['best']['elapsed_s']:.2f} s",
            "/".join(f"{e:.2f}" for e in r["elapsed_all"]),
            f"{r['elapsed_s'] / (r['written'] / MB):.3f}",
            f"{r['generate_s']:.2f} s", f"{r['generate_s'] / (r['written'] / MB):.3f}",
            f"{r['generate_user_s']:.2f}/{r['generate_sys_s']:.2f}",
            mb(r["rss_baseline"]), mb(r["rss_peak"]), mb(r["rss_peak"] - r["rss_baseline"]), hwm,
            mb(r["rss_peak_generate"]), mb(max(r["rss_peak"], r["vm_hwm"] or 0) - r["rss_moto"]),
            mb(r["tracemalloc_generate_peak"]) if r.get("tracemalloc_generate_peak") is not None else "-",
        ])
    print(table(rows, ["members before", "after", "written", "add median", "add best", "runs (s)", "s/MB", "generate",
                       "gen s/MB", "gen usr/sys",
                       "RSS before", "RSS peak", "peak delta", "VmHWM", "peak in gen", "peak - moto",
                       "tracemalloc gen"]))
    print("  members before = as seeded (run k adds to a file of members+80*k); after, written = medians;\n"
          "  add = start_job -> execution stopDate (median and best of the runs; runs = each run's);\n"
          "  written = json_size + jsonl_size of the new version; s/MB = median add seconds per MB written;\n"
          "  generate = median generate-jsonl invocation; gen usr/sys = its process CPU seconds, user / kernel;\n"
          "  RSS before = just before start_job (handlers loaded, moto running);\n"
          "  peak delta = peak - before; VmHWM = kernel peak since reset; peak in gen = sampled peak during generate;\n"
          "  peak - moto = max(peak, VmHWM) minus what opening moto's mock_aws cost (an estimate of one process\n"
          "  without the local Step Functions emulation); tracemalloc gen = Python allocations peak of\n"
          "  step_generate in one more add, traced, after the measured runs.")
    print("\nseeding (untimed for the add; for reference)")
    print(table([[f"{r['size']:,}", f"{r['seed_generate_s']:.1f} s", f"{r['seed_import_s']:.1f} s",
                  f"{r['seed_stage_s']:.1f} s", f"{r['seed_publish_s']:.1f} s", f"{r['seed_total_s']:.1f} s"]
                 for r in results], ["members", "generate", "import", "stage", "publish v1", "total"]))

    print("\nverdict (issue 3 item 5; printed, not asserted)")
    largest = max(results, key=lambda r: r["size"])
    peak = max(largest["rss_peak"], largest["vm_hwm"] or 0)
    print(f"  peak RSS of the add to {largest['size']:,}: {mb(peak)} ({peak / 2**20:,.0f} MiB) for the whole process -> "
          f"{'below' if peak < RSS_TARGET else 'NOT below'} 300 MiB; without moto about "
          f"{mb(peak - largest['rss_moto'])}" + ("" if largest["size"] >= 5000 else " (the target is stated for 5,000)"))
    growth = largest["rss_peak"] - largest["rss_baseline"]
    small = min(results, key=lambda r: r["size"])
    print(f"  peak delta: {mb(small['rss_peak'] - small['rss_baseline'])} at {small['size']:,} vs {mb(growth)} at "
          f"{largest['size']:,} members (memory {'does not grow' if growth < 2 * max(small['rss_peak'] - small['rss_baseline'], 20 * MB) else 'GROWS'} with the file's size)")
    if len(results) >= 2:
        ordered = sorted(results, key=lambda r: r["written"])
        for label, key in (("median", None), ("best", "best")):
            src = [(r[key] if key else r) for r in ordered]
            a, b, r2 = fit([(x["written"] / MB, x["elapsed_s"]) for x in src])
            ga, gb, gr2 = fit([(x["written"] / MB, x["generate_s"]) for x in src])
            print(f"  {label:>6} runs: add = {a:.2f} s + {b * 1000:.2f} ms/MB (R^2 {r2:.3f}); "
                  f"generate = {ga:.2f} s + {gb * 1000:.2f} ms/MB (R^2 {gr2:.3f})")
        per_mb = [(r["size"], r["best"]["generate_s"] / (r["best"]["written"] / MB)) for r in ordered]
        print("  generate ms per MB written (best run): " + ", ".join(f"{n:,}: {x * 1000:.2f}" for n, x in per_mb))
        print("  add ms per MB written (best run): " + ", ".join(
            f"{r['size']:,}: {r['best']['elapsed_s'] / (r['best']['written'] / MB) * 1000:.2f}" for r in ordered))
        user_mb = [(r["size"], r["best"]["generate_user_s"] / (r["best"]["written"] / MB)) for r in ordered]
        sys_mb = [(r["size"], r["best"]["generate_sys_s"] / (r["best"]["written"] / MB)) for r in ordered]
        print("  generate CPU ms per MB (best run), user: " + ", ".join(f"{n:,}: {x * 1000:.2f}" for n, x in user_mb)
              + "; kernel: " + ", ".join(f"{n:,}: {x * 1000:.2f}" for n, x in sys_mb))
        rising = [(y[0], y[1] / x[1]) for x, y in zip(per_mb, per_mb[1:]) if x[1] > 0]
        holds = all(ratio <= 1.33 for _, ratio in rising)
        print(f"  -> time {'grows linearly' if holds else 'grows FASTER than linearly'} with bytes written: the part "
              f"that depends on the file's size (generate) costs "
              + ", ".join(f"x{ratio:.2f} per MB at {n:,}" for n, ratio in rising)
              + " vs the next smaller size (criterion: no rise above x1.33; the rest of the add, validate/create/"
              "append of 80, is the same work at every size)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
