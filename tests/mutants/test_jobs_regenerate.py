"""Registering a regeneration and resolving a job's policy (issue 14, usecases/jobs.py): what the
job row records, which members `only_changed` picks, who may ask, and how a file's policy, a stored
file without one and a request's overrides combine. Real PostgreSQL and a real local store."""
from __future__ import annotations

import hashlib
import uuid

import pytest

from lorafiles.db.connect import connect
from lorafiles.errors import IdempotencyKeyReused, InvalidRequest, NotFound
from lorafiles.ports import ObjectNotFound
from lorafiles.usecases.common import INPUT_BUCKET

from stepkit import OTHER, OWNER, make_kit

QWEN = "qwen2.5-7b-instruct"




def _file(kit, count: int = 3, **policy) -> tuple[str, list[str]]:
    ids = kit.conversations(count)
    job = kit.start(kind="create", conversation_ids=ids, name=f"f {uuid.uuid4()}",
                    policy={"target_model": QWEN, "min_quality": 2.0, **policy})
    return kit.run(job)["file_id"], ids


def _job_row(kit, job_id) -> dict:
    with connect(kit.url) as conn:
        return conn.execute("select * from lora_training_jobs where id = %s", (job_id,)).fetchone()


def test_a_regeneration_takes_every_member_in_order_under_the_files_policy(kit):
    file_id, ids = _file(kit)
    job = kit.service.jobs.start_regenerate(OWNER, file_id)
    row = _job_row(kit, job["id"])
    assert row["kind"] == "regenerate" and str(row["file_id"]) == file_id
    assert list(row["requested_ids"]) == ids
    assert row["request"] == {"kind": "regenerate", "file_id": file_id, "name": None, "description": None,
                              "conversation_ids": None, "only_changed": False}
    assert str(uuid.UUID(row["idempotency_key"])) == row["idempotency_key"]  # a fresh key when none is given
    policy = kit.file(file_id)["policy"]
    assert policy["target_model"] == QWEN and policy["min_quality"] == 2.0
    assert row["policy"] == policy
    assert kit.starter.started == [f"lorafiles-create-{kit.starter.started[0].rsplit('-create-')[1]}",
                                   f"lorafiles-regenerate-{job['id']}"]


def test_only_changed_picks_the_members_whose_stored_file_changed(kit):
    file_id, ids = _file(kit, 4)
    paths = {m["conversation_id"]: m["source_file"].split("/", 1)[1] for m in kit.members(file_id)}
    changed, gone = ids[1], ids[3]
    kit.store.put(INPUT_BUCKET, paths[changed], kit.store.get(INPUT_BUCKET, paths[changed]) + b" ")
    kit.store.delete(INPUT_BUCKET, paths[gone])  # unreadable now: not "changed" (the job reports it)
    job = kit.service.jobs.start_regenerate(OWNER, file_id, only_changed=True, idempotency_key="k-changed")
    row = _job_row(kit, job["id"])
    assert list(row["requested_ids"]) == [changed]
    assert row["request"]["only_changed"] is True

    checks = kit.service.jobs.source_checksums([paths[changed], paths[gone]])
    assert checks[paths[changed]] == hashlib.sha256(kit.store.get(INPUT_BUCKET, paths[changed])).hexdigest()
    assert isinstance(checks[paths[gone]], ObjectNotFound)


def test_only_changed_with_nothing_changed_takes_every_member(kit):
    file_id, ids = _file(kit)
    job = kit.service.jobs.start_regenerate(OWNER, file_id, only_changed=True)
    assert list(_job_row(kit, job["id"])["requested_ids"]) == ids


def test_a_key_reused_for_another_regeneration_is_refused_naming_the_key(kit):
    file_id, _ = _file(kit)
    first = kit.service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen")
    again = kit.service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen")
    assert again["id"] == first["id"]
    with pytest.raises(IdempotencyKeyReused) as err:
        kit.service.jobs.start_regenerate(OWNER, file_id, idempotency_key="k-regen", only_changed=True)
    assert str(err.value) == ("the idempotency key 'k-regen' was already used for a different request (different "
                              "only_changed); use a new key for a new request")
    assert err.value.details == {"idempotency_key": "k-regen", "differs": ["only_changed"]}


