"""The conversations page: a user's conversations with their eligibility, filtered, sorted and
paginated (offset or keyset cursor), with the total.

SQL safety: filter values are always bound parameters; the only identifiers put into the SQL
text come from the `SORTABLE` whitelist, through `psycopg.sql.Identifier`.
"""
from __future__ import annotations

import base64
import binascii
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import orjson
import psycopg
from psycopg import sql

from .db.connect import Database
from .domain.rules import ELIGIBLE_STATUS, ineligibility_reason, is_eligible
from .errors import InvalidCursor, InvalidRequest

# sort key -> the SQL type its cursor value is cast back to
SORTABLE: dict[str, str] = {
    "created_at": "timestamptz",
    "batch_id": "uuid",
    "persona_key": "text",
    "emotional_arc_key": "text",
    "topic_key": "text",
    "enrichment_status": "text",
}
FILTERS = ("batch_id", "persona_key", "emotional_arc_key", "topic_key", "enrichment_status")
Order = Literal["asc", "desc"]

# The eligibility rule of lorafiles.domain.rules.is_eligible, as SQL (needed to filter and count
# in the database): never NULL, so that `not` of it is the exact complement.
# tests/api/test_conversations.py checks that both agree, NULLs and empty strings included.
ELIGIBLE_SQL = sql.SQL(
    "(coalesce(c.enrichment_status, '') = {status} and coalesce(c.enriched_file_path, '') <> '')").format(
    status=sql.Literal(ELIGIBLE_STATUS))


@dataclass(frozen=True)
class Filters:
    batch_id: str | None = None
    persona_key: str | None = None
    emotional_arc_key: str | None = None
    topic_key: str | None = None
    enrichment_status: str | None = None
    eligible: bool | None = None


@dataclass(frozen=True)
class Sort:
    key: str = "created_at"
    order: Order = "desc"

    def __post_init__(self) -> None:
        if self.key not in SORTABLE:
            raise InvalidRequest(f"cannot sort by {self.key!r}", details={"sortable": sorted(SORTABLE)})
        if self.order not in ("asc", "desc"):
            raise InvalidRequest(f"order must be asc or desc, not {self.order!r}")


@dataclass(frozen=True)
class Page:
    limit: int = 50
    offset: int = 0
    cursor: str | None = None


class ConversationCatalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, owner_id: str, filters: Filters = Filters(), sort: Sort = Sort(),
             page: Page = Page()) -> dict[str, Any]:
        where, params = self._where(owner_id, filters)
        col = sql.Identifier("c", sort.key)
        after = _decode_cursor(page.cursor, sort) if page.cursor else None
        page_where = list(where)
        if after is not None:
            cond, extra = _after(col, SORTABLE[sort.key], sort.order, after)
            page_where.append(cond)
            params_page = {**params, **extra}
        else:
            params_page = dict(params)
        direction = sql.SQL("asc" if sort.order == "asc" else "desc")
        # NULLs last in both directions; the primary key breaks ties (a total order for the cursor)
        query = sql.SQL("""
            select c.id, c.conversation_id, c.conversation_name, c.batch_id, c.persona_key, c.emotional_arc_key,
                   c.topic_key, c.enrichment_status, c.enriched_file_path, c.quality_score, c.turn_count,
                   c.created_at, c.enriched_at,
                   coalesce((select array_agg(m.file_id order by m.file_id) from lora_training_file_members m
                              where m.conversation_id = c.conversation_id and m.owner_id = c.created_by),
                            '{{}}') as training_file_ids
              from conversations c
             where {where}
             order by ({col} is null), {col} {dir}, c.id {dir}
             limit %(limit)s {offset}""").format(
            where=sql.SQL(" and ").join(page_where), col=col, dir=direction,
            offset=sql.SQL("") if page.cursor else sql.SQL("offset %(offset)s"))
        count = sql.SQL("select count(*) as n from conversations c where {where}").format(
            where=sql.SQL(" and ").join(where))
        with self.db.connection() as conn:
            try:
                rows = conn.execute(query, {**params_page, "limit": page.limit + 1, "offset": page.offset}).fetchall()
            except psycopg.errors.DataError:  # a value that passed the checks above and PostgreSQL still refuses
                if after is None:
                    raise
                raise _cursor_error("invalid cursor: not a cursor returned by this API; start again without cursor"
                                    ) from None
            total = conn.execute(count, params).fetchone()["n"]
        more = len(rows) > page.limit
        rows = rows[:page.limit]
        return {
            "items": [_item(r) for r in rows],
            "total": total,
            "limit": page.limit,
            "offset": None if page.cursor else page.offset,
            "next_cursor": _encode_cursor(sort, rows[-1]) if more and rows else None,
        }

    @staticmethod
    def _where(owner_id: str, f: Filters) -> tuple[list[sql.Composable], dict[str, Any]]:
        where: list[sql.Composable] = [sql.SQL("c.created_by = %(owner)s")]
        params: dict[str, Any] = {"owner": owner_id}
        for name in FILTERS:
            value = getattr(f, name)
            if value is not None:
                where.append(sql.SQL("{} = {}").format(sql.Identifier("c", name), sql.Placeholder(name)))
                params[name] = str(value)
        if f.eligible is not None:
            where.append(ELIGIBLE_SQL if f.eligible else sql.SQL("not {}").format(ELIGIBLE_SQL))
        return where, params


