"""The conversations page: a user's conversations with their eligibility, filtered, sorted and
paginated (offset or keyset cursor), with the total.

SQL safety: filter values are always bound parameters; the only identifiers put into the SQL
text come from the `SORTABLE` whitelist, through `psycopg.sql.Identifier`.
"""
from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import orjson
from psycopg import sql

from .db.connect import Database
from .domain.rules import ELIGIBLE_STATUS, ineligibility_reason, is_eligible
from .errors import InvalidRequest

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
            rows = conn.execute(query, {**params_page, "limit": page.limit + 1, "offset": page.offset}).fetchall()
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


def _decode_cursor(cursor: str, sort: Sort) -> dict[str, Any]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            raise ValueError
        value = data.get("v")
        if value is not None and not isinstance(value, str):
            raise ValueError
        uuid.UUID(data["id"])
        if value is not None and SORTABLE[sort.key] == "timestamptz":
            datetime.fromisoformat(value)
        elif value is not None and SORTABLE[sort.key] == "uuid":
            uuid.UUID(value)
        elif value is not None and "\x00" in value:
            raise ValueError
    except (ValueError, TypeError, orjson.JSONDecodeError, KeyError):
        raise InvalidRequest("invalid cursor", details=[{"field": "query.cursor", "loc": ["query", "cursor"],
                                                         "type": "invalid_cursor",
                                                         "message": "not a cursor returned by this API"}]) from None
    if data.get("s") != sort.key or data.get("o") != sort.order:
        raise InvalidRequest("the cursor belongs to another sort order; start again without cursor",
                             details=[{"field": "query.cursor", "loc": ["query", "cursor"], "type": "cursor_mismatch",
                                       "message": "the cursor was issued for another sort or order"}])
    return data


def _after(col: sql.Composable, sql_type: str, order: str, after: dict[str, Any]) -> tuple[sql.Composable, dict]:
    """Rows strictly after the cursor row in the order `(col is null), col <order>, id <order>`."""
    cmp = sql.SQL(">" if order == "asc" else "<")
    params = {"after_id": after["id"], "after_v": after["v"]}
    if after["v"] is None:  # inside the trailing NULL group
        return sql.SQL("({col} is null and c.id {cmp} %(after_id)s::uuid)").format(col=col, cmp=cmp), params
    value = sql.SQL("%(after_v)s::{}").format(sql.SQL(sql_type))
    return sql.SQL("({col} is null or {col} {cmp} {v} or ({col} = {v} and c.id {cmp} %(after_id)s::uuid))").format(
        col=col, cmp=cmp, v=value), params
