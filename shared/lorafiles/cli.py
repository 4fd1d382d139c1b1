"""`lorafiles`: the command line, on the embedded PostgreSQL by default (DATABASE_URL overrides).

`create` and `add` run the production state machine (infra/) in moto's interpreter with the
real handlers, exactly as deployed. Every command takes `--json`; user mistakes print one
line per problem on stderr and exit 1, never a traceback.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn

import orjson

from .config import LOCAL_OWNER, Settings
from .errors import LorafilesError
from .tokens import SUPPORTED_MODELS
from .usecases.common import ARTIFACTS

EXIT_USER_ERROR = 1
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug (one line unless LORAFILES_DEBUG=1)
EXIT_INTERRUPTED = 130
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class Context:
    """What a command gets: the service (embedded or configured database), its settings, output."""

    def __init__(self, args: argparse.Namespace, service: Any, machine: Any) -> None:
        self.args, self.service, self.machine = args, service, machine
        self.owner = args.owner
        self.json = args.json

    @property
    def shows_progress(self) -> bool:
        return bool(not self.json and sys.stderr.isatty() or os.environ.get("LORAFILES_PROGRESS"))

    def progress(self, text: str) -> None:
        if self.shows_progress:
            print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def open_context(args: argparse.Namespace, *, pipeline: bool) -> Iterator[Context]:
    from .db.connect import Database, database_url
    from .db.migrate import apply_migrations
    from .runtime import use_service
    from .service import TrainingFileService

    try:
        settings = Settings()
        store = settings.store()
    except ValueError as exc:  # a malformed LORAFILES_* variable
        raise LorafilesError(f"configuration: {exc}") from None
    if pipeline:  # moto's interpreter and the handlers load while the database starts
        from .pipeline.local import preload
        from .tokens import get_model

        preload(lambda: get_model(settings.default_policy().target_model))
    with database_url() as url:
        apply_migrations(url)
        db = Database(url, reuse=True)
        machine = None
        with contextlib.ExitStack() as stack:
            if pipeline:
                from .pipeline.local import LocalStateMachine

                machine = LocalStateMachine()  # opened on first use: a blocked request starts nothing
                stack.callback(machine.close)
            service = TrainingFileService(db, store, settings, machine)
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
    from .db.backfill import backfill_batch_ids
    from .db.migrate import applied_migrations

    with ctx.service.db.connection() as conn:
        names = applied_migrations(conn)
    # data the migrations leave out: bounded batches, only rows that change (lorafiles.db.backfill)
    backfill = backfill_batch_ids(ctx.service.db, batch_size=ctx.args.batch_size, pause=ctx.args.pause)
    emit(ctx, {"applied": names, "backfill": {"batch_id": backfill}},
         lambda r: "database is up to date: " + ", ".join(r["applied"])
         + f"\nbatch_id back-fill: {backfill['rows']} row(s) in {backfill['batches']} batch(es)")
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

    # progress is read from the job row only when it is shown; wait() returns as soon as the
    # execution ends either way (not at the next poll)
    desc = ctx.machine.wait(job["execution_arn"], timeout=3600, poll=0.2,
                            on_poll=report_progress if ctx.shows_progress else None)
    job = ctx.service.reading.get_job(ctx.owner, job_id)
    if job["status"] != "succeeded":
        err = job["error"] or _execution_error(desc)
        message = err.get("message") or "the job failed"
        if job["status"] != "failed":
            message += f" (the job is still {job['status']}; `lorafiles reap` recovers it)"
        problems = [job_id + ": " + message]
        for d in err.get("details") or []:
            for e in d.get("errors", [d]) if isinstance(d, dict) else []:
                problems.append(f"{d.get('conversation_id')}: {e.get('code')}: {e.get('message')}")
        raise LorafilesError("\n".join(problems), details=err)
    shown = ctx.service.reading.show_file(ctx.owner, str(job["file_id"]))
    result = _file_summary(ctx, shown["file"])
    result["job_id"] = job_id
    result["exports"] = _exports_summary(shown["file"])
    result["warnings"] = sum(len(m["warnings"]) for m in shown["members"] if str(m["job_id"]) == job_id)
    emit(ctx, result, lambda r: (
        f"training file {r['id']} '{r['name']}' v{r['version']}: {r['conversations']} conversations, "
        f"{r['training_pairs']} training pairs, {r['turns']} turns ({r['warnings']} warnings)\n"
        f"  json:  {r['json']}\n  jsonl: {r['jsonl']}\n" + _exports_text(r["exports"])))
    return 0


def _exports_summary(f: dict[str, Any]) -> dict[str, Any] | None:
    """The current version's export figures, as `show` and `create` print them."""
    x = f.get("export_summary") or {}
    if not x:
        return None
    return {"policy": f.get("policy"),
            "formats": {fmt: {"lines": v["lines"], "total_tokens": v["total_tokens"],
                              "trainable_tokens_per_epoch": v["trainable_tokens_per_epoch"],
                              "examples_over_max_length": v["examples_over_max_length"]}
                        for fmt, v in x["formats"].items()},
            "exclusions": {r: e for r, e in x["exclusions"].items() if e["count"]},
            "trims": x["trims"], "changes": {k: n for k, n in x["changes"].items() if n}}


