"""GET /training-files: an owner's training files, newest first, paginated like the conversations
page (offset, or the keyset `cursor` of the previous page), with the total."""
from __future__ import annotations

from typing import Any

from psycopg import sql

from .conversations import Page, Sort, _after, _decode_cursor, _encode_cursor
from .db.connect import Database

ORDER = Sort("created_at", "desc")  # newest first; id breaks ties (a total order for the cursor)


class FileCatalog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def list(self, owner_id: str, page: Page = Page()) -> dict[str, Any]:
        params: dict[str, Any] = {"owner": owner_id, "limit": page.limit + 1, "offset": page.offset}
        where: list[sql.Composable] = [sql.SQL("c.owner_id = %(owner)s")]
        if page.cursor:
            cond, extra = _after(sql.Identifier("c", "created_at"), "timestamptz", ORDER.order,
                                 _decode_cursor(page.cursor, ORDER))
            where.append(cond)
            params.update(extra)
        query = sql.SQL("""
            select c.* from lora_training_files c
             where {where}
             order by c.created_at desc, c.id desc
             limit %(limit)s {offset}""").format(
            where=sql.SQL(" and ").join(where),
            offset=sql.SQL("") if page.cursor else sql.SQL("offset %(offset)s"))
        with self.db.connection() as conn:
            rows = conn.execute(query, params).fetchall()
            total = conn.execute("select count(*) as n from lora_training_files where owner_id = %s",
                                 (owner_id,)).fetchone()["n"]
        more = len(rows) > page.limit
        rows = rows[:page.limit]
        return {"items": rows, "total": total, "limit": page.limit,
                "offset": None if page.cursor else page.offset,
                "next_cursor": _encode_cursor(ORDER, rows[-1]) if more and rows else None}
