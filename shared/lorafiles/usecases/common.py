"""What the use cases share: the ports they work over (`Context`), bucket and key naming, and the
one selection check used before a job starts and again inside it."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from ..config import Settings
from ..db.connect import Database
from ..db.repository import Repository
from ..domain.bounds import clip
from ..domain.rules import check_file_name, check_selection, normalize_name
from ..errors import NotFound
from ..ports import ObjectStore

INPUT_BUCKET = "conversation-files"
OUTPUT_BUCKET = "training-files"
FORMATS = {"json": "training.json", "jsonl": "training.jsonl"}  # the v4 artifacts
# Every artifact of a version: name (as in `download --format` and the API's `format=`) ->
# (file name in the version folder, content type it is uploaded with).
ARTIFACTS = {
    "json": ("training.json", "application/json"),
    "jsonl": ("training.jsonl", "application/jsonl"),
    "openai": ("openai.jsonl", "application/jsonl"),
    "trl": ("trl.jsonl", "application/jsonl"),
    "axolotl": ("axolotl.jsonl", "application/jsonl"),
    "axolotl_config": ("axolotl.yml", "application/yaml"),
    "sharegpt": ("sharegpt.jsonl", "application/jsonl"),
    "dataset_info": ("dataset_info.json", "application/json"),
    "report": ("report.json", "application/json"),
    "manifest": ("manifest.json", "application/json"),
    # issue 12: every export once per split (`openai_train`, `openai_validation`, ...) and the
    # dataset card that declares them to `datasets.load_dataset`
    **{f"{fmt}_{split}": (f"{fmt}.{split}.jsonl", "application/jsonl")
       for fmt in ("openai", "trl", "axolotl", "sharegpt") for split in ("train", "validation")},
    "card": ("README.md", "text/markdown"),
}
SPLIT_ARTIFACTS = {fmt: {split: f"{fmt}_{split}" for split in ("train", "validation")}
                   for fmt in ("openai", "trl", "axolotl", "sharegpt")}
MAX_BLOCKED_CHARS = 32_000


class JobStarter(Protocol):
    """Starts the state machine for a job. Same name twice starts one execution."""

    def start(self, execution_name: str, payload: dict[str, Any]) -> str: ...


@dataclass
class Context:
    """The ports and settings every use case works over (one per process; shared, so swapping the
    store, as the local server does, reaches every use case)."""

    db: Database
    store: ObjectStore
    settings: Settings = field(default_factory=Settings)
    starter: JobStarter | None = None
    # A job's timestamps come from the clock when it is registered and are reused by every
    # retry, so re-running any step renders byte-identical artifacts.
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))


class UseCase:
    """Base of the use-case classes: reads the ports from the shared context."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @property
    def db(self) -> Database:
        return self.ctx.db

    @property
    def store(self) -> ObjectStore:
        return self.ctx.store

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def starter(self) -> JobStarter | None:
        return self.ctx.starter

    def clock(self) -> datetime:
        return self.ctx.clock()


def artifact_key(owner_id: str, file_id: str, version: int, name: str) -> str:
    return f"{owner_id}/{file_id}/v{version}/{ARTIFACTS[name][0]}"


_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_ARTIFACT_KEY = re.compile(rf"{_UUID}/{_UUID}/v[1-9][0-9]{{0,9}}/"
                           "(?:" + "|".join(re.escape(f) for f, _ in ARTIFACTS.values()) + ")")


def is_artifact_key(key: object) -> bool:
    """Whether `key` is what `artifact_key` makes (so it has no `..`, no leading `/`, no NUL...)."""
    return isinstance(key, str) and _ARTIFACT_KEY.fullmatch(key) is not None


def execution_name(job: dict[str, Any]) -> str:
    return f"lorafiles-{job['kind']}-{job['id']}"


def source_file_of(enriched_file_path: str) -> str:
    """The storage path a member was read from, as recorded in the Full JSON's `source_file`."""
    return f"{INPUT_BUCKET}/{enriched_file_path}"


def path_of(source_file: str) -> str:
    return source_file.split("/", 1)[1] if source_file.startswith(INPUT_BUCKET + "/") else source_file


def selection_problems(repo: Repository, owner_id: str, ids: list[str], *, kind: str, file_id: str | None,
                        name: str | None) -> list[dict[str, Any]]:
    """The one selection check, before a job starts and again inside it. `create` checks the name
    (a file of that name that this job created itself is not a clash); `add` blocks members;
    `regenerate` takes members only and may exceed the per-request limit."""
    problems: list[dict[str, Any]] = []
    in_file: set[str] = set()
    if kind == "create":
        problems += [p.model_dump(include={"code", "message", "field"}) for p in check_file_name(name)]
        other = repo.file_by_name(owner_id, normalize_name(name)) if not problems else None
        if other is not None and str(other["id"]) != file_id:
            problems.append({"code": "name_taken", "field": "name",
                             "message": f"you already have a training file named {normalize_name(name)!r}"})
    else:
        if file_id is None or repo.file(file_id, owner_id) is None:
            raise NotFound(f"training file {file_id} not found")
        members = repo.member_ids(file_id, ids)
        if kind == "add":
            in_file = members
        else:
            problems += [{"conversation_id": c, "code": "not_in_file", "message": "not a member of this file"}
                         for c in ids if c not in members]
    found = repo.conversations_for_owner(owner_id, ids)
    problems += [p.as_dict() for p in check_selection(ids, found, in_file)
                 if not (kind == "regenerate" and p.code == "too_many")]
    return problems


def blocked_message(problems: list[dict[str, Any]], shown: int = 100) -> str:
    """One line naming every offender of a request (at most 81 ids reach it), bounded for the
    regenerate of a huge file, which can block thousands of members (a task's error is clipped
    further; the details list them all, capped, on the job row)."""
    parts = [f"{p.get('conversation_id') or p.get('field') or 'request'}: {p['code']} ({clip(str(p['message']), 200)})"
             for p in problems[:shown]]
    rest = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
    return clip(f"selection blocked, {len(problems)} problem(s): " + "; ".join(parts) + rest, MAX_BLOCKED_CHARS)
