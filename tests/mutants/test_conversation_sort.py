"""The conversations page sorts by every sortable key in the direction asked for, NULLs last in
both directions (the text keys as well as created_at and batch_id)."""
from __future__ import annotations

import uuid

import pytest

from lorafiles.conversations import SORTABLE, ConversationCatalog, Page, Sort
from lorafiles.db.connect import Database, connect

OWNER = "0a0a0a0a-1111-4111-8111-0000000000c0"
TEXT_KEYS = [k for k, t in SORTABLE.items() if t == "text"]
WORDS = ["beta", None, "alpha", "delta", "gamma"]
STATUSES = ["enriched", None, "completed", "validated", "not_started"]  # the column's check allows these
VALUES = {k: STATUSES if k == "enrichment_status" else WORDS for k in TEXT_KEYS}


@pytest.fixture(scope="module")
def catalog(module_db_url):
    with connect(module_db_url) as conn:
        for i in range(len(WORDS)):
            conn.execute("insert into conversations (conversation_id, created_by, persona_key, emotional_arc_key,"
                         " topic_key, enrichment_status) values (%s, %s, %s, %s, %s, %s)",
                         (f"sort-{i}-{uuid.uuid4()}", OWNER, WORDS[i], WORDS[i], WORDS[i], STATUSES[i]))
    db = Database(module_db_url)
    yield ConversationCatalog(db)
    db.close()


def test_the_text_keys_are_the_four_columns():
    assert sorted(TEXT_KEYS) == ["emotional_arc_key", "enrichment_status", "persona_key", "topic_key"]


@pytest.mark.parametrize("key", TEXT_KEYS)
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_text_keys_sort_in_the_direction_asked_nulls_last(catalog, key, order):
    items = catalog.list(OWNER, sort=Sort(key, order))["items"]
    got = [i[key] for i in items]
    present = sorted(v for v in VALUES[key] if v is not None)
    assert got == (present if order == "asc" else present[::-1]) + [None]


@pytest.mark.parametrize("key", TEXT_KEYS)
def test_a_cursor_walks_the_same_order_page_by_page(catalog, key):
    seen, cursor = [], None
    while True:
        page = catalog.list(OWNER, sort=Sort(key, "desc"), page=Page(limit=2, cursor=cursor))
        seen += [i[key] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(v for v in VALUES[key] if v is not None)[::-1] + [None]
