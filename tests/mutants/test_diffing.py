"""The version diff's checks of what it reads (issue 14, usecases/diffing.py): another owner reads
nothing, a stored manifest whose record was made to match is still checked for what it describes
and for its shape, each refusal naming the manifest it read, and the size bound is inclusive. Real
PostgreSQL and a real local store; the version rows are edited as an intruder would (triggers off)."""
from __future__ import annotations

import hashlib

import orjson
import pytest

from lorafiles.db.connect import connect
from lorafiles.errors import NotFound, StoredDataInvalid
from lorafiles.service import OUTPUT_BUCKET

from stepkit import OTHER, OWNER, make_kit



@pytest.fixture
def two_versions(db_url, tmp_path):
    kit = make_kit(db_url, tmp_path)
    ids = kit.conversations(2)
    file_id = kit.create(ids[:1], name="diffed")
    kit.run(kit.start(kind="add", file_id=file_id, conversation_ids=ids[1:]))
    yield kit, file_id
    kit.service.db.close()


def _store_manifest(kit, file_id: str, version: int, data: bytes) -> None:
    """Replace a version's manifest and make its record match (size and sha256)."""
    a = kit.service.reading.artifact(OWNER, file_id, "manifest", version)
    kit.store.put(OUTPUT_BUCKET, a["key"], data)
    with connect(kit.url) as conn:
        conn.execute("set session_replication_role = replica")
        conn.execute("update lora_training_file_versions set artifacts = jsonb_set(jsonb_set(artifacts, "
                     "'{manifest,sha256}', to_jsonb(%s::text)), '{manifest,size}', to_jsonb(%s::int)) "
                     "where file_id = %s and version = %s",
                     (hashlib.sha256(data).hexdigest(), len(data), file_id, version))


def test_another_owners_diff_reads_nothing(two_versions, monkeypatch):
    kit, file_id = two_versions
    reads = []
    real = kit.store.inner.get
    monkeypatch.setattr(kit.store, "get", lambda bucket, key: (reads.append(key), real(bucket, key))[1],
                        raising=False)
    with pytest.raises(NotFound) as err:
        kit.service.diffing.diff(OTHER, file_id, 1, 2)
    assert str(err.value) == f"training file {file_id} not found" and reads == []
    assert kit.service.diffing.diff(OWNER, file_id, 1, 2)["file_id"] == file_id and len(reads) == 2


@pytest.mark.parametrize("doc, says", [
    ([1, 2], "the manifest is not a JSON object"),
    ({"file": [1]}, "the manifest describes file None version None"),
    ({"file": {"id": "someone-else", "version": 9}}, "the manifest describes file 'someone-else' version 9"),
])
def test_a_manifest_that_is_not_this_versions_is_refused_naming_it(two_versions, doc, says):
    kit, file_id = two_versions
    _store_manifest(kit, file_id, 2, orjson.dumps(doc))
    with pytest.raises(StoredDataInvalid) as err:
        kit.service.diffing.diff(OWNER, file_id, 1, 2)
    assert str(err.value) == f"manifest.json of version 2 of training file {file_id}: {says}"


def test_a_manifest_of_this_version_in_the_wrong_shape_is_refused_naming_it(two_versions):
    kit, file_id = two_versions
    good = orjson.loads(kit.store.get(OUTPUT_BUCKET, kit.service.reading.artifact(OWNER, file_id, "manifest", 1)["key"]))
    _store_manifest(kit, file_id, 1, orjson.dumps({**good, "members": "none"}))
    with pytest.raises(StoredDataInvalid) as err:
        kit.service.diffing.diff(OWNER, file_id, 1, 2)
    assert str(err.value) == f"manifest.json of version 1 of training file {file_id}: members is not a list"
    _store_manifest(kit, file_id, 1, orjson.dumps(good))
    _store_manifest(kit, file_id, 2, orjson.dumps({**good, "file": {**good["file"], "version": 2}, "members": "x"}))
    with pytest.raises(StoredDataInvalid) as err:
        kit.service.diffing.diff(OWNER, file_id, 1, 2)
    assert str(err.value) == f"manifest.json of version 2 of training file {file_id}: members is not a list"


def test_a_manifest_exactly_at_the_size_bound_is_read(two_versions, monkeypatch):
    from lorafiles.usecases import diffing

    kit, file_id = two_versions
    sizes = [kit.service.reading.artifact(OWNER, file_id, "manifest", v)["size"] for v in (1, 2)]
    monkeypatch.setattr(diffing, "MAX_MANIFEST_BYTES", max(sizes))
    assert kit.service.diffing.diff(OWNER, file_id, 1, 2)["file_id"] == file_id
    monkeypatch.setattr(diffing, "MAX_MANIFEST_BYTES", max(sizes) - 1)
    with pytest.raises(StoredDataInvalid):
        kit.service.diffing.diff(OWNER, file_id, 1, 2)