def _exports_text(x: dict[str, Any] | None) -> str:
    if not x:
        return "  exports: none (published before trainer exports existed; regenerate the file)"
    p = x["policy"] or {}
    lines = [f"  exports for {p.get('target_model')} (max_length {p.get('max_length')}, "
             f"over-length {p.get('over_length')}):"]
    for fmt, v in x["formats"].items():
        t = v["total_tokens"]
        lines.append(f"    {fmt:<9} {v['lines']:>6} lines  tokens min {t['min']} p50 {t['p50']} p95 {t['p95']} "
                     f"max {t['max']}  trainable/epoch {v['trainable_tokens_per_epoch']}")
    excl = ", ".join(f"{r} {e['count']} ({e['trainable_tokens']} tokens)" for r, e in x["exclusions"].items())
    lines.append(f"    excluded: {excl or 'none'}; trimmed: {x['trims']['count']}")
    changes = ", ".join(f"{k} {n}" for k, n in x["changes"].items())
    lines.append(f"    changed (exports only): {changes or 'nothing'}")
    return "\n".join(lines)


def _execution_error(desc: dict[str, Any]) -> dict[str, Any]:
    """What a failed execution says, when the job recorded nothing: the task's own error message
    (decoded from Step Functions' `Cause`), first line only, bounded."""
    from .usecases.steps import error_from_state_machine

    err = error_from_state_machine({"Error": desc.get("error") or "failed", "Cause": desc.get("cause") or ""})
    lines = str(err.get("message") or "").strip().splitlines() or [f"execution {desc.get('status', 'failed')}"]
    return {**err, "message": lines[0][:500]}


def _conversation_ids(ctx: Context) -> list[str]:
    if getattr(ctx.args, "all_imported", False):
        return ctx.service.importing.owned_conversation_ids(ctx.owner)
    return list(ctx.args.conversations or [])


def _policy(ctx: Context) -> dict[str, Any]:
    """The training-policy flags given on the command line (the rest comes from the file or the default)."""
    a = ctx.args
    given = {"target_model": a.target_model, "max_length": a.max_length, "over_length": a.over_length,
             "min_quality": a.min_quality, "fix_literal_escapes": a.fix_literal_escapes}
    return {k: v for k, v in given.items() if v is not None}


def cmd_create(ctx: Context) -> int:
    job = ctx.service.jobs.start_job(ctx.owner, kind="create", conversation_ids=_conversation_ids(ctx),
                                     name=ctx.args.name, description=ctx.args.description,
                                     idempotency_key=ctx.args.idempotency_key, policy=_policy(ctx))
    return _run_job(ctx, job)


def cmd_add(ctx: Context) -> int:
    job = ctx.service.jobs.start_job(ctx.owner, kind="add", conversation_ids=_conversation_ids(ctx),
                                     file_id=ctx.args.file_id, idempotency_key=ctx.args.idempotency_key,
                                     policy=_policy(ctx))
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
              "exports": _exports_summary(f),
              "artifacts": sorted((f.get("artifacts") or {}) or [n for n in ("json", "jsonl") if f[f"{n}_path"]]),
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
        lines.append(_exports_text(r["exports"]))
        lines.append(f"  artifacts: {', '.join(r['artifacts']) or '-'}")
        if r["job"]:
            j = r["job"]
            lines.append(f"job {j['id']} {j['kind']} {j['status']} at {j['step']} "
                         f"({j['batches_done']}/{j['batches']} batches)"
                         + (f": {j['error']['message']}" if j["error"] else ""))
        return "\n".join(lines)

    emit(ctx, result, human)
    return 0


