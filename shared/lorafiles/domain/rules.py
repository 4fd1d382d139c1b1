"""Business rules, each in exactly one place."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from .problems import Problem

MAX_SELECTION = 80
NAME_MAX = 255
ELIGIBLE_STATUS = "completed"
MIN_USABLE_QUALITY = 2.5  # below it a conversation's tier is `rejected` (and its report warns)


def is_eligible(enrichment_status: str | None, enriched_file_path: str | None) -> bool:
    """A conversation qualifies only when its enrichment completed and its file is stored."""
    return enrichment_status == ELIGIBLE_STATUS and bool(enriched_file_path)


def ineligibility_reason(enrichment_status: str | None, enriched_file_path: str | None) -> str | None:
    if enrichment_status != ELIGIBLE_STATUS:
        return f"enrichment_status is {enrichment_status!r}, not 'completed'"
    if not enriched_file_path:
        return "enriched_file_path is empty"
    return None


def quality_tier(score: float | None) -> str:
    """Tier from a quality score (1..5): >=4.5 seed_dataset, >=3.5 production, >=2.5 experimental."""
    if score is None:
        return "rejected"
    if score >= 4.5:
        return "seed_dataset"
    if score >= 3.5:
        return "production"
    if score >= MIN_USABLE_QUALITY:
        return "experimental"
    return "rejected"


def normalize_name(name: str) -> str:
    return name.strip()


def name_key(name: str) -> str:
    """Names are unique per owner ignoring case (the database index uses lower(name))."""
    return normalize_name(name).lower()


def check_file_name(name: str | None) -> list[Problem]:
    if name is None or not normalize_name(name):
        return [Problem(code="invalid_name", message="name must not be empty", field="name")]
    if len(normalize_name(name)) > NAME_MAX:
        return [Problem(code="invalid_name", message=f"name is longer than {NAME_MAX} characters", field="name")]
    return []


@dataclass(frozen=True)
class SelectionProblem:
    conversation_id: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"conversation_id": self.conversation_id, "code": self.code, "message": self.message}


def check_selection(
    requested: Sequence[str],
    found: Mapping[str, Mapping[str, Any]],
    already_in_file: Iterable[str] = (),
) -> list[SelectionProblem]:
    """Every problem of a selection, one per offending conversation id (in request order).

    `found` maps conversation ids the caller may use (owned by them) to rows carrying
    `enrichment_status` and `enriched_file_path`; ids owned by someone else must be left out,
    so they are reported exactly like ids that do not exist.
    """
    problems: list[SelectionProblem] = []
    if not requested:
        return [SelectionProblem("", "empty_selection", "select at least one conversation")]
    if len(requested) > MAX_SELECTION:
        problems.append(SelectionProblem(
            "", "too_many", f"{len(requested)} conversations selected; at most {MAX_SELECTION} per request"))
    in_file = set(already_in_file)
    seen: set[str] = set()
    for cid in requested:
        if cid in seen:
            problems.append(SelectionProblem(cid, "repeated_in_request", "selected more than once in this request"))
            continue
        seen.add(cid)
        row = found.get(cid)
        if row is None:
            problems.append(SelectionProblem(cid, "not_found", "no such conversation"))
            continue
        reason = ineligibility_reason(row.get("enrichment_status"), row.get("enriched_file_path"))
        if reason:
            problems.append(SelectionProblem(cid, "not_eligible", reason))
        if cid in in_file:
            problems.append(SelectionProblem(cid, "already_in_file", "already in this training file"))
    return problems
