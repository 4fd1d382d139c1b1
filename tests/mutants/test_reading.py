"""Reading an owner's files, jobs, versions and artifacts (issue 14, usecases/reading.py): what each
call returns, written out, and what it refuses, with its message. One published file of two versions
(real PostgreSQL, real local store) serves the read-only tests; tests that change stored rows make
their own."""
from __future__ import annotations

import hashlib
import io
import uuid

import orjson
import pytest

from lorafiles.db.connect import connect
from lorafiles.domain.exports import view_of
from lorafiles.domain.preview import marked_render
from lorafiles.errors import InvalidRequest, LorafilesError, NotFound
from lorafiles.tokens import get_model
from lorafiles.usecases.common import ARTIFACTS, OUTPUT_BUCKET
from lorafiles.usecases.reading import _lines, download_name

from stepkit import OTHER, OWNER, make_kit



@pytest.fixture(scope="module")
def published(module_db_url, tmp_path_factory):
    """(kit, file_id, conversation ids): version 1 of 2 conversations, version 2 adds a third."""
    kit = make_kit(module_db_url, tmp_path_factory.mktemp("reading"))
    ids = kit.conversations(3)
    file_id = kit.run(kit.start(kind="create", conversation_ids=ids[:2], name="My File"))["file_id"]
    kit.run(kit.start(kind="add", file_id=file_id, conversation_ids=ids[2:]))
    yield kit, file_id, ids
    kit.service.db.close()




def _version(kit, file_id, number):
    with connect(kit.url) as conn:
        return conn.execute("select * from lora_training_file_versions where file_id = %s and version = %s",
                            (file_id, number)).fetchone()


def test_an_owner_lists_their_files_newest_first_and_no_one_elses(kit):
    ids = kit.conversations(2)
    first = kit.create(ids[:1], name="first")
    second = kit.create(ids[1:], name="second")
    with connect(kit.url) as conn:  # the same instant: then by id
        conn.execute("update lora_training_files set created_at = '2026-01-01' where id = any(%s)",
                     ([first, second],))
    assert [str(f["id"]) for f in kit.service.reading.list_files(OWNER)] == sorted([first, second])
    with connect(kit.url) as conn:
        conn.execute("update lora_training_files set created_at = '2026-01-02' where id = %s", (first,))
    assert [str(f["id"]) for f in kit.service.reading.list_files(OWNER)] == [first, second]
    assert kit.service.reading.list_files(OTHER) == []


def test_a_file_shows_its_members_versions_and_latest_job(published):
    kit, file_id, ids = published
    shown = kit.service.reading.show_file(OWNER, file_id)
    assert str(shown["file"]["id"]) == file_id and shown["file"]["name"] == "My File"
    assert [m["conversation_id"] for m in shown["members"]] == ids
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    assert shown["current_job"]["kind"] == "add" and shown["current_job"]["status"] == "succeeded"
    with pytest.raises(NotFound) as err:
        kit.service.reading.show_file(OTHER, file_id)
    assert str(err.value) == f"training file {file_id} not found"


def test_a_job_is_shown_to_its_owner_only(published):
    kit, file_id, _ = published
    job_id = str(kit.service.reading.show_file(OWNER, file_id)["current_job"]["id"])
    assert str(kit.service.reading.get_job(OWNER, job_id)["id"]) == job_id
    with pytest.raises(NotFound) as err:
        kit.service.reading.get_job(OTHER, job_id)
    assert str(err.value) == f"job {job_id} not found"


def test_an_artifact_is_where_its_version_recorded_it(published):
    kit, file_id, _ = published
    reading = kit.service.reading
    v2 = _version(kit, file_id, 2)
    current = reading.artifact(OWNER, file_id, "openai_train")
    recorded = v2["artifacts"]["openai_train"]
    assert current == {"bucket": OUTPUT_BUCKET, "key": recorded["path"], "version": 2,
                       "filename": "My File-v2-openai.train.jsonl", "size": recorded["size"],
                       "sha256": recorded["sha256"], "content_type": "application/jsonl",
                       "lines": recorded["lines"]}
    assert current["key"] == f"{OWNER}/{file_id}/v2/openai.train.jsonl"
    first = reading.artifact(OWNER, file_id, "json", version=1)
    assert (first["version"], first["filename"], first["content_type"]) == (1, "My File.json", "application/json")
    assert first["key"] == f"{OWNER}/{file_id}/v1/training.json"
    data = kit.store.get(OUTPUT_BUCKET, first["key"])
    assert (len(data), hashlib.sha256(data).hexdigest()) == (first["size"], first["sha256"])


@pytest.mark.parametrize("version", [0, 3, -1, 2**31, 10**30, "1", 1.0, True])
def test_a_version_that_does_not_exist_is_not_found(published, version):
    kit, file_id, _ = published
    with pytest.raises(NotFound) as err:
        kit.service.reading.artifact(OWNER, file_id, "json", version=version)
    assert str(err.value) == f"training file {file_id} has no version {version}"


