"""Helpers of the published-exports tests: build training files through the real service and
pipeline (tests/core/core_harness.py), download every artifact of a version, and read the
exports the way a trainer does (`view_of`)."""
from __future__ import annotations

import hashlib
import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

TESTS = Path(__file__).resolve().parents[1]
for _folder in ("core", "cli"):  # the core harness and the CLI runner are reused, not copied
    if str(TESTS / _folder) not in sys.path:
        sys.path.insert(0, str(TESTS / _folder))

from core_harness import OWNER, Harness  # noqa: E402

from lorafiles.domain.exports import EXPORT_FORMATS, view_of  # noqa: E402
from lorafiles.usecases.common import ARTIFACTS  # noqa: E402

BATCH = "5e5e5e5e-0000-4000-8000-0000000e0e01"
LINE_KEYS = {"openai": {"messages"}, "trl": {"prompt", "completion"}, "axolotl": {"messages"},
             "sharegpt": {"conversations", "system"}}


def uuid_of(doc: dict[str, Any]) -> str:
    """The conversation id the import gives a fixture file (as tests/core does)."""
    return doc["dataset_metadata"]["dataset_name"].removeprefix("fp_conversation_").lower()


@dataclass
class Fixtures:
    """One fixture folder, imported once: its files' bytes by conversation id, in file order."""

    folder: str
    paths: list[Path]
    ids: list[str]
    blobs: dict[str, bytes]
    sha256: dict[str, str] = field(init=False)  # of each file's bytes, as imported

    def __post_init__(self) -> None:
        self.sha256 = {cid: hashlib.sha256(b).hexdigest() for cid, b in self.blobs.items()}


def import_folder(h: Harness, folder: Path) -> Fixtures:
    paths = sorted(folder.glob("*.json"))
    blobs = {uuid_of(json.loads(p.read_bytes())): p.read_bytes() for p in paths}
    ids = h.import_paths(paths, batch_id=BATCH)
    assert set(ids) == set(blobs) and len(ids) == len(paths)
    return Fixtures(folder.name, paths, ids, blobs)


@dataclass
class Version:
    """Every artifact of one published version, downloaded through the service."""

    file_id: str
    version: int
    raw: dict[str, bytes]
    located: dict[str, dict[str, Any]]            # reading.artifact() per artifact name
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def manifest(self) -> dict[str, Any]:
        return json.loads(self.raw["manifest"])

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.raw["report"])

    def views(self, fmt: str) -> list[tuple[list[dict[str, str]], list[bool]]]:
        return [view_of(fmt, record) for record in self.lines[fmt]]

    def member_slices(self, fmt: str) -> dict[str, list[dict[str, Any]]]:
        """The export's lines per member: the exports are written in member order and the report
        gives each conversation's number of lines."""
        out, at = {}, 0
        for conv in self.report["conversations"]:
            n = conv["exports"]["formats"][fmt]["lines"]
            out[conv["conversation_id"]] = self.lines[fmt][at:at + n]
            at += n
        assert at == len(self.lines[fmt]), (fmt, at, len(self.lines[fmt]))
        return out


def jsonl_records(data: bytes) -> list[dict[str, Any]]:
    assert data.endswith(b"\n"), "a JSONL export ends with a newline"
    body = data[:-1].split(b"\n")
    assert all(body), "no empty line"
    return [orjson.loads(line) for line in body]


def fetch_version(h: Harness, file_id: str, version: int, owner: str = OWNER) -> Version:
    raw, located = {}, {}
    for name in ARTIFACTS:
        a = h.service.reading.artifact(owner, file_id, name, version)
        assert a["version"] == version
        located[name] = a
        raw[name] = h.store.get(a["bucket"], a["key"])
    v = Version(file_id, version, raw, located)
    v.lines = {fmt: jsonl_records(raw[fmt]) for fmt in EXPORT_FORMATS}
    return v


def create_file(h: Harness, ids: list[str], name: str | None = None, **policy: Any) -> dict[str, Any]:
    job = h.run(kind="create", conversation_ids=ids, name=name or f"exports {uuid.uuid4()}", policy=policy or None)
    assert job["status"] == "succeeded", job["error"]
    return job


def add_to_file(h: Harness, file_id: str, ids: list[str], **policy: Any) -> dict[str, Any]:
    return h.run(kind="add", conversation_ids=ids, file_id=file_id, policy=policy or None)


def nearest_rank(values: list[int], p: int) -> int:
    """The p-th percentile by nearest rank (the manifest's declared method), computed here anew."""
    ordered = sorted(values)
    rank = max(1, -(-p * len(ordered) // 100))
    return ordered[rank - 1]


def figures(values: list[int]) -> dict[str, Any]:
    return {"min": min(values), "p50": nearest_rank(values, 50), "p95": nearest_rank(values, 95),
            "p99": nearest_rank(values, 99), "max": max(values), "mean": round(sum(values) / len(values), 2)}


def has_key(value: Any, key: str) -> bool:
    """`key` anywhere in a decoded JSON value."""
    if isinstance(value, dict):
        return key in value or any(has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(has_key(v, key) for v in value)
    return False