def cmd_download(ctx: Context) -> int:
    out = Path(ctx.args.out)
    if out.is_dir():
        raise LorafilesError(f"--out {out}: is a directory; give the path of the file to write")
    if not out.parent.is_dir():
        raise LorafilesError(f"--out {out}: directory {out.parent} does not exist")
    result = ctx.service.reading.download(ctx.owner, ctx.args.file_id, ctx.args.format, Path(ctx.args.out),
                                  version=ctx.args.version)
    emit(ctx, result, lambda r: f"wrote {r['path']} (v{r['version']}, {r['size']} bytes, sha256 {r['sha256']})")
    return 0


def cmd_preview(ctx: Context) -> int:
    result = ctx.service.reading.preview(ctx.owner, ctx.args.file_id, ctx.args.format, ctx.args.n,
                                         version=ctx.args.version)

    def human(r: dict) -> str:
        out = [f"{r['format']} v{r['version']} rendered for {r['model']} ({r['lines']} lines; "
               "trained spans between ⟦TRAIN⟧ and ⟦/TRAIN⟧)"]
        for e in r["examples"]:
            out += [f"--- line {e['line']}: {e['total_tokens']} tokens, {e['trainable_tokens']} trainable", e["text"]]
        return "\n".join(out)

    emit(ctx, result, human)
    return 0


def cmd_diff(ctx: Context) -> int:
    a = ctx.args
    emit(ctx, ctx.service.diffing.diff(ctx.owner, a.file_id, a.v1, a.v2), diff_text)
    return 0