def test_an_artifact_of_an_unknown_format_or_of_another_owner_is_refused(published):
    kit, file_id, _ = published
    with pytest.raises(InvalidRequest) as err:
        kit.service.reading.artifact(OWNER, file_id, "csv")
    assert str(err.value) == f"format must be one of {', '.join(ARTIFACTS)}, not 'csv'"
    with pytest.raises(NotFound) as err:
        kit.service.reading.artifact(OTHER, file_id, "json")
    assert str(err.value) == f"training file {file_id} not found"


def test_a_version_published_before_the_exports_serves_its_v4_files_only(kit):
    [cid] = kit.conversations(1)
    file_id = kit.create([cid], name="old")
    with connect(kit.url) as conn:  # as the first releases stored it (versions are immutable: no triggers)
        conn.execute("set session_replication_role = replica")
        conn.execute("update lora_training_file_versions set artifacts = '{}' where file_id = %s", (file_id,))
    v = _version(kit, file_id, 1)
    for fmt, ctype in (("json", "application/json"), ("jsonl", "application/jsonl")):
        a = kit.service.reading.artifact(OWNER, file_id, fmt)
        assert a == {"bucket": OUTPUT_BUCKET, "key": v[f"{fmt}_path"], "version": 1, "filename": f"old.{fmt}",
                     "size": v[f"{fmt}_size"], "sha256": v[f"{fmt}_sha256"], "content_type": ctype, "lines": None}
    with pytest.raises(NotFound) as err:
        kit.service.reading.artifact(OWNER, file_id, "trl")
    assert str(err.value) == (f"version 1 of training file {file_id} has no trl artifact (it was published before "
                              "trainer exports existed; regenerate the file)")


def test_download_names_keep_the_v4_form_and_name_the_version_for_the_rest():
    assert download_name("My File", 7, "json") == "My File.json"
    assert download_name("My File", 7, "jsonl") == "My File.jsonl"
    assert download_name("My File", 7, "axolotl_config") == "My File-v7-axolotl.yml"
    assert download_name("a/b\r\n", 2, "card") == "a_b__-v2-README.md"


def test_a_preview_renders_the_first_lines_through_the_versions_model(published):
    kit, file_id, _ = published
    preview = kit.service.reading.preview(OWNER, file_id, "trl", n=2, version=1)
    a = kit.service.reading.artifact(OWNER, file_id, "trl", version=1)
    model = get_model("mistral-7b-instruct-v0.2")
    lines = kit.store.get(OUTPUT_BUCKET, a["key"]).splitlines()
    assert len(lines) > 2
    expected = []
    for number, line in enumerate(lines[:2], start=1):
        messages, trained = view_of("trl", orjson.loads(line))
        counted = model.count(messages, trained)
        expected.append({"line": number, "text": marked_render(model, messages, trained),
                         "total_tokens": counted.total, "trainable_tokens": counted.trainable})
    assert preview == {"file_id": file_id, "version": 1, "format": "trl", "model": "mistral-7b-instruct-v0.2",
                       "lines": a["lines"], "examples": expected}
    assert preview["lines"] == len(lines)
    assert all(e["trainable_tokens"] > 0 for e in expected)
    assert len(kit.service.reading.preview(OWNER, file_id, "trl", n=1)["examples"]) == 1
    assert len(kit.service.reading.preview(OWNER, file_id, "trl", n=10_000)["examples"]) == \
        kit.service.reading.artifact(OWNER, file_id, "trl")["lines"]


def test_a_preview_uses_the_versions_target_model(kit):
    [cid] = kit.conversations(1)
    file_id = kit.run(kit.start(kind="create", conversation_ids=[cid], name="qwen",
                                policy={"target_model": "qwen2.5-7b-instruct"}))["file_id"]
    assert kit.service.reading.preview(OWNER, file_id, "openai")["model"] == "qwen2.5-7b-instruct"
    with connect(kit.url) as conn:  # a version whose policy did not record a model: the deployment's
        conn.execute("set session_replication_role = replica")
        conn.execute("update lora_training_file_versions set policy = '{}' where file_id = %s", (file_id,))
    assert kit.service.reading.preview(OWNER, file_id, "openai")["model"] == "mistral-7b-instruct-v0.2"


def test_a_preview_of_a_format_that_is_not_an_export_or_of_no_lines_is_refused(published):
    kit, file_id, _ = published
    with pytest.raises(InvalidRequest) as err:
        kit.service.reading.preview(OWNER, file_id, "json")
    assert str(err.value) == "preview format must be one of openai, trl, axolotl, sharegpt, not 'json'"
    with pytest.raises(InvalidRequest) as err:
        kit.service.reading.preview(OWNER, file_id, "openai", n=0)
    assert str(err.value) == "--n must be at least 1, not 0"


def test_lines_are_split_across_chunks_and_blank_lines_skipped():
    data = b'{"a":1}\n\n{"b":22}\n{"c":333}'
    for chunk in (1, 2, 3, 7, 100):
        assert list(_lines(io.BytesIO(data), chunk=chunk)) == [b'{"a":1}', b'{"b":22}', b'{"c":333}']
    assert list(_lines(io.BytesIO(b"x\n"))) == [b"x"]
    assert list(_lines(io.BytesIO(b""))) == []


