"""Benchmark for issue 11 (speed): every figure against the orjson floor measured in the same run.

    .venv/bin/python bench/speed.py                      # all sections, ~2-4 min on 2 cores
    .venv/bin/python bench/speed.py --only cli,map       # some sections
    .venv/bin/python bench/speed.py --publish-members 1000

Sections (all print, none asserts):

- floor: read + `orjson.loads` of the 80 inputs, then write training.json (OPT_INDENT_2) and
  training.jsonl with orjson alone (the objects decoded, untimed, from the create's artifacts).
- core: lorafiles' domain code alone on the same 80 files, no database, storage or moto:
  parse_enriched, scaffolding + stats, render_fragments, build_member_exports, then the two v4
  files written from the fragments (json_head + fragments + tail, JSONL meta line + lines).
- inproc: `start_job(kind="create")` through moto's interpreter running the production ASL,
  handlers in-process, embedded PostgreSQL, local storage (warm runs; the first is cold).
- cli: `lorafiles create NAME --all-imported` as a user runs it, in a fresh process each time
  (embedded PostgreSQL started and stopped by the command); the import before it is untimed.
- map: a create of 80 with a simulated 20 ms per storage request (`LatencyStore`), Map
  concurrency 4 versus 1: the whole create, and its Map state (AppendBatches, from moto's
  execution history) alone.
- publish: the publishing stream (`read_members` + `VersionWriter.add`, exactly what
  `PipelineSteps.generate` runs) over N members with 20 ms per GET: the 80 real staged members
  of a create cycled up to N entries (the latency is per request, so repeated keys cost the
  same as distinct ones). The uploads of the finished artifacts are not part of it.
- memory: peak RSS above the baseline while streaming 1,000 and N members (no latency).
- imports: cold import of each Step Functions handler in a fresh interpreter (median of 3).

Every time below is a median of `--rounds` (default 5; cli 3), interleaved with the floor.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchlib import (OWNER, REPO_ROOT, LatencyStore, RssSampler, current_rss, mb, run_job,  # noqa: E402
                       state_durations, table, throwaway_database, throwaway_home, wired_service)
from create_80 import floor, input_files  # noqa: E402

SECTIONS = ("core", "inproc", "cli", "map", "publish", "memory", "imports")
HANDLERS = ("validate-selection", "create-file", "append-batch", "generate-jsonl", "compensate-job", "api")


def core(paths: list[Path], out: Path) -> float:
    """The domain core alone: what the steps compute per conversation, and the two v4 files."""
    from lorafiles.config import Settings
    from lorafiles.domain.enriched import parse_enriched
    from lorafiles.domain.exports import build_member_exports
    from lorafiles.domain.render import FileHeader, MemberMeta, json_head, jsonl_meta_line, render_fragments
    from lorafiles.domain.summary import SummaryAccumulator, conversation_stats
    from lorafiles.tokens import get_model

    settings = Settings()
    policy = settings.default_policy()
    model = get_model(policy.target_model)
    t0 = time.perf_counter()
    acc, frags = SummaryAccumulator(), []
    for i, p in enumerate(paths):
        blob = p.read_bytes()
        cid = str(uuid.UUID(int=i + 1))
        parsed = parse_enriched(blob, source=p.name, conversation_id=cid, limits=settings.enriched_limits)
        scaffolding = parsed.scaffolding({})
        stats = conversation_stats(parsed, scaffolding)
        acc.add(stats)
        meta = MemberMeta(conversation_id=cid, source_file=p.name, created_date="2026-12-02", batch_id=None,
                          total_turns=stats.pairs, quality_tier=stats.quality_tier, scaffolding=scaffolding)
        frags.append(render_fragments(parsed, meta, ""))
        build_member_exports(cid, parsed.pairs, policy, model)
    header = FileHeader(file_name="core", file_version=1, created_date="2026-12-02T00:00:00Z",
                        last_updated="2026-12-02T00:00:00Z", target_model=policy.target_model, vertical=None,
                        total_conversations=acc.conversations, total_training_pairs=acc.training_pairs,
                        total_turns=acc.pairs, quality_summary=acc.quality_summary(),
                        scaffolding_distribution=acc.scaffolding_distribution(), consultant_profile={})
    with open(out / "training.json", "wb") as f:
        f.write(json_head(header) + b"\n" + b",\n".join(j for j, _ in frags) + b"\n  ]\n}\n")
    with open(out / "training.jsonl", "wb") as f:
        f.write(jsonl_meta_line("core", acc.training_pairs) + b"".join(l for _, l in frags))
    return time.perf_counter() - t0


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def cold_imports(runs: int) -> list[list[str]]:
    rows = []
    py = sys.executable
    for name in HANDLERS:
        code = ("import time,importlib.util as u;t=time.perf_counter();"
                f"s=u.spec_from_file_location('h',{str(REPO_ROOT / 'functions' / name / 'handler.py')!r});"
                "m=u.module_from_spec(s);s.loader.exec_module(m);print(time.perf_counter()-t)")
        times, walls = [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            r = subprocess.run([py, "-c", code], capture_output=True, text=True, env={**os.environ,
                               "DATABASE_URL": os.environ.get("DATABASE_URL", "postgresql:///unused")})
            walls.append(time.perf_counter() - t0)
            if r.returncode:
                times.append(float("nan"))
                print(f"  {name}: {r.stderr.strip().splitlines()[-1:]}")
            else:
                times.append(float(r.stdout.strip().splitlines()[-1]))
        xray = subprocess.run([py, "-c", code.replace(";print(time.perf_counter()-t)", "")
                               + ";import sys;print(int('aws_xray_sdk' in sys.modules), len(sys.modules))"],
                              capture_output=True, text=True).stdout.split()
        rows.append([f"functions/{name}", f"{med(times) * 1000:.0f} ms", f"{med(walls) * 1000:.0f} ms",
                     "yes" if xray[:1] == ["1"] else "no", xray[1] if len(xray) > 1 else "?"])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cli-rounds", type=int, default=3)
    ap.add_argument("--publish-members", type=int, default=5000)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--only", default=",".join(SECTIONS))
    args = ap.parse_args()
    only = set(args.only.split(","))
    latency = args.latency_ms / 1000
    rows: list[list[str]] = []
    notes: list[str] = []

    with throwaway_home(prefix="lorafiles-speed-") as home, throwaway_database(home) as url, \
            wired_service(url, home) as (service, machine):
        paths, origin = input_files(home)
        imported = service.importing.import_files(OWNER, paths)
        ids = [i["conversation_id"] for i in imported["imported"]]
        in_bytes = sum(p.stat().st_size for p in paths)
        print(f"inputs: {origin}: {len(ids)} conversations, {mb(in_bytes)}")

        map_states: dict[str, float] = {}  # create name -> the AppendBatches state's own duration

        def create(svc, name: str) -> float:
            from lorafiles.runtime import use_service
            use_service(svc)
            job, elapsed, desc = run_job(machine, lambda: svc.jobs.start_job(OWNER, kind="create",
                                                                            conversation_ids=ids, name=name))
            use_service(service)
            if desc["status"] != "SUCCEEDED":
                raise SystemExit(f"create failed: {service.reading.get_job(OWNER, str(job['id']))['error']}")
            map_states[name] = sum(d for n, d in state_durations(machine, job["execution_arn"]) if n == "AppendBatches")
            return elapsed

        cold = create(service, "speed cold")
        job_file = None
        with service.db.connection() as conn:
            job_file = conn.execute("select id, json_path, jsonl_path from lora_training_files where name = %s",
                                    ("speed cold",)).fetchone()
        root = service.settings.local_storage_root / "training-files"
        json_bytes, jsonl_bytes = (root / job_file["json_path"]).read_bytes(), (root / job_file["jsonl_path"]).read_bytes()
        document = orjson.loads(json_bytes)
        records = [orjson.loads(line) for line in jsonl_bytes.splitlines()]
        floor_dir = Path(tempfile.mkdtemp(prefix="floor-", dir=home))
        floors, cores, inprocs = [], [], []
        for r in range(args.rounds):
            floors.append(floor(paths, document, records, floor_dir))
            if "core" in only:
                cores.append(core(paths, floor_dir))
            if "inproc" in only:
                inprocs.append(create(service, f"speed warm {r}"))
        fl = med(floors)
        rows.append(["floor (orjson: parse 80, write json + jsonl)", f"{fl * 1000:.1f} ms", "1.0x"])
        if cores:
            rows.append(["domain core alone (incl. exports)", f"{med(cores) * 1000:.1f} ms", f"{med(cores) / fl:.1f}x"])
        if inprocs:
            rows.append(["in-process create through moto, warm", f"{med(inprocs) * 1000:.0f} ms",
                         f"{med(inprocs) / fl:.1f}x"])
            rows.append(["in-process create through moto, first (cold)", f"{cold * 1000:.0f} ms", f"{cold / fl:.1f}x"])

        if "map" in only:
            slow = LatencyStore(service.store, latency)
            t, m = {}, {}
            from lorafiles.service import TrainingFileService
            for conc in (1, 4):
                s = dataclasses.replace(service.settings, map_concurrency=conc)
                svc = TrainingFileService(service.db, slow, s, machine)
                names = [f"speed map{conc} {r}" for r in range(max(1, args.rounds // 2))]
                t[conc] = med([create(svc, n) for n in names])
                m[conc] = med([map_states[n] for n in names])
            rows.append([f"create, {args.latency_ms:.0f} ms/request, Map concurrency 1", f"{t[1] * 1000:.0f} ms",
                         f"its Map state {m[1] * 1000:.0f} ms"])
            rows.append([f"create, {args.latency_ms:.0f} ms/request, Map concurrency 4", f"{t[4] * 1000:.0f} ms",
                         f"{t[1] / t[4]:.2f}x faster than 1; its Map state {m[4] * 1000:.0f} ms, "
                         f"{m[1] / m[4]:.2f}x faster"])

        if "publish" in only or "memory" in only:
            from lorafiles.db.repository import Repository
            from lorafiles.usecases import publish
            with service.db.connection() as conn:
                entries = list(Repository(conn).version_entries(str(job_file["id"]), str(uuid.uuid4())))

            def stream(n: int, store) -> tuple[float, int, int]:  # noqa: ANN001
                from collections import Counter
                from lorafiles.domain.render import FileHeader
                from lorafiles.tokens import get_model
                policy = service.settings.default_policy()
                header = FileHeader(file_name="p", file_version=2, created_date="x", last_updated="x",
                                    target_model=policy.target_model, vertical=None, total_conversations=n,
                                    total_training_pairs=0, total_turns=0, quality_summary={},
                                    scaffolding_distribution={}, consultant_profile={})
                # each cycled entry is its own conversation (the splits refuse an id twice)
                cycled = ({**entries[i % len(entries)], "conversation_id": str(uuid.UUID(int=i + 1))}
                          for i in range(n))
                with tempfile.TemporaryDirectory(dir=home) as tmp:
                    w = publish.VersionWriter(Path(tmp), file_id="f", version=2, header=header, policy=policy,
                                              model=get_model(policy.target_model), export_figures={},
                                              source_warnings=Counter())
                    base = current_rss()
                    with RssSampler() as rss:
                        t0 = time.perf_counter()
                        if hasattr(publish, "stream_members"):  # after issue 11
                            members = publish.stream_members(store, cycled)
                        else:  # before: generate's own pool of 8
                            from concurrent.futures import ThreadPoolExecutor
                            pool = ThreadPoolExecutor(max_workers=8)
                            members = publish.read_members(store, pool, cycled)
                        for e, j, l, b in members:
                            w.add(e, j, l, b)
                        dt = time.perf_counter() - t0
                    written = sum(o.size for o in w.outs.values())
                    for o in w.outs.values():
                        o.close()
                return dt, rss.peak - base, written

            if "publish" in only:
                slow = LatencyStore(service.store, latency)
                dt, _, written = stream(args.publish_members, slow)
                rows.append([f"publish stream, {args.publish_members:,} members, {args.latency_ms:.0f} ms/GET",
                             f"{dt:.2f} s", f"{slow.requests['get']:,} GETs, {mb(written)} written"])
            if "memory" in only:
                for n in (1000, args.publish_members):
                    dt, peak, written = stream(n, service.store)
                    rows.append([f"publish stream, {n:,} members, no latency", f"{dt:.2f} s",
                                 f"peak RSS +{mb(peak)}, {mb(written)} written"])

    if "cli" in only:
        with throwaway_home(prefix="lorafiles-speed-cli-") as home:
            src = home / "inputs"
            src.mkdir()
            for p in paths if paths[0].exists() else []:
                shutil.copy(p, src / p.name)
            env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
            env["LORAFILES_HOME"] = str(home)
            exe = str(Path(sys.executable).parent / "lorafiles")
            r = subprocess.run([exe, "import", str(src)], env=env, capture_output=True, text=True)
            if r.returncode:
                print("cli import failed:", r.stderr)
            walls = []
            for i in range(args.cli_rounds):
                t0 = time.perf_counter()
                r = subprocess.run([exe, "create", f"cli {i}", "--all-imported"], env=env, capture_output=True,
                                   text=True)
                walls.append(time.perf_counter() - t0)
                if r.returncode:
                    print("cli create failed:", r.stderr)
            rows.append(["`lorafiles create` of 80 (fresh process, embedded PG)", f"{med(walls) * 1000:.0f} ms",
                         f"{med(walls) / fl:.0f}x  (runs: " + ", ".join(f"{w:.2f}" for w in walls) + " s)"])

    print()
    print(table(rows, ["what", "median", "x floor / notes"], align="lrl"))
    if "imports" in only:
        print("\ncold import of each handler module (fresh interpreter, median of 3)")
        print(table(cold_imports(3), ["handler", "import", "process wall", "X-Ray SDK loaded", "modules"]))
    for n in notes:
        print(n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
