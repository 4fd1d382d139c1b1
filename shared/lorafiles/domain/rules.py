"""Business rules, each in exactly one place."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

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
    """The name as stored: surrounding whitespace removed, otherwise exactly as the user wrote it."""
    return name.strip()


# Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt): invisible characters, left
# out when names are compared (as Unicode's NFKC_Casefold does).
DEFAULT_IGNORABLE = (
    (0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160), (0x17B4, 0x17B5), (0x180B, 0x180F),
    (0x200B, 0x200F), (0x202A, 0x202E), (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A), (0xE0000, 0xE0FFF),
)
# Unicode Bidi_Control: they reorder how the text around them is displayed (spoofing, "Trojan Source")
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_BLANK_SYMBOLS = frozenset("\u2800")  # BRAILLE PATTERN BLANK: a "symbol" that shows nothing
_VISIBLE_CATEGORIES = frozenset("LNPS")  # letters, numbers, punctuation, symbols (general category, 1st letter)
_SPACE_RUNS = re.compile(" {2,}")


def is_default_ignorable(char: str) -> bool:
    cp = ord(char)
    return any(lo <= cp <= hi for lo, hi in DEFAULT_IGNORABLE)


def _fold(char: str) -> str:
    if is_default_ignorable(char):
        return ""
    if char.isspace():
        return " "
    return char.casefold()


def name_key(name: str) -> str:
    """What two names are compared by: unique per owner on this key. NFKC-normalised, case-folded
    (full folding: `Straße` = `STRASSE`, `ΣΑΣ` = `σας`), invisible characters left out, any run of
    whitespace one space, no surrounding space. NFC and NFD spellings give the same key.

    The database computes the same key (`public.lorafiles_name_key(text)`, migration
    20261202000200, generated from this function; tests/db/test_name_key.py checks that both
    agree on every code point) and holds the unique index on it."""
    folded = "".join(_fold(c) for c in unicodedata.normalize("NFKC", name))
    return _SPACE_RUNS.sub(" ", unicodedata.normalize("NFKC", folded)).strip(" ")


def _forbidden(char: str) -> str | None:
    category = unicodedata.category(char)
    if category == "Cc":
        return "control characters"
    if category == "Cs":
        return "unpaired surrogates (not valid Unicode text)"
    if category in ("Zl", "Zp"):
        return "line or paragraph separators"
    if char in BIDI_CONTROLS:
        return "bidirectional control characters"
    return None


def _visible(char: str) -> bool:
    return (unicodedata.category(char)[0] in _VISIBLE_CATEGORIES and not is_default_ignorable(char)
            and char not in _BLANK_SYMBOLS)


def check_file_name(name: str | None) -> list[Problem]:
    """A file name must show something, fit in 255 characters, and hold no character that changes
    how it (or what follows it) is displayed: control characters (CR, LF, TAB, NUL, ...), line
    separators and bidirectional controls are refused, and so is a name of invisible characters only."""
    if name is None or not normalize_name(name):
        return [Problem(code="invalid_name", message="name must not be empty", field="name")]
    stored = normalize_name(name)
    if len(stored) > NAME_MAX:
        return [Problem(code="invalid_name", message=f"name is longer than {NAME_MAX} characters", field="name")]
    bad = sorted({reason for c in stored if (reason := _forbidden(c))})
    if bad:
        return [Problem(code="invalid_name", message=f"name must not contain {' or '.join(bad)}", field="name")]
    if not any(_visible(c) for c in stored):
        return [Problem(code="invalid_name", message="name must contain a visible character", field="name")]
    return []


def download_name(name: str, extension: str = "") -> str:
    """The file name a download is saved as: the file's name with nothing that could break a header
    or the display (controls such as CR/LF become `_`, bidirectional controls and invisible
    characters are dropped, path separators become `_`), then `.<extension>`. Names refused by
    `check_file_name` never get that far, but files named before the rule existed may."""
    out = []
    for c in unicodedata.normalize("NFC", name):
        if c in BIDI_CONTROLS or is_default_ignorable(c):
            continue
        out.append("_" if _forbidden(c) or unicodedata.category(c) == "Cf" or c in "/\\" else c)
    base = " ".join("".join(out).split()) or "training-file"
    return f"{base}.{extension}" if extension else base


def content_disposition(filename: str) -> str:
    """`attachment` header value for a download (one place: S3 presigned URLs and the local
    server). The name goes through `download_name` first, so neither `filename` nor the RFC 5987
    `filename*` form can carry CR/LF, other controls or bidirectional characters; non-ASCII names
    get the `filename*` form with an ASCII fallback."""
    safe = download_name(filename)
    quoted = safe.replace("\\", "\\\\").replace('"', '\\"')
    if safe.isascii():
        return f'attachment; filename="{quoted}"'
    fallback = quoted.encode("ascii", "replace").decode("ascii")
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(safe, safe='')}"


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