def test_a_signed_url_is_asked_for_with_the_ttl_and_the_download_name(published, monkeypatch):
    kit, file_id, _ = published
    asked = []
    monkeypatch.setattr(kit.store, "signed_url", lambda bucket, key, ttl, download_name=None: (
        asked.append((bucket, key, ttl, download_name)), f"https://signed/{key}?ttl={ttl}")[1], raising=False)
    a = kit.service.reading.artifact(OWNER, file_id, "jsonl")
    got = kit.service.reading.presign_download(OWNER, file_id, "jsonl")
    assert got == {"url": f"https://signed/{a['key']}?ttl=3600", "expires_in": 3600, "filename": "My File.jsonl",
                   "version": 2, "size": a["size"], "sha256": a["sha256"]}
    assert kit.service.reading.presign_download(OWNER, file_id, "card", version=1, expires_in=60)["expires_in"] == 60
    assert asked == [(OUTPUT_BUCKET, a["key"], 3600, "My File.jsonl"),
                     (OUTPUT_BUCKET, f"{OWNER}/{file_id}/v1/README.md", 60, "My File-v1-README.md")]
    with pytest.raises(NotFound):
        kit.service.reading.presign_download(OTHER, file_id, "jsonl")
    assert len(asked) == 2


def test_a_download_is_written_whole_or_not_at_all(published, tmp_path):
    kit, file_id, _ = published
    out = tmp_path / "out.jsonl"
    got = kit.service.reading.download(OWNER, file_id, "openai", out, version=1)
    a = kit.service.reading.artifact(OWNER, file_id, "openai", version=1)
    assert got == {**a, "path": str(out)}
    assert out.read_bytes() == kit.store.get(OUTPUT_BUCKET, a["key"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    missing = tmp_path / "no-such-dir" / "x.jsonl"
    with pytest.raises(LorafilesError) as err:
        kit.service.reading.download(OWNER, file_id, "openai", missing)
    assert str(err.value) == f"cannot write {missing}: No such file or directory"


def test_a_download_that_fails_midway_leaves_no_file_and_no_temporary(published, tmp_path, monkeypatch):
    kit, file_id, _ = published
    real = kit.store.inner.open_stream

    class Broken:
        def __init__(self, src):
            self.src, self.reads = src, 0

        def read(self, n):
            self.reads += 1
            if self.reads > 1:
                raise OSError(5, "Input/output error")
            return self.src.read(8)

    from contextlib import contextmanager

    @contextmanager
    def broken(bucket, key):
        with real(bucket, key) as src:
            yield Broken(src)

    monkeypatch.setattr(kit.store, "open_stream", broken, raising=False)
    out = tmp_path / "kept.json"
    out.write_bytes(b"what was there")
    with pytest.raises(LorafilesError) as err:
        kit.service.reading.download(OWNER, file_id, "json", out)
    assert str(err.value) == f"cannot write {out}: Input/output error"
    assert out.read_bytes() == b"what was there"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.json"]
    assert uuid.UUID(file_id)


def test_another_owner_can_neither_download_nor_preview(published, tmp_path):
    kit, file_id, _ = published
    out = tmp_path / "stolen.json"
    with pytest.raises(NotFound):
        kit.service.reading.download(OTHER, file_id, "json", out)
    with pytest.raises(NotFound):
        kit.service.reading.preview(OTHER, file_id)
    assert list(tmp_path.iterdir()) == []


def test_a_preview_by_default_shows_three_openai_lines_of_the_current_version(kit):
    file_id = kit.create(kit.conversations(5), name="five")
    assert kit.service.reading.artifact(OWNER, file_id, "openai")["lines"] > 3
    preview = kit.service.reading.preview(OWNER, file_id)
    assert (preview["format"], preview["version"], len(preview["examples"])) == ("openai", 1, 3)
    assert [e["line"] for e in preview["examples"]] == [1, 2, 3]


def test_a_download_is_written_to_a_hidden_temporary_beside_its_target(published, tmp_path, monkeypatch):
    """The temporary is renamed into place, so it must be on the target's file system: beside it."""
    kit, file_id, _ = published
    real = kit.store.inner.open_stream
    seen = []

    from contextlib import contextmanager

    class Watching:
        def __init__(self, src):
            self.src = src

        def read(self, n):
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            return self.src.read(n)

    @contextmanager
    def watching(bucket, key):
        with real(bucket, key) as src:
            yield Watching(src)

    monkeypatch.setattr(kit.store, "open_stream", watching, raising=False)
    kit.service.reading.download(OWNER, file_id, "jsonl", tmp_path / "out.jsonl")
    [during] = {tuple(names) for names in seen}
    assert len(during) == 1 and during[0].startswith(".out.jsonl.") and during[0] != ".out.jsonl."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_a_file_whose_jobs_were_purged_shows_no_current_job(kit):
    file_id = kit.create(kit.conversations(1), name="no jobs")
    with connect(kit.url) as conn:
        conn.execute("delete from lora_training_jobs where file_id = %s", (file_id,))
    shown = kit.service.reading.show_file(OWNER, file_id)
    assert shown["current_job"] is None and [v["version"] for v in shown["versions"]] == [1]
