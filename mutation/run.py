"""`make mutate`: mutation testing with mutmut 3, one module group at a time, each with its own
narrow test selection, then the listed SQL mutants of the migrations (mutation/listed.py --sql).

    .venv/bin/python mutation/run.py                     # every group, then the migrations
    .venv/bin/python mutation/run.py enriched repository # some groups (names below)
    .venv/bin/python mutation/run.py --report            # only print the last results
    .venv/bin/python mutation/run.py --list              # the groups and their tests

Each group gets a scratch directory `mutation/work/<group>/` (git-ignored) that looks like the
repository to mutmut: `src` links to `shared/` (so the mutated copy `mutants/src/lorafiles` is
what the tests import), `tests`, `migrations`, `functions` and `infra` are copied in, and a
generated `setup.cfg` holds the group's `only_mutate` and test selection. mutmut itself narrows
further: each mutant runs only the selected tests that executed its function (stopping at the
first failure). One embedded PostgreSQL serves every test session (`DATABASE_URL`), so a mutant
does not start a server of its own. Results stay in the scratch directory: a second run retests
only what changed (delete `mutation/work/` to start over).

The score of a module is killed / (mutants - equivalent). A mutant that no selected test reaches
("no tests") counts as survived. Equivalent mutants are listed, with the reason, in
`mutation/equivalent.txt`; a listed name that no longer exists is reported as stale.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "mutation" / "work"
PKG = "src/lorafiles"

# group -> (modules to mutate, relative to shared/lorafiles; tests to run)
GROUPS: dict[str, tuple[list[str], list[str]]] = {
    "enriched": (["domain/enriched.py"], ["tests/domain/test_enriched.py", "tests/mutants/test_enriched_rules.py",
                                          "tests/domain/test_enriched_hostile.py",
                                          "tests/domain/test_render.py"]),
    "domain": (["domain/rules.py", "domain/summary.py", "domain/render.py", "domain/problems.py",
                "domain/bundle.py", "domain/preview.py"],
               ["tests/domain/test_rules.py", "tests/domain/test_summary.py", "tests/domain/test_render.py",
                "tests/mutants/test_summary_order.py", "tests/mutants/test_domain_edges.py",
                "tests/domain/exports/test_exports_aggregate.py", "tests/tokens/test_tokens_render.py",
                "tests/domain/test_preview.py", "tests/domain/exports/test_bundle_layout.py",
                "tests/domain/test_enriched_hostile.py", "tests/domain/test_problems.py"]),
    "quality": (["domain/quality/*.py"], ["tests/domain/test_quality_units.py", "tests/domain/test_diff_rules.py",
                                          "tests/quality/test_dataset_quality.py", "tests/quality/test_version_diff.py",
                                          "tests/mutants/test_quality_edges.py"]),
    "exports": (["domain/exports/*.py"], ["tests/domain/exports", "tests/mutants/test_exports_edges.py"]),
    "tokens": (["tokens/*.py"], ["tests/tokens", "tests/mutants/test_tokens_edges.py", "tests/mutants/test_tokens_layout.py"]),
    # the use cases, in three groups (each with the tests that drive it; every pipeline test goes
    # through steps.py, so one group over usecases/*.py would run them all for every mutant)
    "steps": (["usecases/steps.py"],
              ["tests/mutants/test_steps_batches.py", "tests/mutants/test_steps_items.py", "tests/mutants/test_steps_guards.py",
               "tests/mutants/test_parallel_batches.py", "tests/mutants/test_steps_publish.py",
               "tests/core/test_core_versions.py", "tests/pipeline/test_storable_strings.py"]),
    # publication's writer on its own: the step-by-step publication tests and the writer's own
    # (every pipeline test runs the writer; with all of them each survivor cost minutes)
    "publish": (["usecases/publish.py"],
                ["tests/mutants/test_publish_writer.py",
                 *[f"tests/mutants/test_steps_publish.py::{t}" for t in (
                     "test_a_published_version_is_what_the_database_says_it_is",
                     "test_each_version_is_built_from_the_members_then_the_new_ones",
                     "test_dataset_names_are_lower_snake_case_ascii", "test_members_are_read_in_order_whatever_the_read_ahead",
                     "test_reading_ahead_is_bounded")]]),
    "jobs": (["usecases/jobs.py", "usecases/importing.py", "usecases/common.py"],
             ["tests/mutants/test_common_rules.py", "tests/mutants/test_jobs_regenerate.py", "tests/mutants/test_importing.py",
              "tests/mutants/test_steps_guards.py", "tests/mutants/test_jobs_and_import.py", "tests/core"]),
    "reading": (["usecases/reading.py", "usecases/dataset_files.py", "usecases/diffing.py"],
                ["tests/mutants/test_reading.py", "tests/mutants/test_dataset_files.py", "tests/mutants/test_diffing.py",
                 "tests/quality/test_version_diff.py", "tests/core",
                 "tests/mutants/test_publish_writer.py::"
                 "test_a_split_file_whose_lines_disagree_with_its_members_statistics_is_never_finished"]),
    # (every test reaches the repository: the pipeline's own tests, the schema's, and the
    # maintenance tests that use its staleness and recovery queries; not the corpus build)
    "repository": (["db/repository.py"], ["tests/mutants/test_repository_guards.py",
                                          "tests/mutants/test_steps_guards.py", "tests/mutants/test_steps_publish.py",
                                          "tests/mutants/test_steps_items.py",
                                          "tests/mutants/test_parallel_batches.py", "tests/db",
                                          "tests/core/test_core_versions.py", "tests/core/test_core_import.py",
                                          "tests/core/test_core_selection_blocked.py", "tests/events/test_reap.py",
                                          "tests/events/test_stale_and_regenerate.py",
                                          "tests/events/test_stale_vs_other_jobs.py",
                                          "tests/events/test_enrichment_events.py"]),
}
# Code that is not product logic: the seeded sample generator (test data; tests/domain/test_samples.py)
NOT_MUTATED = ["domain/samples.py", "*/__init__.py"]

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", 37: "killed",
          None: "not checked"}
KILLED = {"killed", "timeout"}


def equivalents() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "mutation" / "equivalent.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            out[name] = reason.strip()
    return out


def prepare(group: str) -> Path:
    modules, tests = GROUPS[group]
    tests_root = Path(os.environ.get("MUTATE_TESTS_FROM", ROOT))  # another copy of tests/ (e.g. an older one)
    tests = [t for t in tests if (tests_root / t.split("::")[0]).exists()]  # (a group's new test files may not exist yet)
    work = WORK / group
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    if not src.is_symlink():
        src.symlink_to(ROOT / "shared")
    shared = work / "shared"  # tests look for ../shared/fixtures beside the repository
    if not shared.is_symlink() and (ROOT.parent / "shared").is_dir():
        shared.symlink_to(ROOT.parent / "shared")
    for name in ("tests", "migrations", "functions", "infra"):
        target = work / name
        if target.is_symlink():
            target.unlink()
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree((tests_root if name == "tests" else ROOT) / name, target,
                        ignore=shutil.ignore_patterns("__pycache__"))
    cfg = ["[mutmut]", "source_paths=", f"    {PKG}",
           "only_mutate=", *[f"    {PKG}/{m}" for m in modules],
           "do_not_mutate=", *[f"    {PKG}/{m}" for m in NOT_MUTATED],
           "also_copy=", "    migrations", "    functions", "    infra", "    pytest.ini", "    README.md",
           "pytest_add_cli_args=", "    -p", "    no:cacheprovider", "    -p", "    no:timeout",
           "pytest_add_cli_args_test_selection=", *[f"    {t}" for t in tests],
           "timeout_multiplier=4.0", "timeout_constant=10.0", "use_setproctitle=false",
           "use_git_change_detection=false", ""]
    (work / "setup.cfg").write_text("\n".join(cfg))
    shutil.copyfile(ROOT / "README.md", work / "README.md")  # (a test checks the documented limits)
    (work / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings =\n"
                                     "    ignore::DeprecationWarning\n    ignore:XDG_RUNTIME_DIR\n"
                                     "    ignore:No application metrics to publish\n")
    return work


def run_group(group: str, children: int, env: dict[str, str], retest: bool = False,
              only: list[str] | None = None, fresh_stats: bool = False) -> int:
    # mutmut keeps a mutant's result while its function is unchanged; after new tests, name the
    # survivors explicitly to test them again (--retest-survivors). `only` (mutant name patterns,
    # fnmatch) tests just those mutants, e.g. one function of a large module at a time.
    before = results(group)
    named = [k for statuses in before.values() for k, s in statuses.items()
             if (not retest or s not in KILLED) and (not only or any(fnmatch(k, p) for p in only))]
    again = named if retest else list(only or [])
    work = prepare(group)
    if fresh_stats:  # which tests reach which function, collected again from every selected test
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    if retest or only:  # mutmut forgets the results of the mutants it was not asked to test: keep them
        chosen = set(named)
        kept = {k: s for statuses in before.values() for k, s in statuses.items()
                if k not in chosen and s != "not checked"}
        (work / "kept-before-run.json").write_text(json.dumps(kept, sort_keys=True))
    else:
        (work / "kept-before-run.json").unlink(missing_ok=True)
    (work / "killed-before-retest.json").unlink(missing_ok=True)  # (the older, kills-only form)
    print(f"\n=== {group}: mutating {', '.join(GROUPS[group][0])}; tests {' '.join(GROUPS[group][1])}", flush=True)
    mutmut = Path(sys.executable).with_name("mutmut")
    log = work / "mutmut.log"
    with open(log, "w") as out:
        code = subprocess.call(["nice", "-n", "10", str(mutmut), "run", "--max-children", str(children), *again],
                               cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    if code != 0:
        print(f"mutmut exited {code} for {group}; see {log}", file=sys.stderr)
        print("".join(log.read_text(errors="replace").splitlines(True)[-30:]), file=sys.stderr)
    return code


def results(group: str) -> dict[str, dict[str, str]]:
    """module path -> {mutant name: status} from mutmut's .meta files of the group."""
    out: dict[str, dict[str, str]] = {}
    base = WORK / group / "mutants" / PKG
    if not base.is_dir():
        return out
    kept_file = WORK / group / "kept-before-run.json"
    kept: dict[str, str] = json.loads(kept_file.read_text()) if kept_file.exists() else {}
    old_file = WORK / group / "killed-before-retest.json"
    if old_file.exists():
        kept.update({k: "killed" for k in json.loads(old_file.read_text())})
    for meta in sorted(base.rglob("*.py.meta")):
        module = meta.relative_to(base).as_posix()[:-len(".meta")]
        data = json.loads(meta.read_text())
        out[module] = {k: (kept[k] if k in kept and STATUS.get(v) == "not checked" else STATUS.get(v, "suspicious"))
                       for k, v in data["exit_code_by_key"].items()}
    return out


