"""GET /conversations: my conversations with eligibility; filters, sorting (whitelist), offset and
cursor pagination with the total; the SQL eligibility filter agrees with domain.rules.is_eligible."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from apikit import OWNER_A, OWNER_B, Api, Client

from lorafiles.conversations import SORTABLE
from lorafiles.domain.rules import ineligibility_reason, is_eligible


@pytest.fixture
def catalog(api: Api) -> dict:
    """12 conversations of A in two batches and none, with ties, NULLs and ineligible ones; 2 of B."""
    b1, b2 = sorted([str(uuid.uuid4()), str(uuid.uuid4())])
    ids = api.seed(OWNER_A, 5, batch_id=b1) + api.seed(OWNER_A, 4, batch_id=b2) + api.seed(OWNER_A, 3)
    bobs = api.seed(OWNER_B, 2, batch_id=b1)
    base = datetime(2026, 11, 1, tzinfo=timezone.utc)
    for i, cid in enumerate(ids):  # pairs of equal created_at: ties broken by the primary key
        api.sql("update conversations set created_at = %s where conversation_id = %s",
                (base + timedelta(hours=i // 2), cid))
    api.sql("update conversations set created_at = null where conversation_id = %s", (ids[11],))
    api.sql("update conversations set persona_key = null where conversation_id = any(%s)", ([ids[0], ids[7]],))
    ineligible = {  # every way to miss the rule
        ids[1]: ("enrichment_in_progress", "x/enriched.json"),
        ids[2]: ("completed", None),
        ids[3]: ("completed", ""),
        ids[4]: ("validation_failed", None),
        ids[5]: (None, "x/enriched.json"),
    }
    for cid, (status, path) in ineligible.items():
        api.sql("update conversations set enrichment_status = %s, enriched_file_path = %s where conversation_id = %s",
                (status, path, cid))
    return {"ids": ids, "bobs": bobs, "b1": b1, "b2": b2, "ineligible": ineligible}


def all_items(client: Client, **query) -> list[dict]:
    reply = client.get("/conversations", query={**query, "limit": 200})
    assert reply.status == 200, reply.body
    return reply.json()["items"]


def ids_of(items: list[dict]) -> list[str]:
    return [c["conversation_id"] for c in items]


def test_lists_only_my_conversations_with_their_eligibility(api: Api, catalog: dict) -> None:
    alice = api.client()
    page = alice.get("/conversations").json()
    assert page["total"] == 12 and page["limit"] == 50 and page["offset"] == 0 and page["next_cursor"] is None
    items = {c["conversation_id"]: c for c in page["items"]}
    assert set(items) == set(catalog["ids"])
    for cid, item in items.items():
        status, path = catalog["ineligible"].get(cid, ("completed", "set"))
        assert item["eligible"] is is_eligible(status, path)
        assert item["ineligible_reason"] == ineligibility_reason(status, path)
    assert sum(not c["eligible"] for c in items.values()) == 5
    assert set(ids_of(all_items(api.client(OWNER_B)))) == set(catalog["bobs"])


def test_sql_eligibility_filter_agrees_with_the_rule(api: Api, catalog: dict) -> None:
    alice = api.client()
    everything = all_items(alice)
    by_rule = {c["conversation_id"] for c in everything if c["eligible"]}
    assert set(ids_of(all_items(alice, eligible="true"))) == by_rule
    assert set(ids_of(all_items(alice, eligible="false"))) == {c["conversation_id"] for c in everything} - by_rule
    assert alice.get("/conversations", query={"eligible": "false"}).json()["total"] == 5


def test_filters(api: Api, catalog: dict) -> None:
    alice = api.client()
    assert set(ids_of(all_items(alice, batch_id=catalog["b1"]))) == set(catalog["ids"][:5])
    assert set(ids_of(all_items(alice, batch_id=catalog["b2"]))) == set(catalog["ids"][5:9])
    everything = all_items(alice)
    persona = next(c["persona_key"] for c in everything if c["persona_key"])
    assert ids_of(all_items(alice, persona_key=persona)) == ids_of(
        [c for c in everything if c["persona_key"] == persona])
    arc = everything[0]["emotional_arc_key"]
    topic = everything[0]["topic_key"]
    got = all_items(alice, emotional_arc_key=arc, topic_key=topic)
    assert got and all(c["emotional_arc_key"] == arc and c["topic_key"] == topic for c in got)
    assert set(ids_of(all_items(alice, enrichment_status="enrichment_in_progress"))) == {catalog["ids"][1]}
    combined = alice.get("/conversations", query={"batch_id": catalog["b1"], "eligible": "true"}).json()
    assert combined["total"] == 1 and ids_of(combined["items"]) == [catalog["ids"][0]]
    # filter values are bound parameters: SQL in them is just text that matches nothing
    for evil in ("' or '1'='1", "anxious_planner' --", "x); drop table conversations; --"):
        assert alice.get("/conversations", query={"persona_key": evil}).json()["total"] == 0
    assert alice.get("/conversations").json()["total"] == 12


def _reference(items: list[dict], key: str, order: str) -> list[str]:
    """created_at / batch_id compare the same in Python and PostgreSQL; NULLs last; id breaks ties
    (the id is not in the API: the API's own order of equal values is taken as the tie order)."""
    def value(c: dict):
        v = c[key]
        return datetime.fromisoformat(v.replace("Z", "+00:00")) if key == "created_at" and v else (
            uuid.UUID(v) if key == "batch_id" and v else v)

    present = [c for c in items if c[key] is not None]
    nulls = [c for c in items if c[key] is None]
    present.sort(key=value, reverse=order == "desc")  # stable: keeps the API's tie order
    return ids_of(present + nulls)


@pytest.mark.parametrize("key", sorted(SORTABLE))
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sorting_and_both_paginations_agree(api: Api, catalog: dict, key: str, order: str) -> None:
    alice = api.client()
    full = all_items(alice, sort=key, order=order)
    assert len(full) == 12
    values = [c[key] for c in full]
    # NULLs last, equal values together
    nulls = [v is None for v in values]
    assert nulls == sorted(nulls)
    seen, last = set(), object()
    for v in values:
        assert v == last or v not in seen, f"{key}: {v!r} is not contiguous"
        seen.add(v)
        last = v
    if key in ("created_at", "batch_id"):
        assert ids_of(full) == _reference(full, key, order)

    # cursor pagination: pages of 5 walk the same rows in the same order
    walked, cursor, pages = [], None, 0
    while True:
        query = {"sort": key, "order": order, "limit": 5} | ({"cursor": cursor} if cursor else {})
        page = alice.get("/conversations", query=query).json()
        assert page["total"] == 12
        walked += ids_of(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["offset"] is None or pages == 1
    assert walked == ids_of(full) and pages == 3

    # offset pagination
    by_offset = []
    for offset in (0, 5, 10):
        page = alice.get("/conversations", query={"sort": key, "order": order, "limit": 5, "offset": offset}).json()
        assert page["offset"] == offset and page["total"] == 12
        by_offset += ids_of(page["items"])
    assert by_offset == ids_of(full)


def test_bad_sort_and_cursor_are_422(api: Api, catalog: dict) -> None:
    alice = api.client()
    reply = alice.get("/conversations", query={"sort": "enriched_file_path"})
    assert reply.status == 422 and reply.error["code"] == "invalid_request"
    reply = alice.get("/conversations", query={"order": "sideways"})
    assert reply.status == 422
    cursor = alice.get("/conversations", query={"limit": 2, "sort": "topic_key"}).json()["next_cursor"]
    reply = alice.get("/conversations", query={"limit": 2, "sort": "persona_key", "cursor": cursor})
    assert reply.status == 422 and reply.error["code"] == "invalid_cursor"
    assert reply.error["details"][0]["type"] == "cursor_mismatch"
    for bad in ("garbage", "e30", cursor[:-3] + "xyz"):
        reply = alice.get("/conversations", query={"cursor": bad})
        assert reply.status == 422 and reply.error["code"] == "invalid_cursor", bad
