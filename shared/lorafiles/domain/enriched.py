"""The enriched Individual conversation JSON (input): tolerant models and the validation report.

The models accept the real variants (extra `input_parameters`, missing scaffolding keys, open
sets of keys and phases). Output is always rendered from the *raw* decoded dicts, so no key is
added, dropped or rewritten by validation: the v4 outputs carry the pairs unchanged.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Mapping

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, Strict, ValidationError

from .bounds import listing, unstorable
from .problems import ConversationReport
from .rules import MIN_USABLE_QUALITY

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
DATASET_NAME_RE = re.compile(r"^fp_conversation_(" + UUID_RE.pattern + r")$")
SCAFFOLDING_KEYS = ("persona_archetype", "emotional_arc", "emotional_arc_key", "training_topic", "training_topic_key")
MAX_ERRORS_PER_FILE = 20
# Deeper than any real file (about 6 levels) and far below what the renderer can write (orjson
# encodes at most 254 levels): a deeper document is refused, never a crash while rendering.
MAX_DEPTH = 64
# A text made only of whitespace (what str.isspace() calls whitespace) and invisible characters
# (zero-width space/joiners, word joiner, BOM, soft hyphen) is blank.
_BLANK = ("\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
          "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000" "\u200b\u200c\u200d\u2060\ufeff\u00ad")


@dataclass(frozen=True)
class EnrichedLimits:
    """Configurable limits on one enriched file (Settings reads them from the environment)."""

    max_bytes: int = 5_000_000  # LORAFILES_MAX_ENRICHED_BYTES
    max_pairs: int = 500  # LORAFILES_MAX_PAIRS_PER_CONVERSATION
    max_text_chars: int = 200_000  # LORAFILES_MAX_TEXT_CHARS (any string value or key)


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class HistoryItem(_Loose):
    turn: int | None = None
    role: str | None = None
    content: str
    emotional_state: Any = None


class TrainingMetadata(_Loose):
    # strict: `true`, "3.5" or [3] are refused, never read as numbers (an int is a number)
    quality_score: Annotated[float, Strict()] | None = Field(default=None, ge=0, le=10)
    human_reviewed: StrictBool | None = False


class EmotionalContext(_Loose):
    detected_emotions: dict[str, Any] | None = None


class PairMetadata(_Loose):
    client_persona: str | None = None
    persona_archetype: str | None = None
    emotional_arc: str | None = None
    emotional_arc_key: str | None = None
    training_topic: str | None = None
    training_topic_key: str | None = None
    conversation_phase: str | None = None


class TrainingPair(_Loose):
    id: str = Field(min_length=1)
    conversation_id: str | None = None
    turn_number: StrictInt
    conversation_metadata: PairMetadata
    system_prompt: str
    conversation_history: list[HistoryItem]
    current_user_input: str
    emotional_context: EmotionalContext
    target_response: str | None
    training_metadata: TrainingMetadata


class DatasetMetadata(_Loose):
    dataset_name: str
    created_date: str | None = None
    vertical: str | None = None
    quality_tier: str | None = None


class InputParameters(_Loose):
    persona_key: str | None = None
    persona_name: str | None = None
    emotional_arc_key: str | None = None
    emotional_arc_name: str | None = None
    training_topic_key: str | None = None
    training_topic_name: str | None = None


class EnrichedConversation(_Loose):
    dataset_metadata: DatasetMetadata
    consultant_profile: dict[str, Any]
    training_pairs: list[TrainingPair] = Field(min_length=1)
    input_parameters: InputParameters | None = None


@dataclass(frozen=True)
class Scaffolding:
    persona_key: str | None = None
    persona_name: str | None = None
    emotional_arc_key: str | None = None
    emotional_arc: str | None = None
    training_topic_key: str | None = None
    training_topic: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {
            "persona_key": self.persona_key,
            "persona_name": self.persona_name,
            "emotional_arc_key": self.emotional_arc_key,
            "emotional_arc": self.emotional_arc,
            "training_topic_key": self.training_topic_key,
            "training_topic": self.training_topic,
        }


@dataclass
class ParsedConversation:
    """A decoded enriched file plus its report. `raw` is the untouched decoded JSON."""

    report: ConversationReport
    raw: dict[str, Any] = field(default_factory=dict)
    model: EnrichedConversation | None = None
    file_uuid: str | None = None

    @property
    def ok(self) -> bool:
        return self.model is not None and self.report.ok

    @property
    def pairs(self) -> list[dict[str, Any]]:
        return self.raw.get("training_pairs", []) if self.model else []

    @property
    def dataset_metadata(self) -> dict[str, Any]:
        return self.raw.get("dataset_metadata", {}) if self.model else {}

    @property
    def consultant_profile(self) -> dict[str, Any]:
        return self.raw.get("consultant_profile", {}) if self.model else {}

    def scaffolding(self, hint: Mapping[str, Any] | None = None) -> Scaffolding:
        """Resolve the conversation's scaffolding.

        Precedence: the database row (`persona_key`, `emotional_arc_key`, `topic_key`, then
        `scaffolding_snapshot`), then the file's `input_parameters`, then the first pair's
        `conversation_metadata`. Real rows often have the key columns empty.
        """
        hint = hint or {}
        snap = hint.get("scaffolding_snapshot") or {}
        sp, sa, st = snap.get("persona") or {}, snap.get("emotional_arc") or {}, snap.get("training_topic") or {}
        ip = self.model.input_parameters if self.model and self.model.input_parameters else InputParameters()
        pm = self.model.training_pairs[0].conversation_metadata if self.model else PairMetadata()
        persona_from_pair = (pm.client_persona or "").split(" - ")[0].strip() or None
        return Scaffolding(
            persona_key=_first(hint.get("persona_key"), sp.get("persona_key"), ip.persona_key, pm.persona_archetype),
            persona_name=_first(sp.get("name"), ip.persona_name, persona_from_pair),
            emotional_arc_key=_first(hint.get("emotional_arc_key"), sa.get("arc_key"), ip.emotional_arc_key, pm.emotional_arc_key),
            emotional_arc=_first(sa.get("name"), ip.emotional_arc_name, pm.emotional_arc),
            training_topic_key=_first(hint.get("topic_key"), st.get("topic_key"), ip.training_topic_key, pm.training_topic_key),
            training_topic=_first(st.get("name"), ip.training_topic_name, pm.training_topic),
        )


def _first(*values: Any) -> Any:
    return next((v for v in values if v not in (None, "")), None)


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def parse_enriched(data: bytes, *, source: str, conversation_id: str | None = None,
                   limits: EnrichedLimits | None = None) -> ParsedConversation:
    """Decode and validate one enriched file. Never raises on bad input: problems go in the report.

    `conversation_id` is the database's id (the authority); without it (import) the id must be
    recoverable from `dataset_metadata.dataset_name`. Nothing is read silently: a duplicate key,
    a value of the wrong type, a string the database cannot store or one over `limits` is an
    error naming the field.
    """
    limits = limits or EnrichedLimits()
    report = ConversationReport(conversation_id=conversation_id, source=source)
    if len(data) > limits.max_bytes:
        report.error("file_too_large", f"the file is {len(data)} bytes; the limit is {limits.max_bytes} bytes "
                     "per enriched file (LORAFILES_MAX_ENRICHED_BYTES)")
        return ParsedConversation(report=report)
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        report.error("invalid_json", f"not valid JSON: {exc}")
        return ParsedConversation(report=report)
    if not isinstance(raw, dict):
        report.error("wrong_shape", f"top level is a JSON {type(raw).__name__}, expected an object")
        return ParsedConversation(report=report)
    missing = [k for k in ("dataset_metadata", "consultant_profile", "training_pairs") if k not in raw]
    if missing:
        keys = listing(sorted(raw), 6, 40)
        report.error(
            "wrong_shape",
            f"not a v4 enriched conversation: missing {', '.join(missing)} (top-level keys: {keys})",
        )
        return ParsedConversation(report=report)  # refused: nothing of it is used
    pairs = raw["training_pairs"]
    if isinstance(pairs, list) and len(pairs) > limits.max_pairs:
        report.error("too_many_pairs", f"{len(pairs)} training pairs; the limit is {limits.max_pairs} per "
                     "conversation (LORAFILES_MAX_PAIRS_PER_CONVERSATION)", "training_pairs")
        return ParsedConversation(report=report)  # refused: nothing of it is used
    if not _check_values(raw, data, report, limits) or not _check_duplicate_keys(data, report):
        return ParsedConversation(report=report)  # refused: nothing of it is used
    try:
        model = EnrichedConversation.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors()[:MAX_ERRORS_PER_FILE]:
            report.error("wrong_shape", err["msg"], field=_loc(err["loc"]))
        # the rest are counted, not listed: the report's own omitted-count (one mechanism for every cap)
        report.errors_omitted += max(0, exc.error_count() - MAX_ERRORS_PER_FILE)
        return ParsedConversation(report=report)  # refused: nothing of it is used

    parsed = ParsedConversation(report=report, raw=raw, model=model)
    _check_identity(parsed, conversation_id)
    _check_pairs(parsed)
    return parsed


def _path(parts: tuple[Any, ...]) -> str | None:
    return _loc(parts) or None


def _check_values(raw: dict[str, Any], data: bytes, report: ConversationReport, limits: EnrichedLimits) -> bool:
    """Every key and string of the document: storable by PostgreSQL, within the length limit, not
    nested deeper than MAX_DEPTH. True when nothing was found.

    Cheap in the usual case: JSON can only spell a NUL as the escape \\u0000 (and orjson
    refuses lone surrogates), no string is longer than the file, so unless the bytes say
    otherwise only the nesting depth is walked; the full walk, which names the fields, runs
    when something may be wrong."""
    if b"\\u0000" not in data and len(data) <= limits.max_text_chars and _shallow(raw):
        return True
    before = report.error_count
    stack: list[tuple[Any, tuple[Any, ...]]] = [(raw, ())]
    while stack:
        node, parts = stack.pop()
        if len(parts) > MAX_DEPTH:
            report.error("too_deep", f"nested more than {MAX_DEPTH} levels deep", _path(parts))
            continue
        if isinstance(node, str):
            why = unstorable(node)
            if why is not None:
                report.error("unstorable_text", f"this text {why}", _path(parts))
            elif len(node) > limits.max_text_chars:
                report.error("text_too_long", f"{len(node)} characters; the limit is {limits.max_text_chars} per "
                             "text field (LORAFILES_MAX_TEXT_CHARS)", _path(parts))
        elif isinstance(node, dict):
            for key, value in reversed(node.items()):
                why = unstorable(key)
                if why is not None:
                    report.error("unstorable_text", f"a key ({key!r}) {why}", _path(parts))
                elif len(key) > limits.max_text_chars:
                    report.error("text_too_long", f"a key of {len(key)} characters; the limit is "
                                 f"{limits.max_text_chars} (LORAFILES_MAX_TEXT_CHARS)", _path(parts))
                stack.append((value, parts + (key,)))
        elif isinstance(node, list):
            stack.extend((node[i], parts + (i,)) for i in range(len(node) - 1, -1, -1))
    return report.error_count == before


_DEPTH_PROBE = 254 - MAX_DEPTH  # orjson encodes at most 254 nested containers


def _shallow(raw: Any) -> bool:
    """No container deeper than MAX_DEPTH: wrapped in 254 - MAX_DEPTH lists, the document is still
    encodable by orjson exactly when it is (a C-speed depth check; the fast path of _check_values)."""
    probe = raw
    for _ in range(_DEPTH_PROBE):
        probe = [probe]
    try:
        orjson.dumps(probe)
    except orjson.JSONEncodeError:
        return False
    return True


class _Duplicate(Exception):
    """An object with two equal keys (raised by the first, cheap decoding)."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(dict(pairs)) != len(pairs):
        raise _Duplicate  # which key, and where, is found by the second decoding
    return None  # the decoded value is not needed: keep the check cheap


