"""Listed mutants: one textual change each, applied to a scratch copy of `shared/` and
`migrations/`, then the tests named for it are run against that copy. Each must fail.

mutmut cannot mutate SQL, so this is how the migrations (constraints, RLS policies, grants)
are mutation-tested; the same list also keeps the hand-made survivors of issue 14 in the Python
code (each with the test that kills it), so they stay killed.

    .venv/bin/python mutation/listed.py            # every listed mutant
    .venv/bin/python mutation/listed.py --sql      # only the migrations' (what `make mutate` runs)
    .venv/bin/python mutation/listed.py rls-versions-owner compensate-filter   # by id

The working tree is never modified: the copy lives in a temporary directory, put first on
PYTHONPATH (and LORAFILES_MIGRATIONS_DIR points at its migrations).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIG = "migrations/20260101000300_training_files.sql"
T = "tests/mutants/"
BUCKET = "migrations/20261202000400_training_files_bucket.sql"
STORAGE = "tests/supabase/test_storage_bucket.py::"


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str        # relative to the repository
    old: str         # must occur exactly once
    new: str
    tests: tuple[str, ...]

    @property
    def sql(self) -> bool:
        return self.path.endswith(".sql")


MUTANTS = [
    # --- migrations: RLS policies (each table's own), grants, constraints --------------------------------
    Mutant("rls-versions-owner", MIG, "      AND f.owner_id = (SELECT auth.uid())\n", "\n",
           ("tests/db/test_schema_guards.py::test_each_tables_own_policy_hides_other_owners_rows",)),
    *[Mutant(f"rls-{t}-owner", MIG,
             f"ON public.{t} FOR SELECT TO authenticated\n  USING (owner_id = (SELECT auth.uid()));",
             f"ON public.{t} FOR SELECT TO authenticated\n  USING (true);",
             ("tests/db/test_schema_guards.py::test_each_tables_own_policy_hides_other_owners_rows",))
      for t in ("lora_training_files", "lora_training_jobs", "lora_training_job_items", "lora_training_file_members")],
    Mutant("rls-files-disabled", MIG, "ALTER TABLE public.lora_training_files         ENABLE ROW LEVEL SECURITY;", "",
           ("tests/db/test_rls.py::test_user_sees_only_own_rows",)),
    Mutant("rls-versions-disabled", MIG, "ALTER TABLE public.lora_training_file_versions ENABLE ROW LEVEL SECURITY;",
           "", ("tests/db/test_schema_guards.py::test_each_tables_own_policy_hides_other_owners_rows",)),
    Mutant("grant-write-authenticated", MIG, "GRANT SELECT ON public.lora_training_files, public.lora_training_jobs,",
           "GRANT SELECT, INSERT, UPDATE, DELETE ON public.lora_training_files, public.lora_training_jobs,",
           ("tests/db/test_rls.py::test_authenticated_cannot_write_for_want_of_a_grant",)),
    Mutant("grant-anon", MIG, "  TO authenticated;\nGRANT ALL", "  TO authenticated, anon;\nGRANT ALL",
           ("tests/db/test_rls.py::test_anon_sees_nothing",)),
    Mutant("version-check-zero", MIG, "CHECK (version >= 1)", "CHECK (version >= 0)",
           ("tests/db/test_schema_guards.py::test_versions_start_at_one",)),
    Mutant("job-status-cancelled", MIG, "CHECK (status IN ('queued', 'running', 'succeeded', 'failed'))",
           "CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled'))",
           ("tests/db/test_schema_guards.py::test_job_statuses_are_exactly_the_four",)),
    Mutant("member-position-unique", MIG,
           ",\n  CONSTRAINT lora_training_file_members_file_position_key UNIQUE (file_id, position)", "",
           ("tests/db/test_schema_guards.py::test_two_members_cannot_share_a_position",)),
    Mutant("one-active-job", MIG, "  WHERE status IN ('queued', 'running');", "  WHERE status IN ('queued');",
           ("tests/db/test_schema_guards.py::test_a_file_has_at_most_one_active_job",)),
    Mutant("versions-immutable-trigger", MIG, "  BEFORE UPDATE ON public.lora_training_file_versions\n",
           "  BEFORE UPDATE ON public.lora_training_files\n",
           ("tests/db/test_rls.py::test_versions_are_immutable_even_for_the_owner",)),
    # --- migrations: the training-files bucket and its storage.objects read policy (Supabase) -----------
    Mutant("storage-policy-any-bucket", BUCKET, "USING (bucket_id = 'training-files' AND split_part(",
           "USING (split_part(", (STORAGE + "test_a_user_reads_only_objects_under_their_own_folder",)),
    Mutant("storage-policy-prefix", BUCKET, "split_part(name, '/', 1) = (SELECT auth.uid())::text);\n",
           "name LIKE (SELECT auth.uid())::text || '%');\n",
           (STORAGE + "test_a_user_reads_only_objects_under_their_own_folder",)),
    Mutant("storage-policy-anon", BUCKET, "ON storage.objects FOR SELECT TO authenticated\n",
           "ON storage.objects FOR SELECT TO authenticated, anon\n",
           (STORAGE + "test_a_user_reads_only_objects_under_their_own_folder",)),
    Mutant("storage-bucket-public", BUCKET, "VALUES ('training-files', 'training-files', false, size_limit",
           "VALUES ('training-files', 'training-files', true, size_limit",
           (STORAGE + "test_bucket_is_private_with_the_allowed_types_of_every_artifact",)),
    # --- repository -------------------------------------------------------------------------------------
    Mutant("batch-done-distinct", "shared/lorafiles/db/repository.py", "array(select distinct unnest(",
           "array(select unnest(", (T + "test_steps_guards.py::test_a_retried_batch_is_recorded_once",)),
    Mutant("stale-not-creating", "shared/lorafiles/db/repository.py", " and status <> 'creating' order by id", " order by id",
           (T + "test_steps_guards.py::test_a_file_still_being_created_is_never_marked_stale",)),
    Mutant("first-error-not-succeeded", "shared/lorafiles/db/repository.py", '"\n                          " and status <> \'succeeded\'"', '"',
           (T + "test_steps_guards.py::test_a_late_error_is_not_recorded_on_a_job_that_succeeded",)),
    # --- use cases (issue 14's service.py survivors) -----------------------------------------------------
    Mutant("compensate-filter", "shared/lorafiles/usecases/steps.py",
           "garbage = [k for k in garbage if k not in repo.referenced_fragment_keys(file_id)]", "pass",
           (T + "test_steps_guards.py::test_compensating_a_failed_regenerate_leaves_every_members_fragments_and_the_next_add_publishes",
            T + "test_steps_guards.py::test_compensating_a_failed_add_under_a_new_policy_keeps_the_rerendered_members_v4_fragments")),
    Mutant("generate-running-guard", "shared/lorafiles/usecases/steps.py",
           'if repo.job(job_id, lock=True)["status"] != "running":', "if False:",
           (T + "test_steps_guards.py::test_a_job_reaped_while_its_artifacts_upload_publishes_nothing",)),
    Mutant("generate-moved-ge", "shared/lorafiles/usecases/steps.py", 'if f["current_version"] >= version:',
           'if f["current_version"] > version:',
           (T + "test_steps_guards.py::test_generate_refuses_a_version_number_another_job_took_meanwhile",)),
    Mutant("compensate-never-published-le", "shared/lorafiles/usecases/steps.py",
           'f["current_version"] <= job["base_version"]', 'f["current_version"] < job["base_version"]',
           (T + "test_steps_guards.py::test_compensation_removes_the_artifacts_of_a_version_that_was_never_published",)),
    Mutant("compensate-once", "shared/lorafiles/usecases/steps.py",
           'if job["status"] == "succeeded" or job["step"] == "compensated":', 'if job["status"] == "succeeded":',
           (T + "test_steps_guards.py::test_compensation_delivered_twice_changes_nothing_the_second_time",)),
    Mutant("name-own-file", "shared/lorafiles/usecases/common.py", 'if other is not None and str(other["id"]) != file_id:',
           "if other is not None:",
           (T + "test_steps_guards.py::test_validation_retried_after_the_job_created_its_file_is_not_a_name_clash",)),
    Mutant("regenerate-too-many", "shared/lorafiles/usecases/common.py",
           'if not (kind == "regenerate" and p.code == "too_many")]', "]",
           (T + "test_steps_guards.py::test_regenerate_may_hold_more_conversations_than_one_request",)),
    Mutant("import-quality-round", "shared/lorafiles/usecases/importing.py", "round(stats.quality_score, 1)",
           "round(stats.quality_score, 0)", (T + "test_jobs_and_import.py::test_import_records_the_mean_quality_to_one_decimal",)),
    Mutant("start-job-kinds", "shared/lorafiles/usecases/jobs.py", 'if kind not in ("create", "add"):',
           'if kind not in ("create", "add", "regenerate"):',
           (T + "test_steps_guards.py::test_start_job_accepts_only_create_and_add",)),
    Mutant("import-turn-count", "shared/lorafiles/usecases/importing.py", '"turn_count": stats.pairs,',
           '"turn_count": stats.training_pairs,', (T + "test_jobs_and_import.py::test_import_counts_every_turn",)),
    Mutant("ensure-started-status", "shared/lorafiles/usecases/jobs.py",
           'if job["execution_arn"] or job["status"] in ("succeeded", "failed"):', 'if job["execution_arn"]:',
           (T + "test_steps_guards.py::test_a_repeated_request_for_a_job_that_already_failed_starts_nothing",)),
    Mutant("open-job-failed", "shared/lorafiles/usecases/steps.py", 'if job["status"] in ("succeeded", "failed"):',
           'if job["status"] in ("succeeded",):',
           (T + "test_steps_guards.py::test_steps_of_a_failed_job_refuse_and_leave_it_failed",)),
    # --- domain -----------------------------------------------------------------------------------------
    Mutant("truncated-rstrip", "shared/lorafiles/domain/enriched.py", "p.target_response.rstrip().endswith",
           "p.target_response.endswith",
           (T + "test_enriched_rules.py::test_a_target_ending_in_a_backslash_then_spaces_is_still_truncated",)),
    Mutant("escaped-capped", "shared/lorafiles/domain/enriched.py", 'return sum(1 for t in texts if t and "\\\\n" in t)',
           'return min(1, sum(1 for t in texts if t and "\\\\n" in t))',
           (T + "test_enriched_rules.py::test_double_escaped_newlines_are_counted_per_text",)),
    Mutant("low-quality-le", "shared/lorafiles/domain/enriched.py", "sum(scores) / len(scores) < MIN_USABLE_QUALITY",
           "sum(scores) / len(scores) <= MIN_USABLE_QUALITY",
           (T + "test_enriched_rules.py::test_low_quality_is_strictly_below_two_and_a_half",)),
    Mutant("quality-le-5", "shared/lorafiles/domain/enriched.py", "Field(default=None, ge=0, le=10)",
           "Field(default=None, ge=0, le=5)", (T + "test_enriched_rules.py::test_quality_scores_range_from_zero_to_ten",)),
    Mutant("roleless-is-none", "shared/lorafiles/domain/enriched.py", "if not h.role)", "if h.role is None)",
           (T + "test_enriched_rules.py::test_history_items_with_an_empty_or_missing_role_are_counted",)),
    Mutant("scaffolding-empty", "shared/lorafiles/domain/enriched.py", "getattr(p.conversation_metadata, k) in (None, \"\")",
           "getattr(p.conversation_metadata, k) in (None,)",
           (T + "test_enriched_rules.py::test_empty_scaffolding_values_count_as_missing",)),
    Mutant("repeat-first", "shared/lorafiles/domain/enriched.py", "p.conversation_history[-1].content",
           "p.conversation_history[0].content",
           (T + "test_enriched_rules.py::test_repeated_input_is_checked_against_the_last_history_item_only",)),
    Mutant("name-unrecognised-error", "shared/lorafiles/domain/enriched.py",
           'report.warn("dataset_name_unrecognised"', 'report.error("dataset_name_unrecognised"',
           (T + "test_enriched_rules.py::test_an_unrecognised_dataset_name_is_a_warning_when_the_database_names_the_conversation",)),
    Mutant("max-errors-10", "shared/lorafiles/domain/enriched.py", "MAX_ERRORS_PER_FILE = 20", "MAX_ERRORS_PER_FILE = 10",
           (T + "test_enriched_rules.py::test_shape_errors_are_listed_up_to_twenty_then_summarised",)),
    Mutant("topics-unsorted", "shared/lorafiles/domain/summary.py", '"training_topics": dict(sorted(self._topics.items())),',
           '"training_topics": dict(self._topics.items()),',
           (T + "test_summary_order.py::test_every_distribution_is_sorted_by_key_with_unknown_in_its_place",)),
    Mutant("render-metadata-order", "shared/lorafiles/domain/render.py",
           '"version": FORMAT_VERSION,\n            "file_version": self.file_version,',
           '"file_version": self.file_version,\n            "version": FORMAT_VERSION,',
           ("tests/domain/test_render.py::test_full_json_is_byte_identical_to_one_orjson_dump",)),
    # --- conversations page ------------------------------------------------------------------------------
    Mutant("text-sort-reversed", "shared/lorafiles/conversations.py",
           'direction = sql.SQL("asc" if sort.order == "asc" else "desc")',
           'direction = sql.SQL(("asc" if sort.order == "asc" else "desc") if SORTABLE[sort.key] != "text" '
           'else ("desc" if sort.order == "asc" else "asc"))',
           (T + "test_conversation_sort.py",)),
]


def apply(m: Mutant, scratch: Path) -> None:
    target = scratch / m.path
    text = target.read_text()
    if text.count(m.old) != 1:
        raise SystemExit(f"{m.id}: the original text occurs {text.count(m.old)} times in {m.path} (list is stale)")
    target.write_text(text.replace(m.old, m.new))


def run(m: Mutant, env: dict[str, str]) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory(prefix=f"lorafiles-mutant-{m.id}-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(ROOT / "shared", scratch / "shared", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "migrations", scratch / "migrations")
        apply(m, scratch)
        menv = {**env, "PYTHONPATH": str(scratch / "shared"), "LORAFILES_MIGRATIONS_DIR": str(scratch / "migrations"),
                "LORAFILES_FUNCTIONS_DIR": str(ROOT / "functions"), "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
                              cwd=ROOT, env=menv, capture_output=True, text=True)
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [""]
        # 1: a test failed (2: collection/import error) is a kill; 0 survived; 4/5: the list is wrong
        if proc.returncode in (4, 5):
            raise SystemExit(f"{m.id}: pytest exited {proc.returncode}: {tail[0]}")
        return proc.returncode != 0, tail[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ids", nargs="*")
    ap.add_argument("--sql", action="store_true", help="only the mutants of the migrations")
    args = ap.parse_args()
    chosen = [m for m in MUTANTS if (not args.ids or m.id in args.ids) and (not args.sql or m.sql)]
    if args.ids and len(chosen) != len(set(args.ids)):
        raise SystemExit(f"unknown id(s): {sorted(set(args.ids) - {m.id for m in MUTANTS})}")
    env = dict(os.environ)
    with ExitStack() as stack:
        if not env.get("DATABASE_URL"):  # one server for every mutant's test session
            sys.path.insert(0, str(ROOT / "shared"))
            from lorafiles.db.connect import embedded_server

            base = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lorafiles-listed-pg-")))
            env["DATABASE_URL"] = stack.enter_context(embedded_server(base / "pgdata", cleanup_mode="delete"))
        return _run_all(chosen, env, args)


def _run_all(chosen: list[Mutant], env: dict[str, str], args: argparse.Namespace) -> int:
    lines, killed = [], 0
    for m in chosen:
        ok, tail = run(m, env)
        killed += ok
        lines.append(f"{'killed  ' if ok else 'SURVIVED'} {m.id:34} {m.path.split('/')[-1]:34} {tail}")
        print(lines[-1], flush=True)
    summary = f"listed mutants: {killed} of {len(chosen)} killed"
    print(summary)
    if args.sql or not args.ids:
        out = ROOT / "mutation" / "work"
        out.mkdir(parents=True, exist_ok=True)
        (out / ("migrations.txt" if args.sql else "listed.txt")).write_text("\n".join(lines + [summary]) + "\n")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
