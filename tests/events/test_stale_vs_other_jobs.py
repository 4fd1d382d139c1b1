"""Staleness must survive jobs that do not rebuild the changed member."""
from __future__ import annotations

from eventkit import OWNER, World

from lorafiles.maintenance import Maintenance


def test_an_add_job_on_a_stale_file_keeps_it_stale(world: World, maintenance: Maintenance):
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0])
    world.reenrich(c0, "CHANGED-BEFORE-ADD")
    assert maintenance.enrichment_completed(c0)["stale_files"] == [a]
    world.wait(world.service.jobs.start_job(OWNER, kind="add", conversation_ids=[c1], file_id=a))
    assert b"CHANGED-BEFORE-ADD" not in world.artifact_bytes(a, "json")  # the add did not re-render c0
    assert world.file(a)["status"] == "stale"  # ... so the file is still stale


def test_a_change_during_a_running_regeneration_keeps_the_file_stale(world: World, maintenance: Maintenance, faults):
    """The enrichment changes again while a regeneration that already read the member runs: the
    published version has the older content, so the file must stay stale for the next tick."""
    c0, c1 = world.conversations(2)
    a = world.create("File A", [c0, c1])
    world.reenrich(c0, "FIRST-CHANGE")
    maintenance.enrichment_completed(c0)

    def change_again(payload: dict) -> None:  # runs right before generate: every batch is staged
        if not changed:
            changed.append(world.reenrich(c0, "SECOND-CHANGE"))
            assert maintenance.enrichment_completed(c0)["action"] == "already_stale"

    changed: list[str] = []
    faults.hooks["generate-jsonl"] = change_again
    [outcome] = maintenance.regenerate_stale()
    assert world.wait(outcome["job"])["published_version"] == 2
    assert b"FIRST-CHANGE" in world.artifact_bytes(a, "json")
    assert world.file(a)["status"] == "stale"

    faults.hooks.clear()
    [outcome] = maintenance.regenerate_stale()
    assert world.wait(outcome["job"])["published_version"] == 3
    assert b"SECOND-CHANGE" in world.artifact_bytes(a, "json") and world.file(a)["status"] == "ready"