_DUPLICATE_FINDER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


class _Pairs(list):
    pass


def _check_duplicate_keys(data: bytes, report: ConversationReport) -> bool:
    """orjson keeps the last of two equal keys without a word. The standard library's decoder hands
    every object's key/value pairs to a hook, which is the cheap way to see them (about 1 ms per
    50 KB file); only when a duplicate is found is the document decoded again to say where."""
    try:
        _DUPLICATE_FINDER.decode(data.decode("utf-8"))  # orjson has checked that it is UTF-8
        return True
    except _Duplicate:
        pass
    except (ValueError, RecursionError):  # not after orjson accepted it within MAX_DEPTH
        return True
    stack: list[tuple[Any, tuple[Any, ...]]] = [(json.loads(data, object_pairs_hook=_Pairs), ())]
    while stack:
        node, parts = stack.pop()
        if isinstance(node, _Pairs):
            keys = [k for k, _ in node]
            dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
            if dup is not None:
                report.error("duplicate_key",
                             f"key {dup!r} appears {keys.count(dup)} times in one object; a JSON reader would "
                             "silently keep only one of them", _path(parts))
                return False
            stack.extend((v, parts + (k,)) for k, v in reversed(node))
        elif isinstance(node, list):
            stack.extend((node[i], parts + (i,)) for i in range(len(node) - 1, -1, -1))
    return True


