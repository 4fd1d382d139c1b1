"""`lorafiles demo` on the embedded default (DATABASE_URL unset, LORAFILES_HOME in tmp_path):
a Full JSON and a JSONL whose counts follow formats.md."""
from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_helpers import run_cli


def _counts_follow_the_formats(full: dict, jsonl: bytes) -> None:
    assert jsonl.endswith(b"\n")
    lines = [json.loads(line) for line in jsonl[:-1].split(b"\n")]
    meta = full["training_file_metadata"]
    targets = [p for c in full["conversations"] for p in c["training_pairs"] if p["target_response"] is not None]
    assert meta["total_conversations"] == len(full["conversations"])
    assert meta["total_training_pairs"] == len(lines) - 1 == lines[0]["_meta"]["total_pairs"] == len(targets)
    assert meta["total_turns"] == sum(len(c["training_pairs"]) for c in full["conversations"])
    assert meta["total_turns"] > meta["total_training_pairs"]  # user turns are not training pairs
    assert all(line["target_response"] is not None for line in lines[1:])
    assert [line["id"] for line in lines[1:]] == [
        f"{p['id']}_{c['conversation_metadata']['conversation_id'][:8]}"
        for c in full["conversations"] for p in c["training_pairs"] if p["target_response"] is not None]


@pytest.fixture
def home() -> Iterator[Path]:
    """LORAFILES_HOME for the embedded server. Not under pytest's tmp_path: when run as root the
    embedded server drops to its own user and needs to traverse the parents, and every pytest
    session resets /tmp/pytest-of-<user> to mode 0700 (a parallel session would break us)."""
    base = Path(tempfile.mkdtemp(prefix="lorafiles-cli-home-"))
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


def test_demo_on_the_embedded_default(home: Path, tmp_path: Path):
    r = run_cli(["demo", "--json"], home=home, database_url=None)
    r.no_traceback()
    assert r.code == 0, r.err
    assert "Warning" not in r.err, r.err  # (Powertools' empty-metrics warning once showed on every run)
    result = r.json
    json_path, jsonl_path = Path(result["json"]), Path(result["jsonl"])
    assert json_path.is_file() and jsonl_path.is_file()
    assert home in json_path.parents and home in jsonl_path.parents
    full = json.loads(json_path.read_bytes())
    _counts_follow_the_formats(full, jsonl_path.read_bytes())
    assert result["conversations"] == len(full["conversations"]) == 12
    assert result["training_pairs"] == full["training_file_metadata"]["total_training_pairs"]
    assert result["version"] == 1 and result["status"] == "ready"
    # every demo conversation came from one batch, and the JSON says so
    batches = {c["conversation_metadata"]["batch_id"] for c in full["conversations"]}
    assert len(batches) == 1 and None not in batches
    # the embedded server was stopped on exit
    assert (home / "pgdata").is_dir()
    assert not (home / "pgdata" / "postmaster.pid").exists()

    # the data persists: a second process on the same home sees the file and downloads it
    listed = run_cli(["list", "--json"], home=home, database_url=None)
    assert listed.code == 0, listed.err
    assert [f["id"] for f in listed.json] == [result["id"]]
    out = tmp_path / "copy.jsonl"
    got = run_cli(["download", result["id"], "--format", "jsonl", "--out", str(out)], home=home, database_url=None)
    got.no_traceback()
    assert got.code == 0, got.err
    assert out.read_bytes() == jsonl_path.read_bytes()
    assert str(out) in got.out