def test_only_the_owner_can_regenerate_a_file_or_resolve_its_policy(kit):
    file_id, _ = _file(kit)
    for only_changed in (False, True):
        with pytest.raises(NotFound) as err:
            kit.service.jobs.start_regenerate(OTHER, file_id, only_changed=only_changed)
        assert str(err.value) == f"training file {file_id} not found"
    with connect(kit.url) as conn:
        assert conn.execute("select count(*) as n from lora_training_jobs where owner_id = %s",
                            (OTHER,)).fetchone()["n"] == 0
    with pytest.raises(NotFound) as err:
        kit.service.jobs.resolve_policy(OTHER, file_id, None)
    assert str(err.value) == f"training file {file_id} not found"
    assert kit.service.jobs.resolve_policy(OWNER, file_id, None).target_model == QWEN


def test_a_file_stored_without_a_policy_gets_the_default_for_its_model(kit):
    """A file made before policies were stored holds the column's default, `{}`."""
    file_id, _ = _file(kit)
    with connect(kit.url) as conn:
        conn.execute("update lora_training_files set policy = '{}' where id = %s", (file_id,))
    resolved = kit.service.jobs.resolve_policy(OWNER, file_id, None)
    expected = kit.service.settings.default_policy(target_model=QWEN)
    assert resolved == expected and resolved.target_model == QWEN and resolved.min_quality != 2.0
    assert resolved.max_length == 4096  # Qwen's default, not Mistral's 2048


def test_a_requests_target_model_is_resolved_through_the_aliases(kit):
    file_id, _ = _file(kit)
    resolved = kit.service.jobs.resolve_policy(OWNER, file_id, {"target_model": " Llama-3.1-8B "})
    assert resolved.target_model == "llama-3.1-8b-instruct"
    assert resolved.min_quality == 2.0  # the file's other fields are kept
    with pytest.raises(InvalidRequest) as err:
        kit.service.jobs.resolve_policy(OWNER, file_id, {"target_model": "gpt-2"})
    assert err.value.details[0]["field"] == "policy.target_model"
    assert err.value.details[0]["code"] == "unknown_model"


def test_a_policy_that_does_not_validate_names_each_field(kit):
    from lorafiles.tokens import UnknownModel

    file_id, _ = _file(kit)
    with pytest.raises(InvalidRequest) as err:
        kit.service.jobs.resolve_policy(OWNER, file_id, {"target_model": "gpt-2"})
    assert str(err.value) == f"invalid training policy: policy.target_model: {UnknownModel('gpt-2')}"
    assert err.value.details == [{"field": "policy.target_model", "code": "unknown_model",
                                  "message": str(UnknownModel("gpt-2"))}]
    for where in (file_id, None):  # over the file's policy, or over the deployment's for a new file
        with pytest.raises(InvalidRequest) as err:
            kit.service.jobs.resolve_policy(OWNER, where, {"max_length": 5, "over_length": "cut"})
        assert err.value.details == [
            {"field": "policy.max_length", "code": "invalid_policy",
             "message": "Input should be greater than or equal to 128"},
            {"field": "policy.over_length", "code": "invalid_policy",
             "message": "Input should be 'drop_turn', 'trim_history' or 'fail'"}]
        assert str(err.value) == ("invalid training policy: policy.max_length: Input should be greater than or equal "
                                  "to 128; policy.over_length: Input should be 'drop_turn', 'trim_history' or 'fail'")


# ---------------------------------------------------------------------------- registering: races and starts

def test_a_second_job_for_a_busy_file_is_refused_naming_the_active_one(kit):
    from lorafiles.errors import FileBusy

    file_id, _ = _file(kit)
    new = kit.conversations(2)
    active = kit.start(kind="add", file_id=file_id, conversation_ids=new[:1])
    status = _job_row(kit, active)["status"]
    with pytest.raises(FileBusy) as err:
        kit.start(kind="add", file_id=file_id, conversation_ids=new[1:])
    assert str(err.value) == (f"training file {file_id} is busy with job {active} (add, {status}); "
                              "try again when it finishes")
    assert err.value.details == {"file_id": file_id, "job_id": active}
    with pytest.raises(FileBusy) as err:
        kit.service.jobs.start_regenerate(OWNER, file_id)
    assert err.value.details == {"file_id": file_id, "job_id": active}