def _blank(text: str | None) -> bool:
    return text is not None and not text.strip(_BLANK)


def _check_identity(parsed: ParsedConversation, conversation_id: str | None) -> None:
    report, name = parsed.report, parsed.model.dataset_metadata.dataset_name
    match = DATASET_NAME_RE.match(name)
    parsed.file_uuid = match.group(1).lower() if match else None
    field_name = "dataset_metadata.dataset_name"
    if conversation_id is None:
        if parsed.file_uuid is None:
            report.error("no_conversation_id", f"dataset_name {name!r} is not fp_conversation_<uuid>", field_name)
        else:
            report.conversation_id = parsed.file_uuid
    elif parsed.file_uuid is None:
        report.warn("dataset_name_unrecognised", f"dataset_name {name!r} is not fp_conversation_<uuid>", field_name)
    elif parsed.file_uuid != conversation_id.lower():
        report.warn(
            "dataset_name_mismatch",
            f"dataset_name names {parsed.file_uuid}; the database id {conversation_id} is used",
            field_name,
        )


def _check_pairs(parsed: ParsedConversation) -> None:
    report, pairs = parsed.report, parsed.model.training_pairs
    turns = [p.turn_number for p in pairs]
    if turns != list(range(1, len(pairs) + 1)):
        report.error("non_sequential_turns", f"turn_number values {listing(turns, 20)} are not 1..{len(pairs)}",
                     "training_pairs")
    targets = [p for p in pairs if p.target_response is not None]
    if not targets:
        report.error("no_trainable_pair", "no training pair has a target_response", "training_pairs")
    for i, p in enumerate(pairs):
        if p.target_response is not None and p.training_metadata.quality_score is None:
            report.error("missing_quality_score", f"pair {listing([p.id])} has a target but no quality_score",
                         f"training_pairs[{i}].training_metadata.quality_score")
        if p.target_response is not None:
            for name in ("system_prompt", "current_user_input", "target_response"):
                if _blank(getattr(p, name)):
                    report.error("empty_content", f"{name} of trainable pair {listing([p.id])} is empty or only "
                                 "whitespace: a training example needs text", f"training_pairs[{i}].{name}")
    truncated = [p.id for p in targets if p.target_response.rstrip().endswith("\\")]
    if truncated:
        report.warn("truncated_target", f"{len(truncated)} target response(s) end in a backslash (truncated): "
                    + listing(truncated, 20), "target_response")
    escaped = _count_double_escaped(pairs)
    if escaped:
        report.warn("double_escaped_newline",
                    f"literal backslash-n (double-escaped newline) in {escaped} text(s); kept as written", "")
    roleless = sum(1 for p in pairs for h in p.conversation_history if not h.role)
    if roleless:
        report.warn("history_without_role", f"{roleless} history item(s) have no role", "conversation_history")
    repeats = [p.id for p in targets if p.conversation_history and p.current_user_input == p.conversation_history[-1].content]
    if repeats:
        report.warn("input_repeats_history",
                    f"current_user_input repeats the last history item in {len(repeats)} target pair(s)",
                    "current_user_input")
    lacking = sum(1 for p in pairs if any(getattr(p.conversation_metadata, k) in (None, "") for k in SCAFFOLDING_KEYS))
    if lacking:
        report.warn("missing_scaffolding_keys",
                    f"{lacking} pair(s) lack scaffolding keys ({', '.join(SCAFFOLDING_KEYS)})",
                    "conversation_metadata")
    scores = [p.training_metadata.quality_score for p in targets if p.training_metadata.quality_score is not None]
    if scores and sum(scores) / len(scores) < MIN_USABLE_QUALITY:
        report.warn("low_quality", f"mean quality score {sum(scores) / len(scores):.2f} is below {MIN_USABLE_QUALITY}",
                    "training_metadata.quality_score")


def _count_double_escaped(pairs: list[TrainingPair]) -> int:
    texts: list[str | None] = []
    for p in pairs:
        texts += [p.target_response, p.current_user_input]
        texts += [h.content for h in p.conversation_history]
    return sum(1 for t in texts if t and "\\n" in t)
