"""The real console script in a subprocess, on the test PostgreSQL (DATABASE_URL) with
LORAFILES_HOME (and so local storage) in a temporary directory."""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from lorafiles.domain.samples import write_sample_dir

from cli_helpers import Result, run_cli

OTHER = "0d0d0d0d-2222-4222-8222-000000000002"
BATCH = "0b0b0b0b-0000-4000-8000-000000000b01"


@dataclass
class Env:
    home: Path
    url: str
    ids: list[str]                 # imported by the local owner, in file order
    theirs: str                    # imported by OTHER
    file_id: str = ""
    v1: dict[str, bytes] = field(default_factory=dict)

    def run(self, *args: str, **kw) -> Result:
        return run_cli(list(args), home=self.home, database_url=self.url, **kw)

    def sql(self, query: str, params=()) -> list[dict]:
        with psycopg.connect(self.url, autocommit=True, prepare_threshold=None,
                             row_factory=psycopg.rows.dict_row) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def counts(self) -> dict[str, int]:
        tables = [r["table_name"] for r in self.sql(
            "select table_name from information_schema.tables where table_schema = 'public' "
            "and (table_name like 'lora\\_%%' or table_name in ('conversations', 'batch_jobs', 'batch_items'))")]
        return {t: self.sql(f'select count(*) as n from "{t}"')[0]["n"] for t in tables}

    def storage(self) -> dict[str, str]:
        root = self.home / "storage"
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in root.rglob("*") if p.is_file()}

    def snapshot(self):
        return self.counts(), self.sql("select * from lora_training_files order by id"), self.storage()


