"""create/add with bad ids: SelectionBlocked names every offending id with its reason, and neither
the database (row counts of the lora_* tables, the file rows) nor storage changes."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from lorafiles.errors import NotFound, SelectionBlocked

from core_harness import OTHER, OWNER, Harness


@dataclass
class World:
    h: Harness
    file_id: str
    members: list[str]        # already in the file
    free: list[str]           # eligible, not in the file
    ineligible: str           # enrichment_status = 'enriched'
    no_path: str              # completed but enriched_file_path is null
    theirs: str               # another owner's conversation
    unknown: str              # exists nowhere


_world: dict[str, World] = {}


@pytest.fixture
def world(module_harness: Harness) -> World:
    if not _world:
        h = module_harness
        members = h.generate(2)
        free = h.generate(3)
        ineligible, no_path = h.generate(2)
        [theirs] = h.generate(1, owner=OTHER)
        with h.sql() as conn:
            conn.execute("update conversations set enrichment_status = 'enriched' where conversation_id = %s",
                         (ineligible,))
            conn.execute("update conversations set enriched_file_path = null where conversation_id = %s", (no_path,))
        job = h.create(members, name="Existing File")
        _world["w"] = World(h, str(job["file_id"]), members, free, ineligible, no_path, theirs, str(uuid.uuid4()))
    return _world["w"]


@pytest.fixture(scope="module", autouse=True)
def _forget():
    yield
    _world.clear()


@pytest.fixture
def unchanged(world: World):
    """Snapshot the database and storage; assert both are unchanged after the test body."""
    h = world.h
    before = (h.table_counts(), h.file_rows(), h.storage_listing(), len(h.machine.invocations),
              h.machine.client.list_executions(stateMachineArn=h.machine.arn)["executions"])
    yield
    after = (h.table_counts(), h.file_rows(), h.storage_listing(), len(h.machine.invocations),
             h.machine.client.list_executions(stateMachineArn=h.machine.arn)["executions"])
    assert after[0] == before[0], "row counts changed"
    assert after[1] == before[1], "training file rows changed"
    assert after[2] == before[2], "storage changed"
    assert after[3:] == before[3:], "a state machine execution was started"


def blocked(h: Harness, **kw: Any) -> list[tuple[str, str]]:
    with pytest.raises(SelectionBlocked) as info:
        h.service.jobs.start_job(OWNER, **kw)
    exc = info.value
    assert exc.code == "selection_blocked"
    problems = [(d.get("conversation_id") or d.get("field") or "", d["code"]) for d in exc.details]
    for d in exc.details:
        assert d["message"]
        who = d.get("conversation_id") or d.get("field")
        if who:
            assert who in exc.message  # the message names every offender too
    return problems


def test_create_names_every_offending_id(world, unchanged):
    w = world
    ids = [w.free[0], w.ineligible, w.theirs, w.unknown, w.no_path, w.free[0]]
    problems = blocked(w.h, kind="create", conversation_ids=ids, name="New file")
    assert problems == [
        (w.ineligible, "not_eligible"),
        (w.theirs, "not_found"),
        (w.unknown, "not_found"),
        (w.no_path, "not_eligible"),
        (w.free[0], "repeated_in_request"),
    ]


def test_add_names_every_offending_id(world, unchanged):
    w = world
    ids = [w.free[1], w.members[0], w.ineligible, w.theirs, w.unknown, w.free[1], w.members[1]]
    problems = blocked(w.h, kind="add", conversation_ids=ids, file_id=w.file_id)
    assert problems == [
        (w.members[0], "already_in_file"),
        (w.ineligible, "not_eligible"),
        (w.theirs, "not_found"),
        (w.unknown, "not_found"),
        (w.free[1], "repeated_in_request"),
        (w.members[1], "already_in_file"),
    ]


@pytest.mark.parametrize("which,code", [("ineligible", "not_eligible"), ("theirs", "not_found"),
                                        ("unknown", "not_found"), ("no_path", "not_eligible")])
def test_a_single_bad_id_among_good_ones_blocks_add(world, unchanged, which, code):
    w = world
    bad = getattr(w, which)
    assert blocked(w.h, kind="add", conversation_ids=[*w.free, bad], file_id=w.file_id) == [(bad, code)]


def test_already_included_alone_blocks_add(world, unchanged):
    w = world
    assert blocked(w.h, kind="add", conversation_ids=[w.members[1]], file_id=w.file_id) == [
        (w.members[1], "already_in_file")]


def test_more_than_80_blocks(world, unchanged):
    w = world
    ids = [*w.free, *[str(uuid.uuid4()) for _ in range(78)]]
    assert len(ids) == 81
    problems = blocked(w.h, kind="create", conversation_ids=ids, name="Too big")
    assert problems[0][1] == "too_many"
    assert [p for p in problems if p[1] == "not_found"] == [(c, "not_found") for c in ids[3:]]


def test_empty_selection_blocks(world, unchanged):
    assert [code for _, code in blocked(world.h, kind="create", conversation_ids=[], name="Empty")] == ["empty_selection"]


@pytest.mark.parametrize("name,code", [("existing file", "name_taken"), ("  EXISTING FILE ", "name_taken"),
                                       ("", "invalid_name"), ("x" * 256, "invalid_name")])
def test_bad_name_blocks_create(world, unchanged, name, code):
    problems = blocked(world.h, kind="create", conversation_ids=[world.free[0]], name=name)
    assert problems == [("name", code)]


def test_someone_else_cannot_add_to_the_file(world, unchanged):
    w = world
    with pytest.raises(NotFound):
        w.h.service.jobs.start_job(OTHER, kind="add", conversation_ids=[w.theirs], file_id=w.file_id)


def test_another_owner_sees_the_owners_ids_as_unknown(world, unchanged):
    w = world
    with pytest.raises(SelectionBlocked) as info:
        w.h.service.jobs.start_job(OTHER, kind="create", conversation_ids=[w.free[0], w.theirs], name="Mine")
    assert [(d["conversation_id"], d["code"]) for d in info.value.details] == [(w.free[0], "not_found")]


def test_a_valid_request_after_all_that_still_works(world):
    w = world
    fresh = w.h.generate(2)  # not w.free: the other tests rely on those staying outside the file
    job = w.h.add(w.file_id, fresh)
    assert job["status"] == "succeeded", job["error"]
    shown = w.h.service.reading.show_file(OWNER, w.file_id)
    assert [m["conversation_id"] for m in shown["members"]][-2:] == fresh
    assert shown["file"]["current_version"] >= 2