def report(groups: list[str]) -> bool:
    eq, seen = equivalents(), set()
    rows, survivors, ok = [], [], True
    for group in groups:
        for module, statuses in results(group).items():
            if not any(fnmatch(module, m) for m in GROUPS[group][0]):
                continue
            total = len(statuses)
            if not total:
                continue
            equiv = [k for k in statuses if k in eq]
            seen.update(equiv)
            killed = sum(1 for k, s in statuses.items() if s in KILLED and k not in eq)
            unchecked = [k for k, s in statuses.items() if s in ("not checked", "skipped") and k not in eq]
            alive = sorted(k for k, s in statuses.items() if s not in KILLED and k not in eq and k not in unchecked)
            counted = total - len(equiv) - len(unchecked)
            # nothing checked is no score at all (a failed mutmut run), never 100 %
            score = 100.0 * killed / counted if counted else float("nan")
            rows.append((module, total, killed, len(equiv), len(alive), len(unchecked), score))
            survivors += [(k, statuses[k]) for k in alive]
            ok &= counted > 0 and not unchecked and score >= 90.0
    if rows:
        print(f"\n{'module':32} {'mutants':>7} {'killed':>6} {'equiv':>5} {'alive':>5} {'unchecked':>9} {'score':>6}")
        for module, total, killed, equiv, alive, unchecked, score in rows:
            print(f"{module:32} {total:7d} {killed:6d} {equiv:5d} {alive:5d} {unchecked:9d} {score:5.1f}%")
    if survivors:
        print("\nsurvivors (show one with: cd mutation/work/<group> && ../../../.venv/bin/mutmut show NAME):")
        for name, status in survivors:
            print(f"  {name}  [{status}]")
    everything = {k for g in groups for s in results(g).values() for k in s}
    stale = sorted(k for k in eq if k not in everything and any(k.startswith(f"lorafiles.{p}") for p in
                                                                 _prefixes(groups)))
    if stale:
        print("\nstale entries in mutation/equivalent.txt (no such mutant any more):")
        for k in stale:
            print("  " + k)
    return ok