@pytest.fixture(scope="module")
def env(module_db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Env:
    base = tmp_path_factory.mktemp("cli")
    mine, theirs = base / "mine", base / "theirs"
    write_sample_dir(mine, 8, seed=101)
    write_sample_dir(theirs, 1, seed=202)
    e = Env(home=base / "home", url=module_db_url, ids=[], theirs="")
    r = e.run("import", str(mine), "--batch-id", BATCH, "--json")
    assert r.code == 0, r.err
    e.ids = [i["conversation_id"] for i in r.json["imported"]]
    assert len(e.ids) == 8
    r = e.run("import", str(theirs), "--owner", OTHER, "--json")
    assert r.code == 0, r.err
    [e.theirs] = [i["conversation_id"] for i in r.json["imported"]]

    r = e.run("create", "CLI file", "--conversations", *e.ids[:3], "--json")
    assert r.code == 0, r.err
    e.file_id = r.json["id"]
    assert r.json["version"] == 1 and r.json["conversations"] == 3
    e.v1 = {"json": Path(r.json["json"]).read_bytes(), "jsonl": Path(r.json["jsonl"]).read_bytes()}
    r = e.run("add", e.file_id, "--conversations", *e.ids[3:5], "--json")
    assert r.code == 0, r.err
    assert r.json["version"] == 2 and r.json["conversations"] == 5
    return e


# ---------------------------------------------------------------------------- import

def test_import_of_legacy_files_refuses_each_with_a_clear_line(env: Env, shared_fixtures: Path):
    legacy = sorted((shared_fixtures / "legacy").glob("*.json"))
    before = env.snapshot()
    r = env.run("import", str(shared_fixtures / "legacy"))
    r.no_traceback()
    assert r.code != 0
    refused = [line for line in r.err.splitlines() if line.startswith("error: ") and ": refused: " in line]
    for path in legacy:
        mine = [line for line in refused if line.startswith(f"error: {path}: refused: ")]
        assert mine, f"no line for {path.name}"
    assert all(any(code in line for code in ("wrong_shape", "invalid_json")) for line in refused)
    invalid = [line for line in refused if "seed-v3-convo-10-invalid-json.json" in line]
    assert len(invalid) == 1 and "invalid_json" in invalid[0] and "line 420 column 52" in invalid[0]
    minimal = [line for line in refused if "minimal-conversation-metadata-turns.json" in line]
    assert len(minimal) == 1 and "training_pairs" in minimal[0]
    assert "imported 0 conversation(s), refused 3" in r.out
    assert env.snapshot() == before


def test_import_of_legacy_files_json(env: Env, shared_fixtures: Path):
    r = env.run("import", str(shared_fixtures / "legacy"), "--json")
    r.no_traceback()
    assert r.code != 0
    result = r.json
    assert result["imported"] == []
    assert sorted(Path(x["file"]).name for x in result["refused"]) == sorted(
        p.name for p in (shared_fixtures / "legacy").glob("*.json"))
    assert all(x["problems"] and all(p["code"] and p["message"] for p in x["problems"]) for x in result["refused"])


def test_import_with_an_invalid_batch_id_is_a_clear_error(env: Env, tmp_path: Path):
    write_sample_dir(tmp_path / "x", 1, seed=303)
    before = env.snapshot()
    r = env.run("import", str(tmp_path / "x"), "--batch-id", "not-a-uuid")
    r.no_traceback()
    assert r.code != 0
    assert any("batch" in line and "not-a-uuid" in line for line in r.error_lines()), r.err
    assert env.snapshot() == before


def test_import_of_a_missing_directory(env: Env, tmp_path: Path):
    r = env.run("import", str(tmp_path / "nowhere"))
    r.no_traceback()
    assert r.code == 1
    assert r.error_lines() == [f"error: {tmp_path / 'nowhere'}: not a directory"]


# ---------------------------------------------------------------------------- blocked selections

def _mark_ineligible(env: Env, cid: str) -> None:
    env.sql("update conversations set enrichment_status = 'enriched' where conversation_id = %s", (cid,))


def test_create_with_bad_ids_names_each_and_changes_nothing(env: Env):
    ineligible, good = env.ids[7], env.ids[5]
    _mark_ineligible(env, ineligible)
    unknown = str(uuid.uuid4())
    before = env.snapshot()
    r = env.run("create", "Blocked", "--conversations", unknown, ineligible, env.theirs, good, good)
    r.no_traceback()
    assert r.code == 1
    assert r.out == ""
    assert r.error_lines() == [
        f"error: {unknown}: not_found: no such conversation",
        f"error: {ineligible}: not_eligible: enrichment_status is 'enriched', not 'completed'",
        f"error: {env.theirs}: not_found: no such conversation",
        f"error: {good}: repeated_in_request: selected more than once in this request",
    ]
    assert env.snapshot() == before


def test_add_with_bad_ids_names_each_and_changes_nothing(env: Env):
    ineligible, member, good = env.ids[7], env.ids[0], env.ids[6]
    _mark_ineligible(env, ineligible)
    unknown = str(uuid.uuid4())
    before = env.snapshot()
    r = env.run("add", env.file_id, "--conversations", good, member, unknown, ineligible, env.theirs, good)
    r.no_traceback()
    assert r.code == 1
    lines = r.error_lines()
    assert [tuple(line.split(": ")[1:3]) for line in lines] == [
        (member, "already_in_file"), (unknown, "not_found"), (ineligible, "not_eligible"),
        (env.theirs, "not_found"), (good, "repeated_in_request")]
    assert all(line.startswith("error: ") and len(line.split(": ")) >= 4 for line in lines)
    assert env.snapshot() == before


def test_blocked_request_with_json_gives_a_parseable_error_object(env: Env):
    unknown = str(uuid.uuid4())
    r = env.run("add", env.file_id, "--conversations", env.ids[1], unknown, "--json")
    r.no_traceback()
    assert r.code == 1
    err = r.json["error"]
    assert err["code"] == "selection_blocked"
    assert [(d["conversation_id"], d["code"]) for d in err["details"]] == [
        (env.ids[1], "already_in_file"), (unknown, "not_found")]
    assert all(d["message"] for d in err["details"])


def test_add_to_a_file_id_that_is_not_a_uuid_is_one_line(env: Env):
    # (an unknown, well-formed id is covered by `show` below and by tests/core)
    r = env.run("add", "not-a-uuid", "--conversations", env.ids[6])
    r.no_traceback()
    assert r.code == 1
    assert r.error_lines() == ["error: training file not-a-uuid not found"]


def test_add_with_a_file_missing_from_storage_fails_with_file_missing(env: Env):
    cid = env.ids[6]
    key = env.sql("select enriched_file_path from conversations where conversation_id = %s", (cid,))[0]["enriched_file_path"]
    stored = env.home / "storage" / "conversation-files" / key
    data = stored.read_bytes()
    stored.unlink()
    try:
        version_before = env.sql("select current_version from lora_training_files where id = %s", (env.file_id,))
        r = env.run("add", env.file_id, "--conversations", cid, "--json")
        r.no_traceback()
        assert r.code == 1
        err = r.json["error"]
        text = json.dumps(err)
        assert cid in text and "file_missing" in text
        assert any(line.startswith(f"error: {cid}: file_missing") for line in r.error_lines()), r.err
        assert env.sql("select current_version from lora_training_files where id = %s", (env.file_id,)) == version_before
    finally:
        stored.write_bytes(data)


# ---------------------------------------------------------------------------- reading

def test_list(env: Env):
    r = env.run("list", "--json")
    assert r.code == 0, r.err
    [f] = [f for f in r.json if f["id"] == env.file_id]
    assert (f["name"], f["version"], f["conversations"], f["status"]) == ("CLI file", 2, 5, "ready")
    human = env.run("list")
    assert human.code == 0 and env.file_id in human.out and "CLI file" in human.out
    other = env.run("list", "--json", "--owner", OTHER)
    assert other.code == 0 and other.json == []


def test_show(env: Env):
    r = env.run("show", env.file_id, "--json")
    assert r.code == 0, r.err
    s = r.json
    assert [v["version"] for v in s["versions"]] == [1, 2]
    assert [v["conversations"] for v in s["versions"]] == [3, 5]
    assert [m["conversation_id"] for m in s["members"]] == env.ids[:5]
    assert s["batch_ids"] == [BATCH] and {m["batch_id"] for m in s["members"]} == {BATCH}
    assert s["job"]["kind"] in ("create", "add")  # the latest job of the file
    human = env.run("show", env.file_id)
    assert human.code == 0 and "CLI file" in human.out and "v1:" in human.out and "v2:" in human.out


@pytest.mark.parametrize("file_id", ["not-a-uuid", "00000000-0000-4000-8000-000000000000"])
def test_show_unknown_file_is_one_line(env: Env, file_id: str):
    r = env.run("show", file_id)
    r.no_traceback()
    assert r.code == 1
    assert r.error_lines() == [f"error: training file {file_id} not found"]


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_download_versions(env: Env, tmp_path: Path, fmt: str):
    out1, out2 = tmp_path / f"v1.{fmt}", tmp_path / f"v2.{fmt}"
    r = env.run("download", env.file_id, "--format", fmt, "--version", "1", "--out", str(out1), "--json")
    assert r.code == 0, r.err
    assert out1.read_bytes() == env.v1[fmt]                                   # v1 unchanged by the add
    assert r.json["version"] == 1 and r.json["sha256"] == hashlib.sha256(env.v1[fmt]).hexdigest()
    r = env.run("download", env.file_id, "--format", fmt, "--out", str(out2))
    assert r.code == 0, r.err
    assert "(v2," in r.out
    v2 = out2.read_bytes()
    if fmt == "json":
        doc = json.loads(v2)
        assert [c["conversation_metadata"]["conversation_id"] for c in doc["conversations"]] == env.ids[:5]
        assert doc["training_file_metadata"]["total_conversations"] == 5
    else:
        lines = [json.loads(x) for x in v2[:-1].split(b"\n")]
        assert len(lines) - 1 == lines[0]["_meta"]["total_pairs"]
        assert [c for c in dict.fromkeys(x["conversation_id"] for x in lines[1:])] == env.ids[:5]


def test_download_unknown_version_is_one_line(env: Env, tmp_path: Path):
    r = env.run("download", env.file_id, "--format", "json", "--version", "9", "--out", str(tmp_path / "x"))
    r.no_traceback()
    assert r.code == 1
    assert r.error_lines() == [f"error: training file {env.file_id} has no version 9"]
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------------------- migrate

def test_migrate_twice_is_fine(env: Env):
    migrations = sorted(p.name for p in (Path(__file__).resolve().parents[2] / "migrations").glob("*.sql"))
    before = env.counts()
    first = env.run("migrate", "--json")
    second = env.run("migrate", "--json")
    for r in (first, second):
        r.no_traceback()
        assert r.code == 0, r.err
    assert first.json == second.json
    applied = first.json["applied"]
    assert len(applied) == len(migrations) and all(any(m.startswith(str(a)) or str(a) in m for m in migrations)
                                                   for a in applied)
    assert env.counts() == before
    human = env.run("migrate")
    assert human.code == 0 and "up to date" in human.out