def test_a_request_that_loses_the_race_for_its_key_gets_the_winners_job(kit, monkeypatch):
    """Two requests with one key both pass the key lookup; the loser's insert then fails on the
    file's one-active-job index (what PostgreSQL raises when both inserts ran at once): it answers
    with the job the winner registered."""
    import psycopg

    from lorafiles.db.repository import Repository

    file_id, _ = _file(kit)
    new = kit.conversations(1)
    real = Repository.insert_job
    won = {}

    def racing(self, job):
        if not won:  # the winner commits first, on its own connection
            with connect(kit.url) as conn:
                won["row"], _ = real(Repository(conn), dict(job))
            raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")
        return real(self, job)

    monkeypatch.setattr(Repository, "insert_job", racing)
    job = kit.service.jobs.start_job(OWNER, kind="add", file_id=file_id, conversation_ids=new,
                                     idempotency_key="k-race")
    assert job["id"] == won["row"]["id"]
    with connect(kit.url) as conn:
        assert conn.execute("select count(*) as n from lora_training_jobs where idempotency_key = 'k-race'"
                            ).fetchone()["n"] == 1


def test_a_job_cannot_start_without_a_starter(db_url, tmp_path):
    from lorafiles.errors import JobStateError

    k = make_kit(db_url, tmp_path)
    k.service.jobs.ctx.starter = None
    try:
        with pytest.raises(JobStateError) as err:
            k.start(kind="create", conversation_ids=k.conversations(1), name="unstarted")
        assert str(err.value) == "no job starter configured"
    finally:
        k.service.db.close()


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_repeated_request_for_a_job_that_ended_before_it_was_started_starts_nothing(kit, status):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="ended", idempotency_key=f"k-{status}")
    with connect(kit.url) as conn:  # ended (reaped, or finished by an earlier execution) with no execution recorded
        conn.execute("update lora_training_jobs set status = %s, execution_arn = null where id = %s", (status, job))
    started = list(kit.starter.started)
    again = kit.service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="ended",
                                       idempotency_key=f"k-{status}")
    assert str(again["id"]) == job and again["status"] == status and again["execution_arn"] is None
    assert kit.starter.started == started


def test_a_started_job_records_its_execution(kit):
    job = kit.start(kind="create", conversation_ids=kit.conversations(1), name="recorded")
    row = _job_row(kit, job)
    assert row["execution_name"] == f"lorafiles-create-{job}"
    assert row["execution_arn"] == f"arn:aws:states:local:000000000000:execution:lorafiles:lorafiles-create-{job}"


def test_a_key_reused_with_several_differences_names_them_all(kit):
    ids = kit.conversations(2)
    kit.start(kind="create", conversation_ids=ids[:1], name="first", idempotency_key="k-multi")
    with pytest.raises(IdempotencyKeyReused) as err:
        kit.start(kind="create", conversation_ids=ids, name="second", idempotency_key="k-multi")
    assert err.value.details["differs"] == ["name", "conversation_ids"]
    assert str(err.value) == ("the idempotency key 'k-multi' was already used for a different request (different "
                              "name, conversation_ids); use a new key for a new request")


def test_an_insert_refused_by_the_file_index_after_the_active_job_ended_says_busy_without_a_job(kit, monkeypatch):
    """The one-active-job index refused the insert, and by the time the job is looked up the active
    job has finished: the file was busy, there is no job to name."""
    import psycopg

    from lorafiles.db.repository import Repository
    from lorafiles.errors import FileBusy

    file_id, _ = _file(kit)

    def refused(self, job):
        raise psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")

    monkeypatch.setattr(Repository, "insert_job", refused)
    with pytest.raises(FileBusy) as err:
        kit.start(kind="add", file_id=file_id, conversation_ids=kit.conversations(1))
    assert str(err.value) == f"training file {file_id} is busy; try again when it finishes"
    assert err.value.details == {"file_id": file_id, "job_id": None}


# ---------------------------------------------------------------------------- validating a selection

@pytest.mark.parametrize("name", [None, "", "   "])
def test_a_create_without_a_usable_name_is_blocked_on_the_name_alone(kit, name):
    ids = kit.conversations(1)
    report = kit.service.jobs.validate_selection(OWNER, ids, name=name)
    message = "name must not be empty" if not (name or "").strip() else "name must contain a visible character"
    assert report == {"ok": False, "conversations": 1,
                      "problems": [{"code": "invalid_name", "message": message, "field": "name"}]}