def diff_text(r: dict) -> str:
    """The human form of a version diff: the conversations by name, then every figure that moved."""
    c = r["conversations"]
    n = c["counts"]
    out = [f"training file {r['file_id']}: v{r['from_version']} -> v{r['to_version']}",
           f"conversations: {n['from']} -> {n['to']} (+{n['added']} added, -{n['removed']} removed, "
           f"{n['source_changed']} source changed, {n['split_changed']} split changed, "
           f"{n['exclusion_changed']} exclusion changed, {n['unchanged']} unchanged)"]
    out += [f"  + {e['conversation_id']} ({e['split'] or '-'}{', excluded: ' + e['excluded'] if e['excluded'] else ''})"
            for e in c["added"]]
    out += [f"  - {e['conversation_id']} ({e['split'] or '-'})" for e in c["removed"]]
    out += [f"  ~ {e['conversation_id']} source {e['from_sha256'][:12]} -> {e['to_sha256'][:12]}"
            for e in c["source_changed"]]
    out += [f"  ~ {e['conversation_id']} split {e['from']} -> {e['to']}" for e in c["split_changed"]]
    out += [f"  ~ {e['conversation_id']} excluded {e['from'] or '-'} -> {e['to'] or '-'}"
            for e in c["exclusion_changed"]]
    for title, changed in (("policy", r["policy_changed"]), ("model", r["model_changed"])):
        out += [f"{title} {k}: {v['from']!r} -> {v['to']!r}" for k, v in changed.items()]

    def figure(name: str, m: dict) -> str | None:
        if m["from"] == m["to"]:
            return None
        change = "" if m["change"] is None else f" ({m['change']:+g})"
        return f"  {name}: {m['from'] if m['from'] is not None else '?'} -> {m['to'] if m['to'] is not None else '?'}{change}"

    rows = [figure(f"{fmt} {k}", v) for fmt, t in r["tokens"].items() for k, v in t.items() if "from" in v]
    rows += [figure(f"{fmt} {dist} {k}", v) for fmt, t in r["tokens"].items()
             for dist in ("total_tokens", "trainable_tokens") for k, v in t[dist].items()]
    rows += [figure(f"{s} conversations", v) for s, v in r["splits"]["conversations"].items()]
    rows += [figure(f"{fmt} {s} lines", v) for fmt, d in r["splits"]["lines"].items() for s, v in d.items()]
    rows += [figure(f"{fmt} {s} trainable tokens", v) for fmt, d in r["splits"]["trainable_tokens"].items()
             for s, v in d.items()]
    rows += [figure(f"excluded {k} turns", v["count"]) for k, v in r["exclusions"].items()]
    rows += [figure(f"excluded {k} conversations", v) for k, v in r["conversation_exclusions"].items()]
    rows += [figure(f"duplicates {k}", v) for k, v in r["duplicates"].items()]
    rows += [figure(f"changes {k}", v) for k, v in r["changes"].items()]
    rows += [figure("empty coverage cells", r["coverage"]["empty_cells"])]
    moved = [row for row in rows if row]
    out += ["figures that moved:", *moved] if moved else ["figures: none moved"]
    cov = r["coverage"]
    out += [f"  coverage {e['cell']}: {e['from']} -> {e['to']}" for e in cov["changed_cells"]]
    out += [f"  filled: {cell}" for cell in cov["filled"]] + [f"  emptied: {cell}" for cell in cov["emptied"]]
    w = r["warnings"]
    out += [f"warning added: {code}" for code in w["added"]] + [f"warning resolved: {code}" for code in w["resolved"]]
    out += [f"note: {note}" for note in r["notes"]]
    return "\n".join(out)


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
class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line on stderr and exit 1, like every other user mistake."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"error: {message} (see: {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)


def _number(low: int, high: int) -> Callable[[str], int]:
    def number(text: str) -> int:
        value = int(text)  # ValueError: argparse says "invalid number value"
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return number


def build_parser() -> argparse.ArgumentParser:
    # --json/--owner may come before or after the command; after it, SUPPRESS keeps a value given
    # before it (`lorafiles --owner X import DIR`) instead of resetting it to the default.
    parser = _Parser(prog="lorafiles", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--owner", default=os.environ.get("LORAFILES_OWNER", LOCAL_OWNER),
                        help="owner (user id) to act as; default: $LORAFILES_OWNER, else the local user")
    common = _Parser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--owner", default=argparse.SUPPRESS, help="owner (user id) to act as")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, fn: Callable[[Context], int], help_: str, pipeline: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, parents=[common])
        p.set_defaults(fn=fn, pipeline=pipeline)
        return p

    p = add("migrate", cmd_migrate, "apply pending database migrations, then back-fill conversations.batch_id")
    p.add_argument("--batch-size", type=int, default=500, help="rows per back-fill transaction (default 500)")
    p.add_argument("--pause", type=float, default=0.0, metavar="SECONDS", help="sleep between back-fill batches")
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
        policy = p.add_argument_group("training policy (default: the file's, else LORAFILES_* settings)")
        policy.add_argument("--target-model", help=f"one of {', '.join(SUPPORTED_MODELS)}")
        policy.add_argument("--max-length", type=int, help="tokens per example in the target model's template")
        policy.add_argument("--over-length", choices=("drop_turn", "trim_history", "fail"),
                            help="what to do with a turn whose example is longer than --max-length")
        policy.add_argument("--min-quality", type=float, help="do not train on targets scored below this")
        policy.add_argument("--fix-escapes", dest="fix_literal_escapes", action="store_true", default=None,
                            help="literal backslash-n/-quote become real characters in the exports (default)")
        policy.add_argument("--no-fix-escapes", dest="fix_literal_escapes", action="store_false",
                            help="keep literal escapes in the exports as written")
    add("list", cmd_list, "list training files")
    p = add("show", cmd_show, "show a training file, its versions and its current job")
    p.add_argument("file_id")
    p = add("download", cmd_download, "download an artifact")
    p.add_argument("file_id")
    p.add_argument("--format", choices=tuple(ARTIFACTS), required=True)
    p.add_argument("--version", type=_number(1, 2**31 - 1))
    p.add_argument("--out", required=True, help="the file to write (its directory must exist)")
    p = add("preview", cmd_preview, "print export lines as the trainer sees them (rendered, trained spans marked)")
    p.add_argument("file_id")
    p.add_argument("--n", type=_number(1, 1000), default=3, help="how many lines (default 3)")
    p.add_argument("--format", choices=("openai", "trl", "axolotl", "sharegpt"), default="openai")
    p.add_argument("--version", type=_number(1, 2**31 - 1))
    p = add("diff", cmd_diff, "what changed between two versions of a training file (conversations, counts, "
            "tokens, coverage)")
    p.add_argument("file_id")
    p.add_argument("v1", type=_number(1, 2**31 - 1), metavar="V1", help="the version to compare from")
    p.add_argument("v2", type=_number(1, 2**31 - 1), metavar="V2", help="the version to compare to")
    p = add("regenerate", cmd_regenerate, "rebuild a training file (or every stale one) as a new version",
            pipeline=True)
    p.add_argument("file_id", nargs="?", metavar="FILE_ID", help="the training file to rebuild")
    p.add_argument("--stale", action="store_true", help="every stale training file (changed enrichments)")
    p.add_argument("--all-members", action="store_true",
                   help="re-render every member, not only those whose enriched file changed")
    p.add_argument("--limit", type=_number(0, 1_000_000), help="with --stale: start at most this many jobs")
    p.add_argument("--idempotency-key", help="retrying with the same key starts one job")
    p = add("reap", cmd_reap, "fail and compensate jobs stuck past the timeout (frees their files)")
    p.add_argument("--older-than", type=_number(0, 10 * 365 * 86400), metavar="SECONDS",
                   help="no progress for this long (default: LORAFILES_JOB_TIMEOUT_SECONDS, 1800)")
    p = add("demo", cmd_demo, "generate sample conversations, import them and build a training file", pipeline=True)
    p.add_argument("--seed", type=int, default=7)
    p = add("serve", cmd_serve, "run the HTTP API on localhost (docs/API.md)", pipeline=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_number(0, 65535), default=8787)
    p.add_argument("--jwt-secret", help="HS256 secret of accepted tokens (default: env "
                   "LORAFILES_SUPABASE_JWT_SECRET, else a dev secret kept in LORAFILES_HOME)")
    p.add_argument("--sample-conversations", type=_number(0, 10_000), default=0, metavar="N",
                   help="import N generated sample conversations for the owner first")
    return parser


def _check_args(args: argparse.Namespace) -> None:
    """Arguments the database and the outputs can hold: text that is valid Unicode (bytes that are
    not UTF-8 reach Python as lone surrogates), and an owner that is a user id."""
    for name, value in vars(args).items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    raise LorafilesError(f"argument {name}: {text!r} is not valid UTF-8 text") from None
    if not isinstance(args.owner, str) or not _UUID.fullmatch(args.owner):
        raise LorafilesError(f"--owner {args.owner!r} is not a user id (a UUID such as {LOCAL_OWNER})")
    args.owner = args.owner.lower()


def _report(args: argparse.Namespace, exc: LorafilesError) -> int:
    if getattr(args, "json", False):
        sys.stdout.write(orjson.dumps({"error": exc.as_dict()}, default=str).decode() + "\n")
    details = exc.details if isinstance(exc.details, list) else []
    lines = [f"{d.get('conversation_id') or d.get('field') or 'request'}: {d['code']}: {d['message']}"
             for d in details if isinstance(d, dict) and "code" in d] or exc.message.splitlines()
    for line in lines:
        print(f"error: {line}", file=sys.stderr)
    return EXIT_USER_ERROR


def _environment_error(exc: Exception) -> LorafilesError | None:
    """The database or the file system failing under us: one line, not a traceback."""
    import psycopg

    from .db.migrate import MigrationError

    if isinstance(exc, (psycopg.Error, MigrationError)):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return LorafilesError(f"database: {first}")
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return LorafilesError(f"{exc.strerror or exc}{where}")
    return None


def _quiet_function_logs(args: argparse.Namespace) -> None:
    """The Lambda handlers run in this process: their logs (a failing step's warning, with its
    stack for a bug) are for CloudWatch, not for the terminal, where the command prints the job's
    error itself. `serve` keeps them; LOG_LEVEL or LORAFILES_DEBUG=1 bring them back."""
    if args.command != "serve" and not os.environ.get("LOG_LEVEL") and not os.environ.get("LORAFILES_DEBUG"):
        from .observability import logger

        logger.setLevel("CRITICAL")


def main(argv: list[str] | None = None) -> int:
    code = _main(argv)
    if argv is None and not os.environ.get("LORAFILES_SLOW_EXIT"):
        _fast_exit(code)
    return code


def _fast_exit(code: int) -> None:
    """The program's end, run as `lorafiles ...` (never when main() is called with arguments, as
    tests do): every context is closed by now (database connections, the embedded PostgreSQL,
    moto, the HTTP server), so flush what was written and skip the interpreter's teardown, which
    with moto loaded costs more than a second. A failing flush falls back to the normal exit."""
    import logging

    from .prestart import release

    release()  # a server started for this command that it never used (a usage error)
    try:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return
    os._exit(code)


def _main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _check_args(args)
        _quiet_function_logs(args)
        with open_context(args, pipeline=args.pipeline) as ctx:
            return args.fn(ctx)
    except LorafilesError as exc:
        return _report(args, exc)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - never a traceback (LORAFILES_DEBUG=1 shows it)
        if os.environ.get("LORAFILES_DEBUG"):
            raise
        known = _environment_error(exc)
        if known is not None:
            return _report(args, known)
        print(f"error: internal error ({type(exc).__name__}: {exc}); set LORAFILES_DEBUG=1 for the traceback",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
