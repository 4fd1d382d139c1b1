"""GET /training-files is paginated like /conversations: limit, offset or the keyset cursor,
the total, newest first with the id breaking ties; only my files."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from apikit import OWNER_A, OWNER_B, Api


def seed_files(api: Api, owner: str, count: int) -> list[str]:
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    ids = []
    for i in range(count):  # pairs with the same created_at: ties broken by the id
        row = api.sql("insert into lora_training_files (owner_id, name, target_model, status, created_at) "
                      "values (%s, %s, 'm', 'ready', %s) returning id::text as id",
                      (owner, f"{owner[:4]} file {i}", base + timedelta(hours=i // 2)))
        ids.append(row[0]["id"])
    return ids


def test_pages_by_offset_and_cursor_walk_the_same_files(api: Api) -> None:
    mine = seed_files(api, OWNER_A, 11)
    seed_files(api, OWNER_B, 3)
    alice = api.client(OWNER_A)
    full = alice.get("/training-files").json()
    assert full["total"] == 11 and full["limit"] == 50 and full["offset"] == 0 and full["next_cursor"] is None
    newest_first = [f["id"] for f in full["items"]]
    assert sorted(newest_first) == sorted(mine)
    created = [f["created_at"] for f in full["items"]]
    assert created == sorted(created, reverse=True)

    by_offset = [f["id"] for off in range(0, 11, 4)
                 for f in alice.get("/training-files", query={"limit": 4, "offset": off}).json()["items"]]
    walked, cursor, pages = [], None, 0
    while True:
        page = alice.get("/training-files", query={"limit": 4} | ({"cursor": cursor} if cursor else {})).json()
        assert page["total"] == 11 and len(page["items"]) <= 4
        assert page["offset"] == (None if cursor else 0)
        walked += [f["id"] for f in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert by_offset == walked == newest_first and pages == 3


def test_bad_paging_is_422_and_others_see_nothing(api: Api) -> None:
    seed_files(api, OWNER_A, 3)
    alice = api.client(OWNER_A)
    for query in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"cursor": "garbage"}):
        reply = alice.get("/training-files", query=query)
        expected = "invalid_cursor" if "cursor" in query else "invalid_request"  # issue 9 item 8
        assert reply.status == 422 and reply.error["code"] == expected, query
    # a cursor of /conversations (another sort) is refused, not misread
    api.seed(OWNER_A, 3)
    other = alice.get("/conversations", query={"limit": 1, "sort": "persona_key"}).json()["next_cursor"]
    assert alice.get("/training-files", query={"cursor": other}).status == 422
    bob = api.client(OWNER_B).get("/training-files").json()
    assert bob == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_cursor": None}
