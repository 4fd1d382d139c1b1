"""Request and response models of the HTTP API (pydantic). They are the OpenAPI schema: keep
them honest, the committed docs/openapi.json and the schema-driven fuzz test are built from them."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..domain.rules import NAME_MAX
from ..tokens import SUPPORTED_MODELS
from ..usecases.common import ARTIFACTS

ArtifactFormat = Literal[tuple(ARTIFACTS)]  # type: ignore[valid-type]
TargetModel = Literal[tuple(SUPPORTED_MODELS)]  # type: ignore[valid-type]


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded: refuse both here
    # (422) instead of letting the database fail (500).
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


_NO_NUL = r"^[^\x00]*$"


def Text(max_length: int, min_length: int = 0, **kw: Any) -> Any:  # noqa: N802 - a type factory
    """A string the database can store (no NUL, valid Unicode), bounded."""
    return Annotated[str, Field(min_length=min_length, max_length=max_length, pattern=_NO_NUL, **kw),
                     AfterValidator(_storable)]


ConversationId = Text(200, 1, description="A conversation's `conversation_id`.")
FileName = Text(NAME_MAX, 1)
Description = Text(10_000)
MAX_IDS_PER_REQUEST = 1000  # request-size bound; the business limit (80) is reported as a selection problem


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------ errors
class ErrorBody(BaseModel):
    code: str = Field(description="Stable machine-readable code (see docs/API.md).")
    message: str = Field(description="Human-readable explanation.")
    details: Any = Field(default=None, description="Code-specific details, e.g. per-conversation problems.")


class ErrorResponse(BaseModel):
    """Every error response has this shape."""

    error: ErrorBody


# ------------------------------------------------------------------------------ selections
class SelectionProblem(BaseModel):
    conversation_id: str | None = Field(default=None, description="The offending conversation; empty for a "
                                                                    "problem of the whole selection.")
    code: str = Field(description="not_found | not_eligible | repeated_in_request | already_in_file | "
                                  "too_many | empty_selection | invalid_name | name_taken")
    message: str
    field: str | None = Field(default=None, description="The request field at fault (e.g. `name`).")


class ValidateSelectionRequest(_Strict):
    conversation_ids: Annotated[list[ConversationId], Field(max_length=MAX_IDS_PER_REQUEST)]
    name: FileName | None = Field(default=None, description="Target: a new file of this name.")
    file_id: UUID | None = Field(default=None, description="Target: this existing file.")

    @model_validator(mode="after")
    def _one_target(self) -> "ValidateSelectionRequest":
        if (self.name is None) == (self.file_id is None):
            raise ValueError("give exactly one of name (a new file) or file_id (an existing file)")
        return self


class SelectionReport(BaseModel):
    ok: bool = Field(description="True when the selection can be submitted as is.")
    conversations: int = Field(description="Number of ids in the request.")
    problems: list[SelectionProblem]


# ------------------------------------------------------------------------------ jobs
class TrainingPolicyRequest(_Strict):
    """How the trainer-ready exports are built. Every field is optional: a create takes the rest from
    the deployment's defaults, an add from the file's current policy (a changed policy re-renders
    the file's existing members' exports; their content is unchanged)."""

    target_model: TargetModel | None = Field(default=None, description="Tokenizer and chat template to build for.")
    max_length: int | None = Field(default=None, ge=128, le=131072,
                                   description="Most tokens per example, in the target model's template.")
    over_length: Literal["drop_turn", "trim_history", "fail"] | None = Field(
        default=None, description="A turn whose example is too long: not trained, trained with its oldest "
                                  "history trimmed (the system message kept), or the job fails.")
    min_quality: float | None = Field(default=None, ge=0, le=10,
                                      description="Targets scored below this are context only.")
    fix_literal_escapes: bool | None = Field(
        default=None, description="Literal backslash-n / backslash-quote become real characters in the exports.")

    def overrides(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class CreateTrainingFileRequest(_Strict):
    name: FileName = Field(description="Unique per user on its NFKC-normalised, case-folded form (`Straße` = "
                                       "`STRASSE`; invisible characters and surrounding spaces ignored); no control, "
                                       "line-separator or bidirectional-control characters.")
    description: Description | None = None
    conversation_ids: Annotated[list[ConversationId], Field(max_length=MAX_IDS_PER_REQUEST)]
    policy: TrainingPolicyRequest | None = None


class AddConversationsRequest(_Strict):
    conversation_ids: Annotated[list[ConversationId], Field(max_length=MAX_IDS_PER_REQUEST)]
    policy: TrainingPolicyRequest | None = None


class JobLinks(BaseModel):
    job: str
    file: str | None = None


class JobAccepted(BaseModel):
    job_id: UUID
    file_id: UUID | None = Field(description="Null for a create job until its file exists: poll the job.")
    kind: Literal["create", "add", "regenerate"]
    status: Literal["queued", "running", "succeeded", "failed"]
    links: JobLinks


class JobProgress(BaseModel):
    batches_done: int
    batches_total: int
    conversations: int


class JobStatus(BaseModel):
    id: UUID
    kind: Literal["create", "add", "regenerate"]
    status: Literal["queued", "running", "succeeded", "failed"]
    step: str | None = Field(description="validate | create | append | generate | published | compensated")
    file_id: UUID | None
    file_name: str | None
    progress: JobProgress
    published_version: int | None
    error: ErrorBody | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


# ------------------------------------------------------------------------------ files
class QualitySummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    avg_quality_score: float | None = None
    min_quality_score: float | None = None
    max_quality_score: float | None = None
    human_reviewed_count: int | None = None
    human_reviewed_percentage: float | None = None


class TrainingFileSummary(BaseModel):
    id: UUID
    name: str
    description: str | None
    status: Literal["creating", "ready", "stale"]
    current_version: int
    conversation_count: int
    training_pair_count: int
    total_turns: int
    quality_summary: QualitySummary
    created_at: datetime
    updated_at: datetime


class TrainingFileList(BaseModel):
    items: list[TrainingFileSummary] = Field(description="Newest first.")
    total: int = Field(description="All my training files (all pages).")
    limit: int
    offset: int | None = Field(description="Null when the page was addressed by cursor.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class MemberWarning(BaseModel):
    code: str
    message: str
    field: str | None = None


class Member(BaseModel):
    conversation_id: str
    position: int
    batch_id: UUID | None
    added_at: datetime
    job_id: UUID
    pairs: int
    training_pairs: int
    quality_tier: str
    persona_key: str | None
    emotional_arc_key: str | None
    training_topic_key: str | None
    warnings: list[MemberWarning] = Field(description="Found when the conversation was added; they did not block it.")


class Artifact(BaseModel):
    file: str = Field(description="File name in the version folder.")
    content_type: str
    size: int
    sha256: str
    lines: int
    path: str


class Version(BaseModel):
    version: int
    job_id: UUID
    created_at: datetime
    conversation_count: int
    training_pair_count: int
    total_turns: int
    json_size: int
    jsonl_size: int
    json_sha256: str
    jsonl_sha256: str
    policy: dict[str, Any] | None = Field(default=None, description="The training policy it was built with.")
    artifacts: dict[str, Artifact] = Field(
        default_factory=dict, description="Every artifact (empty for versions built before the exports existed).")
    export_summary: dict[str, Any] = Field(
        default_factory=dict, description="Token statistics per export, exclusions by reason, changes (report.json's summary).")


class TrainingFileDetail(TrainingFileSummary):
    target_model: str
    policy: dict[str, Any] = Field(description="The training policy of the current version (and of the next add).")
    exports: dict[str, Any] = Field(description="The current version's export figures (see Version.export_summary).")
    vertical: str | None
    batch_ids: list[UUID]
    scaffolding_distribution: dict[str, Any]
    stale_since: datetime | None
    members: list[Member]
    versions: list[Version]
    current_job: JobStatus | None


class DownloadLink(BaseModel):
    url: str = Field(description="Signed GET URL; expires after `expires_in` seconds.")
    expires_in: int
    filename: str = Field(description="`<file name>.json`/`.jsonl` for the v4 files, `<file name>-v<N>-<artifact "
                                      "file>` for the others (Content-Disposition).")
    format: ArtifactFormat
    version: int
    size: int
    sha256: str


# ------------------------------------------------------------------------------ version diff
class DiffMember(BaseModel):
    conversation_id: str
    split: str | None = Field(description="`train` or `validation` in the version it is listed from.")
    excluded: str | None = Field(description="Why the dataset policy left it out of the splits, if it did.")


class SourceChange(BaseModel):
    conversation_id: str
    source_file: str = Field(description="Its enriched file in the later of the two versions.")
    from_sha256: str
    to_sha256: str
    from_source_file: str | None = Field(default=None, description="Only when the file's path changed too.")


class DiffConversations(BaseModel):
    added: list[DiffMember] = Field(description="In the second version only, in its member order.")
    removed: list[DiffMember] = Field(description="In the first version only (when comparing to an older one).")
    source_changed: list[SourceChange] = Field(description="In both, built from different enriched files.")
    split_changed: list[dict[str, Any]] = Field(description="`{conversation_id, from, to}`: a split that moved "
                                                            "(only when the split policy changed).")
    exclusion_changed: list[dict[str, Any]] = Field(description="`{conversation_id, from, to}`.")
    counts: dict[str, int] = Field(description="`from`, `to`, `added`, `removed`, `source_changed`, "
                                               "`split_changed`, `exclusion_changed`, `unchanged`.")


class VersionDiff(BaseModel):
    """Every figure that can move is `{"from", "to", "change"}` (`change` null when a side is unknown)."""

    file_id: UUID
    from_version: int
    to_version: int
    conversations: DiffConversations
    policy_changed: dict[str, Any] = Field(description="Policy fields whose value differs: `{from, to}` each.")
    model_changed: dict[str, Any] = Field(description="Target model identity fields that differ.")
    tokens: dict[str, Any] = Field(description="Per export format: lines, tokens per epoch, exclusions, trims and "
                                               "the p50/p95/max of total and trainable tokens per example.")
    exclusions: dict[str, Any] = Field(description="Turns not trained on, by reason: count and trainable tokens.")
    conversation_exclusions: dict[str, Any] = Field(description="Conversations the dataset policy excluded, by reason.")
    changes: dict[str, Any] = Field(description="The exports' structural changes and text fixes, by kind.")
    splits: dict[str, Any] = Field(description="Conversations, lines and trainable tokens per split.")
    duplicates: dict[str, Any]
    coverage: dict[str, Any] = Field(description="Persona x arc x topic cells whose count changed, cells filled "
                                                 "and emptied, and the number of empty cells.")
    warnings: dict[str, list[str]] = Field(description="Dataset warning codes `added` and `resolved`.")
    notes: list[str] = Field(description="What the diff cannot tell (e.g. a version older than dataset quality).")


# ------------------------------------------------------------------------------ conversations
class ConversationItem(BaseModel):
    conversation_id: str
    conversation_name: str | None
    batch_id: UUID | None
    persona_key: str | None
    emotional_arc_key: str | None
    topic_key: str | None
    enrichment_status: str | None
    quality_score: float | None
    turn_count: int | None
    created_at: datetime | None
    enriched_at: datetime | None
    eligible: bool = Field(description="May be put in a training file (lorafiles.domain.rules.is_eligible).")
    ineligible_reason: str | None
    training_file_ids: list[UUID] = Field(description="My training files that already contain it.")


class TrainingFileOption(BaseModel):
    id: UUID
    name: str
    status: Literal["creating", "ready", "stale"]
    conversation_count: int


class ConversationPage(BaseModel):
    items: list[ConversationItem]
    total: int = Field(description="Rows matching the filters (all pages).")
    limit: int
    offset: int | None = Field(description="Null when the page was addressed by cursor.")
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")
    training_files: list[TrainingFileOption] = Field(
        description="My training files (for the 'add to existing file' dropdown), newest first.")
