"""`lorafiles`: the command line, on the embedded PostgreSQL by default (DATABASE_URL overrides).

`create` and `add` run the production state machine (infra/) in moto's interpreter with the
real handlers, exactly as deployed. Every command takes `--json`; user mistakes print one
line per problem on stderr and exit 1, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from .config import LOCAL_OWNER, Settings
from .errors import LorafilesError

EXIT_USER_ERROR = 1


class Context:
    """What a command gets: the service (embedded or configured database), its settings, output."""

    def __init__(self, args: argparse.Namespace, service: Any, machine: Any) -> None:
        self.args, self.service, self.machine = args, service, machine
        self.owner = args.owner
        self.json = args.json

    def progress(self, text: str) -> None:
        if not self.json and sys.stderr.isatty() or os.environ.get("LORAFILES_PROGRESS"):
            print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def open_context(args: argparse.Namespace, *, pipeline: bool) -> Iterator[Context]:
    from .db.connect import Database, database_url
    from .db.migrate import apply_migrations
    from .runtime import use_service
    from .service import TrainingFileService

    settings = Settings()
    with database_url() as url:
        apply_migrations(url)
        db = Database(url, reuse=True)
        machine = None
        with contextlib.ExitStack() as stack:
            if pipeline:
                from .pipeline.local import LocalStateMachine

                machine = LocalStateMachine()  # opened on first use: a blocked request starts nothing
                stack.callback(machine.close)
            service = TrainingFileService(db, settings.store(), settings, machine)
            use_service(service)
            if args.command != "reap":
                explain_interrupted(service)
            try:
                yield Context(args, service, machine)
            finally:
                use_service(None)
                db.close()


def explain_interrupted(service: Any) -> None:
    """After a killed run: say which jobs will never finish and how to recover (stderr)."""
    from .recovery import interrupted_jobs, interrupted_notice

    try:
        jobs = interrupted_jobs(service)
    except LorafilesError:
        return
    for job in jobs:
        print(interrupted_notice(job), file=sys.stderr)


def emit(ctx: Context, result: Any, human: Callable[[Any], str]) -> None:
    if ctx.json:
        sys.stdout.write(orjson.dumps(result, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(human(result))


# ---------------------------------------------------------------------------- commands
def cmd_migrate(ctx: Context) -> int:
    from .db.migrate import applied_migrations

    with ctx.service.db.connection() as conn:
        names = applied_migrations(conn)
    emit(ctx, {"applied": names}, lambda r: "database is up to date: " + ", ".join(r["applied"]))
    return 0


def cmd_import(ctx: Context) -> int:
    directory = Path(ctx.args.directory)
    if not directory.is_dir():
        raise LorafilesError(f"{directory}: not a directory")
    paths = sorted(directory.glob("*.json"))
    ctx.progress(f"importing {len(paths)} file(s) from {directory}")
    result = ctx.service.importing.import_files(ctx.owner, paths, batch_id=ctx.args.batch_id)

    for bad in result["refused"]:
        for p in bad["problems"]:
            where = f" ({p['field']})" if p.get("field") else ""
            print(f"error: {bad['file']}: refused: {p['code']}{where}: {p['message']}", file=sys.stderr)
    emit(ctx, result, lambda r: f"imported {len(r['imported'])} conversation(s), refused {len(r['refused'])}")
    return EXIT_USER_ERROR if result["refused"] else 0


def _run_job(ctx: Context, job: dict[str, Any]) -> int:
    job_id = str(job["id"])
    ctx.progress(f"job {job_id} ({job['kind']}) started, {len(job['requested_ids'])} conversation(s) "
                 f"in {job['total_batches']} batch(es)")
    shown: list[str] = []

    def report_progress() -> None:
        now = ctx.service.reading.get_job(ctx.owner, job_id)
        line = f"  {now['step'] or now['status']}: {len(now['completed_batches'])}/{now['total_batches']} batches"
        if not shown or shown[-1] != line:
            shown.append(line)
            ctx.progress(line)

    desc = ctx.machine.wait(job["execution_arn"], timeout=3600, poll=0.2, on_poll=report_progress)
    job = ctx.service.reading.get_job(ctx.owner, job_id)
    if job["status"] != "succeeded":
        err = job["error"] or {}
        problems = [job_id + ": " + (err.get("message") or desc.get("cause") or "failed")]
        for d in err.get("details") or []:
            for e in d.get("errors", [d]) if isinstance(d, dict) else []:
                problems.append(f"{d.get('conversation_id')}: {e.get('code')}: {e.get('message')}")
        raise LorafilesError("\n".join(problems), details=err)
    shown = ctx.service.reading.show_file(ctx.owner, str(job["file_id"]))
    result = _file_summary(ctx, shown["file"])
    result["job_id"] = job_id
    result["warnings"] = sum(len(m["warnings"]) for m in shown["members"] if str(m["job_id"]) == job_id)
    emit(ctx, result, lambda r: (
        f"training file {r['id']} '{r['name']}' v{r['version']}: {r['conversations']} conversations, "
        f"{r['training_pairs']} training pairs, {r['turns']} turns ({r['warnings']} warnings)\n"
        f"  json:  {r['json']}\n  jsonl: {r['jsonl']}"))
    return 0


def _conversation_ids(ctx: Context) -> list[str]:
    if getattr(ctx.args, "all_imported", False):
        return ctx.service.importing.owned_conversation_ids(ctx.owner)
    return list(ctx.args.conversations or [])


def cmd_create(ctx: Context) -> int:
    job = ctx.service.jobs.start_job(ctx.owner, kind="create", conversation_ids=_conversation_ids(ctx),
                                name=ctx.args.name, description=ctx.args.description,
                                idempotency_key=ctx.args.idempotency_key)
    return _run_job(ctx, job)


def cmd_add(ctx: Context) -> int:
    job = ctx.service.jobs.start_job(ctx.owner, kind="add", conversation_ids=_conversation_ids(ctx),
                                file_id=ctx.args.file_id, idempotency_key=ctx.args.idempotency_key)
    return _run_job(ctx, job)


def _file_summary(ctx: Context, f: dict[str, Any]) -> dict[str, Any]:
    settings = ctx.service.settings
    root = settings.local_storage_root / "training-files" if settings.storage == "local" else Path("training-files")
    return {"id": str(f["id"]), "name": f["name"], "status": f["status"], "version": f["current_version"],
            "conversations": f["conversation_count"], "training_pairs": f["training_pair_count"],
            "turns": f["total_turns"], "quality_summary": f["quality_summary"],
            "json": str(root / f["json_path"]) if f["json_path"] else None,
            "jsonl": str(root / f["jsonl_path"]) if f["jsonl_path"] else None}


def cmd_list(ctx: Context) -> int:
    files = [_file_summary(ctx, f) for f in ctx.service.reading.list_files(ctx.owner)]
    emit(ctx, files, lambda fs: "\n".join(
        f"{f['id']}  v{f['version']}  {f['status']:<8} {f['conversations']:>5} conv {f['training_pairs']:>6} pairs  "
        f"{f['name']}" for f in fs) or "no training files")
    return 0


def cmd_show(ctx: Context) -> int:
    shown = ctx.service.reading.show_file(ctx.owner, ctx.args.file_id)
    f, job = shown["file"], shown["current_job"]
    result = {**_file_summary(ctx, f), "scaffolding_distribution": f["scaffolding_distribution"],
              "batch_ids": [str(b) for b in f["batch_ids"]],
              "versions": [{"version": v["version"], "conversations": v["conversation_count"],
                            "training_pairs": v["training_pair_count"], "created_at": v["created_at"]}
                           for v in shown["versions"]],
              "members": [{"conversation_id": m["conversation_id"], "batch_id": m["batch_id"],
                           "training_pairs": m["training_pairs"], "quality_tier": m["quality_tier"],
                           "warnings": [w["code"] for w in m["warnings"]]} for m in shown["members"]],
              "job": None if job is None else {
                  "id": str(job["id"]), "kind": job["kind"], "status": job["status"], "step": job["step"],
                  "batches_done": len(job["completed_batches"]), "batches": job["total_batches"],
                  "error": job["error"]}}

    def human(r: dict) -> str:
        lines = [f"{r['name']} ({r['id']}) v{r['version']} {r['status']}: {r['conversations']} conversations, "
                 f"{r['training_pairs']} training pairs, {r['turns']} turns",
                 f"quality: {r['quality_summary']}", f"batches: {', '.join(r['batch_ids']) or '-'}"]
        lines += [f"  v{v['version']}: {v['conversations']} conversations, {v['training_pairs']} pairs"
                  for v in r["versions"]]
        if r["job"]:
            j = r["job"]
            lines.append(f"job {j['id']} {j['kind']} {j['status']} at {j['step']} "
                         f"({j['batches_done']}/{j['batches']} batches)"
                         + (f": {j['error']['message']}" if j["error"] else ""))
        return "\n".join(lines)

    emit(ctx, result, human)
    return 0


def cmd_download(ctx: Context) -> int:
    result = ctx.service.reading.download(ctx.owner, ctx.args.file_id, ctx.args.format, Path(ctx.args.out),
                                  version=ctx.args.version)
    emit(ctx, result, lambda r: f"wrote {r['path']} (v{r['version']}, {r['size']} bytes, sha256 {r['sha256']})")
    return 0


def cmd_regenerate(ctx: Context) -> int:
    """Rebuild one file (FILE_ID) or every stale file (--stale) as a new version, and wait."""
    if ctx.args.stale == bool(ctx.args.file_id):
        raise LorafilesError("give either FILE_ID or --stale")
    if ctx.args.file_id:
        job = ctx.service.jobs.start_regenerate(ctx.owner, ctx.args.file_id, idempotency_key=ctx.args.idempotency_key,
                                           only_changed=not ctx.args.all_members)
        return _run_job(ctx, job)
    from .maintenance import Maintenance

    results, failed = [], False
    for o in Maintenance(ctx.service).regenerate_stale(limit=ctx.args.limit):
        entry = {"file_id": o["file_id"], "outcome": o["outcome"], "reason": o["reason"], "job_id": None,
                 "status": None, "version": None}
        if o["outcome"] == "started":
            job = o["job"]
            entry["job_id"] = str(job["id"])
            ctx.progress(f"file {o['file_id']}: regenerate job {job['id']} started")
            ctx.machine.wait(job["execution_arn"], timeout=3600)
            done = ctx.service.reading.get_job(str(job["owner_id"]), str(job["id"]))
            entry.update(status=done["status"], version=done["published_version"],
                         reason=(done["error"] or {}).get("message"))
            failed |= done["status"] != "succeeded"
        results.append(entry)
    emit(ctx, results, lambda rs: "\n".join(
        f"{r['file_id']}  {r['outcome']}" + (f" job {r['job_id']} {r['status']}" if r["job_id"] else "")
        + (f" -> v{r['version']}" if r["version"] else "") + (f": {r['reason']}" if r["reason"] else "")
        for r in rs) or "no stale training files")
    return EXIT_USER_ERROR if failed else 0


def cmd_reap(ctx: Context) -> int:
    """Fail and compensate jobs stuck past the timeout, so their files are usable again."""
    from .maintenance import Maintenance

    reaped = Maintenance(ctx.service).reap_stuck(ctx.args.older_than)
    emit(ctx, reaped, lambda rs: "\n".join(
        f"reaped job {r['job_id']} ({r['kind']}) of file {r['file_id']}: {r['cause']}" for r in rs) or "no stuck jobs")
    return 0


def cmd_demo(ctx: Context) -> int:
    from .domain.samples import write_sample_dir

    with tempfile.TemporaryDirectory(prefix="lorafiles-demo-") as tmp:
        paths = write_sample_dir(Path(tmp), 12, seed=ctx.args.seed, target_bytes=40_000)
        ctx.progress(f"generated {len(paths)} sample enriched conversations")
        batch = str(uuid.uuid5(uuid.NAMESPACE_URL, f"lorafiles-demo-batch-{ctx.args.seed}"))
        imported = ctx.service.importing.import_files(ctx.owner, paths, batch_id=batch)
    ids = [i["conversation_id"] for i in imported["imported"]]
    name = f"Demo training file {time.strftime('%Y-%m-%d %H:%M:%S')}"
    job = ctx.service.jobs.start_job(ctx.owner, kind="create", conversation_ids=ids, name=name)
    return _run_job(ctx, job)


def cmd_serve(ctx: Context) -> int:
    from .api.local_server import serve

    return serve(ctx, host=ctx.args.host, port=ctx.args.port, jwt_secret=ctx.args.jwt_secret,
                 sample_conversations=ctx.args.sample_conversations)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    common.add_argument("--owner", default=os.environ.get("LORAFILES_OWNER", LOCAL_OWNER),
                        help="owner (user id) to act as; default: the local user")
    parser = argparse.ArgumentParser(prog="lorafiles", description=__doc__.splitlines()[0], parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[Context], int], help_: str, pipeline: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(fn=fn, pipeline=pipeline)
        return p

    add("migrate", cmd_migrate, "apply pending database migrations")
    p = add("import", cmd_import, "register enriched JSON files as completed conversations (local use)")
    p.add_argument("directory")
    p.add_argument("--batch-id", help="the batch job (uuid) that generated these conversations")
    for name, fn, help_ in (("create", cmd_create, "create a training file"),
                            ("add", cmd_add, "add conversations to a training file")):
        p = add(name, fn, help_, pipeline=True)
        if name == "create":
            p.add_argument("name")
            p.add_argument("--description")
        else:
            p.add_argument("file_id")
        group = p.add_mutually_exclusive_group(required=True)
        group.add_argument("--conversations", nargs="+", metavar="ID")
        if name == "create":
            group.add_argument("--all-imported", action="store_true", help="every conversation of the owner")
        p.add_argument("--idempotency-key", help="retrying with the same key starts one job")
    add("list", cmd_list, "list training files")
    p = add("show", cmd_show, "show a training file, its versions and its current job")
    p.add_argument("file_id")
    p = add("download", cmd_download, "download an artifact")
    p.add_argument("file_id")
    p.add_argument("--format", choices=("json", "jsonl"), required=True)
    p.add_argument("--version", type=int)
    p.add_argument("--out", required=True)
    p = add("regenerate", cmd_regenerate, "rebuild a training file (or every stale one) as a new version",
            pipeline=True)
    p.add_argument("file_id", nargs="?", metavar="FILE_ID", help="the training file to rebuild")
    p.add_argument("--stale", action="store_true", help="every stale training file (changed enrichments)")
    p.add_argument("--all-members", action="store_true",
                   help="re-render every member, not only those whose enriched file changed")
    p.add_argument("--limit", type=int, help="with --stale: start at most this many jobs")
    p.add_argument("--idempotency-key", help="retrying with the same key starts one job")
    p = add("reap", cmd_reap, "fail and compensate jobs stuck past the timeout (frees their files)")
    p.add_argument("--older-than", type=int, metavar="SECONDS",
                   help="no progress for this long (default: LORAFILES_JOB_TIMEOUT_SECONDS, 1800)")
    p = add("demo", cmd_demo, "generate sample conversations, import them and build a training file", pipeline=True)
    p.add_argument("--seed", type=int, default=7)
    p = add("serve", cmd_serve, "run the HTTP API on localhost (docs/API.md)", pipeline=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8787)
    p.add_argument("--jwt-secret", help="HS256 secret of accepted tokens (default: env "
                   "LORAFILES_SUPABASE_JWT_SECRET, else a dev secret kept in LORAFILES_HOME)")
    p.add_argument("--sample-conversations", type=int, default=0, metavar="N",
                   help="import N generated sample conversations for the owner first")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with open_context(args, pipeline=args.pipeline) as ctx:
            return args.fn(ctx)
    except LorafilesError as exc:
        if args.json:
            sys.stdout.write(orjson.dumps({"error": exc.as_dict()}, default=str).decode() + "\n")
        details = exc.details if isinstance(exc.details, list) else []
        lines = [f"{d.get('conversation_id') or d.get('field') or 'request'}: {d['code']}: {d['message']}"
                 for d in details if isinstance(d, dict) and "code" in d] or exc.message.splitlines()
        for line in lines:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