def test_validating_against_another_owners_file_is_not_found(kit):
    file_id, ids = _file(kit)
    with pytest.raises(NotFound) as err:
        kit.service.jobs.validate_selection(OTHER, ids, file_id=file_id)
    assert str(err.value) == f"training file {file_id} not found"
    with pytest.raises(NotFound):
        kit.service.jobs.validate_selection(OWNER, ids, file_id=str(uuid.uuid4()))
    assert kit.service.jobs.validate_selection(OWNER, kit.conversations(1), file_id=file_id)["ok"] is True


def test_a_regeneration_naming_conversations_outside_its_file_is_blocked_for_each(kit):
    from lorafiles.db.repository import Repository
    from lorafiles.usecases.common import selection_problems

    file_id, ids = _file(kit, 2)
    strangers = kit.conversations(2)
    with connect(kit.url) as conn:
        problems = selection_problems(Repository(conn), OWNER, [ids[0], *strangers], kind="regenerate",
                                      file_id=file_id, name=None)
    assert problems == [{"conversation_id": c, "code": "not_in_file", "message": "not a member of this file"}
                        for c in strangers]


def test_a_job_stores_the_request_it_answers(kit):
    ids = kit.conversations(3)
    create = kit.start(kind="create", conversation_ids=ids[:2], name="  Stored  Request ", description="d",
                       policy={"min_quality": 2.5})
    assert _job_row(kit, create)["request"] == {
        "kind": "create", "file_id": None, "name": "Stored  Request", "description": "d",
        "conversation_ids": ids[:2], "policy": {"min_quality": 2.5}}
    file_id = kit.run(create)["file_id"]
    add = kit.start(kind="add", file_id=file_id.upper(), conversation_ids=ids[2:], name="ignored",
                    description="ignored")
    assert _job_row(kit, add)["request"] == {
        "kind": "add", "file_id": file_id, "name": None, "description": None, "conversation_ids": ids[2:]}


def test_a_request_repeated_after_its_job_finished_returns_that_job(kit):
    ids = kit.conversations(1)
    job = kit.start(kind="create", conversation_ids=ids, name="repeated", idempotency_key="k-again")
    kit.run(job)
    again = kit.service.jobs.start_job(OWNER, kind="create", conversation_ids=ids, name="repeated",
                                       idempotency_key="k-again")
    assert str(again["id"]) == job and again["status"] == "succeeded"
    # the same key is another user's own key
    theirs = tmp_ids = None
    path = kit.work / "theirs.json"
    from lorafiles.domain.samples import dumps_enriched, generate_conversation

    path.write_bytes(dumps_enriched(generate_conversation(f"theirs-{uuid.uuid4()}", turns=2)))
    tmp_ids = [r["conversation_id"] for r in kit.service.importing.import_files(OTHER, [path])["imported"]]
    theirs = kit.service.jobs.start_job(OTHER, kind="create", conversation_ids=tmp_ids, name="repeated",
                                        idempotency_key="k-again")
    assert str(theirs["id"]) != job and str(theirs["owner_id"]) == OTHER


def test_an_add_without_a_policy_builds_with_the_files(kit):
    file_id, _ = _file(kit)
    add = kit.start(kind="add", file_id=file_id, conversation_ids=kit.conversations(1))
    assert _job_row(kit, add)["policy"] == kit.file(file_id)["policy"]
    assert _job_row(kit, add)["policy"]["target_model"] == QWEN


def test_a_create_ignores_a_file_id_it_was_given(kit):
    file_id, ids = _file(kit)
    job = kit.start(kind="create", file_id=file_id, conversation_ids=ids, name="a new file")
    row = _job_row(kit, job)
    assert row["kind"] == "create" and row["file_id"] is None and row["request"]["file_id"] is None
    assert row["policy"]["target_model"] == "mistral-7b-instruct-v0.2"  # the deployment's, not that file's


def test_an_add_without_a_file_is_refused_as_such(kit):
    with pytest.raises(InvalidRequest) as err:
        kit.start(kind="add", conversation_ids=kit.conversations(1))
    assert str(err.value) == "an add names the training file it adds to (file_id)"