def _item(r: dict[str, Any]) -> dict[str, Any]:
    status, path = r["enrichment_status"], r["enriched_file_path"]
    return {
        "conversation_id": r["conversation_id"], "conversation_name": r["conversation_name"],
        "batch_id": r["batch_id"], "persona_key": r["persona_key"], "emotional_arc_key": r["emotional_arc_key"],
        "topic_key": r["topic_key"], "enrichment_status": status,
        "quality_score": float(r["quality_score"]) if r["quality_score"] is not None else None,
        "turn_count": r["turn_count"], "created_at": r["created_at"], "enriched_at": r["enriched_at"],
        "eligible": is_eligible(status, path), "ineligible_reason": ineligibility_reason(status, path),
        "training_file_ids": list(r["training_file_ids"]),
    }


# ---------------------------------------------------------------------- keyset cursor
def _encode_cursor(sort: Sort, row: dict[str, Any]) -> str:
    value = row[sort.key]
    if isinstance(value, datetime):
        value = value.isoformat()
    elif value is not None:
        value = str(value)
    raw = orjson.dumps({"s": sort.key, "o": sort.order, "v": value, "id": str(row["id"])})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _cursor_error(message: str, kind: str = "invalid_cursor") -> InvalidCursor:
    return InvalidCursor(message, details=[{"field": "query.cursor", "loc": ["query", "cursor"], "type": kind,
                                            "message": message}])


_UUID_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _cursor_value(sql_type: str, value: str) -> Any:
    """The cursor's sort value as the Python value psycopg sends with its own type (never a string
    cast in SQL): anything Python parses but PostgreSQL would refuse is refused here."""
    if sql_type == "timestamptz":
        if not _ISO_TIMESTAMP.fullmatch(value):
            raise ValueError("not an ISO 8601 timestamp with offset")
        ts = datetime.fromisoformat(value)
        if ts.tzinfo is None:
            raise ValueError("timestamp without offset")
        return ts.astimezone(timezone.utc)  # OverflowError outside year 1..9999 (UTC)
    if sql_type == "uuid":
        if not _UUID_TEXT.fullmatch(value):
            raise ValueError("not a UUID")
        return uuid.UUID(value)
    if "\x00" in value:
        raise ValueError("not a stored text value")
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) for lone surrogates
    return value


# what _encode_cursor writes for a timestamptz: datetime.isoformat() of an aware value
_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?[+-]\d{2}:\d{2}(:\d{2}(\.\d{6})?)?", re.ASCII)


def _decode_cursor(cursor: str, sort: Sort) -> dict[str, Any]:
    """The position a cursor names, with typed values; InvalidCursor (422) for anything this API
    did not issue, or issued for another sort order."""
    try:
        if not cursor.isascii():
            raise ValueError("not base64url")
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or set(data) != {"s", "o", "v", "id"}:
            raise ValueError("not a cursor object")
        if not all(isinstance(data[k], str) for k in ("s", "o", "id")):
            raise ValueError("wrong types")
        if data["v"] is not None and not isinstance(data["v"], str):
            raise ValueError("wrong types")
        if not _UUID_TEXT.fullmatch(data["id"]):
            raise ValueError("not a row id")
        position = {"id": uuid.UUID(data["id"]), "s": data["s"], "o": data["o"], "v": None}
        if data["s"] in SORTABLE and data["v"] is not None:
            position["v"] = _cursor_value(SORTABLE[data["s"]], data["v"])
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError, KeyError, binascii.Error):
        raise _cursor_error("invalid cursor: not a cursor returned by this API; start again without cursor") from None
    if position["s"] != sort.key or position["o"] != sort.order:
        raise _cursor_error("the cursor belongs to another sort order; start again without cursor", "cursor_mismatch")
    return position


def _after(col: sql.Composable, sql_type: str, order: str, after: dict[str, Any]) -> tuple[sql.Composable, dict]:
    """Rows strictly after the cursor row in the order `(col is null), col <order>, id <order>`."""
    cmp = sql.SQL(">" if order == "asc" else "<")
    params = {"after_id": after["id"], "after_v": after["v"]}  # typed (uuid.UUID, datetime, str): no casts of text
    if after["v"] is None:  # inside the trailing NULL group
        return sql.SQL("({col} is null and c.id {cmp} %(after_id)s)").format(col=col, cmp=cmp), params
    value = sql.SQL("%(after_v)s::{}").format(sql.SQL(sql_type))
    return sql.SQL("({col} is null or {col} {cmp} {v} or ({col} = {v} and c.id {cmp} %(after_id)s))").format(
        col=col, cmp=cmp, v=value), params