def _prefixes(groups: list[str]) -> set[str]:
    return {m.replace("/", ".").replace(".py", "").replace("*", "") for g in groups for m in GROUPS[g][0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("groups", nargs="*", help=f"groups to run (default all): {', '.join(GROUPS)}, migrations")
    ap.add_argument("--report", action="store_true", help="only print the results of the last runs")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--retest-survivors", action="store_true",
                    help="test the last run's survivors again (mutmut keeps results of unchanged code)")
    ap.add_argument("--only", action="append", metavar="PATTERN",
                    help="test only the mutants whose names match (fnmatch; repeatable), keeping the other results")
    ap.add_argument("--fresh-stats", action="store_true",
                    help="collect which tests reach each function again (mutmut only adds new tests' coverage "
                         "to its record; a function that changed keeps what older tests reached)")
    ap.add_argument("--children", type=int, default=int(os.environ.get("MUTATE_CHILDREN", "2")))
    args = ap.parse_args()
    if args.list:
        for g, (mods, tests) in GROUPS.items():
            print(f"{g:11} {' '.join(mods)}\n{'':11} tests: {' '.join(tests)}")
        print(f"{'migrations':11} migrations/*.sql (mutation/listed.py --sql)")
        return 0
    wanted = args.groups or [*GROUPS, "migrations"]
    unknown = [g for g in wanted if g not in GROUPS and g != "migrations"]
    if unknown:
        ap.error(f"unknown group(s) {unknown}; known: {', '.join(GROUPS)}, migrations")
    python_groups = [g for g in wanted if g in GROUPS]
    sql_ok = runs_ok = True
    if not args.report:
        sys.path.insert(0, str(ROOT / "shared"))
        from lorafiles.db.connect import embedded_server

        with ExitStack() as stack:
            env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
            if (ROOT.parent / "shared" / "fixtures").is_dir():
                env.setdefault("LORAFILES_FIXTURES", str(ROOT.parent / "shared" / "fixtures"))
            if not env.get("DATABASE_URL"):
                base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lorafiles-mutate-pg-")))
                env["DATABASE_URL"] = stack.enter_context(embedded_server(base / "pgdata", cleanup_mode="delete"))
                _fast_cluster(env["DATABASE_URL"])
            for group in python_groups:
                if run_group(group, args.children, env, retest=args.retest_survivors, only=args.only,
                             fresh_stats=args.fresh_stats) != 0:
                    runs_ok = False  # a group whose mutmut run failed fails the target, whatever its old results say
            if "migrations" in wanted:
                sql_ok = subprocess.call([sys.executable, str(ROOT / "mutation" / "listed.py"), "--sql"],
                                         cwd=ROOT, env=env) == 0
    ok = report(python_groups) if python_groups else True
    if args.report and "migrations" in wanted:
        last = WORK / "migrations.txt"
        if last.exists():
            print("\n" + last.read_text())
    return 0 if ok and sql_ok and runs_ok else 1


def _fast_cluster(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for setting in ("fsync", "synchronous_commit", "full_page_writes"):
            conn.execute(f"ALTER SYSTEM SET {setting} = off")
        conn.execute("SELECT pg_reload_conf()")


if __name__ == "__main__":
    sys.exit(main())
