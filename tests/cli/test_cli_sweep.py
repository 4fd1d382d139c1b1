"""Issue 9 item 10: the CLI never shows a traceback. The real console script in subprocesses on
the test PostgreSQL: every subcommand with missing, malformed and hostile arguments gives one
clear `error: ...` line per problem and exit 1 (0 tracebacks, 0 internal errors); the global
`--owner` is honoured; a failed job prints its error, not the interpreter's internals."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from lorafiles.domain.samples import write_sample_dir

from cli_helpers import LOCAL_OWNER, Result, run_cli

OTHER = "0e0e0e0e-3333-4333-8333-000000000003"
UNKNOWN = "12345678-1234-4234-8234-123456789abc"
SURROGATE = "bad\udcffbytes"  # argv bytes that are not UTF-8 (b"bad\xffbytes")


@dataclass
class Env:
    home: Path
    url: str
    tmp: Path
    ids: list[str]
    file_id: str
    key: str

    def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return run_cli(list(args), home=self.home, database_url=self.url, env=env)

    def sql(self, query: str, params=()) -> list[dict]:
        with psycopg.connect(self.url, autocommit=True, prepare_threshold=None,
                             row_factory=psycopg.rows.dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture(scope="module")
def env(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Env:
    tmp = tmp_path_factory.mktemp("sweep")
    write_sample_dir(tmp / "mine", 4, seed=404)
    e = Env(home=tmp / "home", url=module_db_url, tmp=tmp, ids=[], file_id="", key="sweep-key-1")
    r = e.run("import", str(tmp / "mine"), "--json")
    assert r.code == 0, r.err
    e.ids = [i["conversation_id"] for i in r.json["imported"]]
    r = e.run("create", "Sweep", "--conversations", *e.ids[:2], "--idempotency-key", e.key, "--json")
    assert r.code == 0, r.err
    e.file_id = r.json["id"]
    (tmp / "a-file.txt").write_text("not a directory\n")
    (tmp / "a-dir").mkdir()
    (tmp / "json-dir" / "looks-like.json").mkdir(parents=True)  # a directory where a file is expected
    return e


def _cases(e: Env) -> list[tuple[list[str], dict[str, str] | None]]:
    F, ids, t = e.file_id, e.ids, e.tmp
    out = str(t / "out.json")
    bad_ids = [f"urn:uuid:{UNKNOWN}", "{" + UNKNOWN + "}", UNKNOWN.replace("-", ""), SURROGATE, "' or 1=1 --"]
    cases: list[list[str]] = [
        [], ["frobnicate"], ["--owner"], ["list", "--nope"], ["migrate", "extra"],
        # import
        ["import"], ["import", str(t / "nowhere")], ["import", str(t / "a-file.txt")],
        ["import", str(t / "json-dir")], ["import", str(t / "mine"), "--batch-id", f"urn:uuid:{UNKNOWN}"],
        ["import", str(t / "mine"), "--batch-id", ""], ["import", SURROGATE],
        # create
        ["create"], ["create", "n"], ["create", "n", "--conversations"],
        ["create", "", "--conversations", ids[2]], ["create", "a\nb", "--conversations", ids[2]],
        ["create", "evil\u202egnp", "--conversations", ids[2]], ["create", "\u200b", "--conversations", ids[2]],
        ["create", "x" * 300, "--conversations", ids[2]], ["create", SURROGATE, "--conversations", ids[2]],
        ["create", "n", "--conversations", f"urn:uuid:{ids[2]}", "x" * 5000, SURROGATE],
        ["create", "n", "--all-imported", "--conversations", ids[2]],
        ["create", "SWEEP", "--conversations", ids[2]],  # the name is taken (case-folded)
        ["create", "Other", "--conversations", ids[2], "--idempotency-key", e.key],  # key of another request
        ["create", "n", "--conversations", *([ids[2]] * 81)],
        # add
        ["add"], ["add", F], ["add", F, "--conversations", ids[0]],
        ["add", F, "--conversations", ids[2], "--idempotency-key", e.key],
        *[["add", bad, "--conversations", ids[2]] for bad in bad_ids[:1] + bad_ids[3:]],
        # list / show
        ["list", "--owner", "bad"], ["--owner", "", "list"], ["list", "--owner", f"urn:uuid:{LOCAL_OWNER}"],
        ["list", "--owner", SURROGATE], ["show"], *[["show", bad] for bad in bad_ids[:3] + ["x" * 5000]],
        # download
        ["download"], ["download", F], ["download", F, "--format", "xml", "--out", out],
        ["download", F, "--format", "json", "--out", str(t / "a-dir")],
        ["download", F, "--format", "json", "--out", str(t / "missing" / "x.json")],
        ["download", F, "--format", "json", "--out", str(t / "a-file.txt" / "x.json")],
        ["download", F, "--format", "json", "--out", ""],
        *[["download", F, "--format", "json", "--version", v, "--out", out]
          for v in ("abc", "0", "99999999999999999999", "2147483648")],
        ["download", F, "--format", "jsonl", "--version", "7", "--out", out],
        *[["download", bad, "--format", "json", "--out", out] for bad in bad_ids[:2]],
        # regenerate / reap
        ["regenerate"], ["regenerate", F, "--stale"], ["regenerate", f"urn:uuid:{F}"], ["regenerate", UNKNOWN],
        ["regenerate", F, "--idempotency-key", e.key], ["regenerate", "--stale", "--limit", "-1"],
        ["regenerate", "--stale", "--limit", "abc"],
        *[["reap", "--older-than", v] for v in ("-5", "99999999999999999999")],
        # demo / serve (never a valid serve: it would run)
        ["demo", "--seed", "abc"], ["serve", "--port", "99999"], ["serve", "--sample-conversations", "-3"],
        ["serve", "--host", "no.such.host.invalid", "--port", "0"], ["serve", "--port", "0", "--owner", "bad"],
    ]
    with_env = [
        (["list"], {"LORAFILES_OWNER": "not-a-user"}),
        (["list"], {"LORAFILES_BATCH_SIZE": "ten"}),
        (["list"], {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=3"}),
    ]
    return [(c, None) for c in cases] + with_env


def _check(r: Result) -> list[str]:
    problems = []
    text = r.out + r.err
    if "Traceback" in text or 'File "' in text:
        problems.append("traceback")
    if "internal error" in text or "FailureEventException" in text:
        problems.append("internal error")
    if r.code != 1:
        problems.append(f"exit {r.code}")
    lines = r.error_lines()
    if not lines or not all(line.startswith("error: ") for line in lines):
        problems.append(f"stderr not `error: ...` lines: {lines[:3]}")
    return problems


def test_every_subcommand_with_missing_malformed_and_hostile_arguments(env: Env) -> None:
    cases = _cases(env)
    counts_before = env.sql("select (select count(*) from lora_training_files) f, (select count(*) from "
                            "lora_training_jobs) j, (select count(*) from conversations) c")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: env.run(*c[0], env=c[1]), cases))
    failures = {" ".join(a[:80] for a in r.args)[:200]: (problems, r.err[-600:])
                for r in results if (problems := _check(r))}
    assert not failures, "\n".join(f"{k}: {v}" for k, v in failures.items())
    # the usage mistakes and refusals changed nothing
    assert env.sql("select (select count(*) from lora_training_files) f, (select count(*) from "
                   "lora_training_jobs) j, (select count(*) from conversations) c") == counts_before
    assert not (env.tmp / "out.json").exists() and not list((env.tmp / "a-dir").iterdir())
    by_args = {tuple(r.args): r for r in results}
    one_liners = [
        (["show", f"urn:uuid:{UNKNOWN}"], f"error: training file urn:uuid:{UNKNOWN} not found"),
        (["list", "--owner", "bad"], "error: --owner 'bad' is not a user id"),
        (["download", env.file_id, "--format", "json", "--out", str(env.tmp / "missing" / "x.json")],
         f"error: --out {env.tmp / 'missing' / 'x.json'}: directory {env.tmp / 'missing'} does not exist"),
        (["download", env.file_id, "--format", "json", "--out", str(env.tmp / "a-dir")],
         f"error: --out {env.tmp / 'a-dir'}: is a directory"),
        (["add", env.file_id, "--conversations", env.ids[2], "--idempotency-key", env.key],
         "error: the idempotency key 'sweep-key-1' was already used for a different request"),
    ]
    for args, start in one_liners:
        lines = by_args[tuple(args)].error_lines()
        assert len(lines) == 1 and lines[0].startswith(start), (args, lines)
    [line] = by_args[("import", str(env.tmp / "json-dir"))].error_lines()
    assert "looks-like.json: refused: unreadable" in line, line


def test_global_owner_applies_to_the_subcommand(env: Env, tmp_path: Path) -> None:
    write_sample_dir(tmp_path / "theirs", 1, seed=505)
    r = env.run("--owner", OTHER, "import", str(tmp_path / "theirs"), "--json")
    assert r.code == 0, r.err
    [cid] = [i["conversation_id"] for i in r.json["imported"]]
    assert env.sql("select created_by::text as o from conversations where conversation_id = %s",
                   (cid,)) == [{"o": OTHER}]
    mine = env.run("--json", "list")
    theirs = env.run("--owner", OTHER.upper(), "--json", "list")
    assert mine.code == theirs.code == 0
    assert [f["id"] for f in mine.json] == [env.file_id] and theirs.json == []
    # after the command wins over before it
    r = env.run("--owner", OTHER, "list", "--owner", LOCAL_OWNER, "--json")
    assert r.code == 0 and [f["id"] for f in r.json] == [env.file_id]


def test_a_failed_job_prints_its_error_not_the_interpreters_trace(env: Env) -> None:
    cid = env.ids[3]
    key = env.sql("select enriched_file_path from conversations where conversation_id = %s", (cid,))[0][
        "enriched_file_path"]
    stored = env.home / "storage" / "conversation-files" / key
    data = stored.read_bytes()
    stored.write_bytes(b'{"dataset_metadata": ')  # broken after import: the job reads it and fails
    try:
        r = env.run("create", f"Fails {uuid.uuid4().hex[:6]}", "--conversations", cid)
    finally:
        stored.write_bytes(data)
    assert _check(r) == [], r.err
    lines = r.error_lines()
    assert any(line.startswith(f"error: {cid}: invalid_json") for line in lines), lines
    assert len(lines) <= 3 and all(len(line) < 400 for line in lines), lines
