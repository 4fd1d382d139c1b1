"""The ObjectStore contract, run against every adapter (``store`` fixture)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from lorafiles.ports import ObjectNotFound, ObjectStore
from lorafiles.storage import get_many

BUCKET = "training-files"
KEY = "owner-1/file-1/v1/training.json"


def test_implements_protocol(store):
    assert isinstance(store, ObjectStore)


def test_put_get_round_trip(store):
    data = b'{"a": 1, "text": "caf\xc3\xa9"}\n' + bytes(range(256))
    store.put(BUCKET, KEY, data)
    assert store.get(BUCKET, KEY) == data


def test_put_overwrites(store):
    store.put(BUCKET, KEY, b"first")
    store.put(BUCKET, KEY, b"second, longer")
    assert store.get(BUCKET, KEY) == b"second, longer"


def test_get_missing_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound) as caught:
        store.get(BUCKET, "owner-1/nope.json")
    assert caught.value.bucket == BUCKET
    assert caught.value.key == "owner-1/nope.json"
    assert BUCKET in str(caught.value) and "owner-1/nope.json" in str(caught.value)
    assert isinstance(caught.value, LookupError)


def test_exists(store):
    assert not store.exists(BUCKET, KEY)
    store.put(BUCKET, KEY, b"x")
    assert store.exists(BUCKET, KEY)
    assert not store.exists(BUCKET, "owner-1/file-1")  # a "folder" is not an object


def test_delete_and_delete_missing(store):
    store.put(BUCKET, KEY, b"x")
    store.delete(BUCKET, KEY)
    assert not store.exists(BUCKET, KEY)
    store.delete(BUCKET, KEY)  # already gone: not an error
    store.delete(BUCKET, "never/existed.json")


def test_list_prefix_recursive_sorted(store):
    keys = [
        "o1/f1/v1/training.json",
        "o1/f1/v1/training.jsonl",
        "o1/f1/fragments/c2/abcd.json",
        "o1/f1/fragments/c1/abcd.json",
        "o1/f10/v1/training.json",
        "o1/g1/v1/training.json",
        "o2/f1/v1/training.json",
    ]
    for key in keys:
        store.put(BUCKET, key, key.encode())
    assert store.list(BUCKET, "o1/f1/") == sorted(k for k in keys if k.startswith("o1/f1/"))
    assert store.list(BUCKET, "o1/f1") == sorted(k for k in keys if k.startswith("o1/f1"))
    assert store.list(BUCKET, "o1/f1/fragments/c") == [
        "o1/f1/fragments/c1/abcd.json",
        "o1/f1/fragments/c2/abcd.json",
    ]
    assert store.list(BUCKET, "") == sorted(keys)
    assert store.list(BUCKET, "o3/") == []
    assert store.list(BUCKET, "O1/") == []  # prefixes are case-sensitive


def test_open_stream_reads_in_chunks(store):
    data = os.urandom(300_000)
    store.put(BUCKET, KEY, data)
    chunks = []
    with store.open_stream(BUCKET, KEY) as stream:
        while chunk := stream.read(64 * 1024):
            assert len(chunk) <= 64 * 1024
            chunks.append(chunk)
    assert b"".join(chunks) == data


def test_open_stream_missing_raises_object_not_found(store):
    with pytest.raises(ObjectNotFound):
        with store.open_stream(BUCKET, "owner-1/nope.json"):
            pass


def test_put_file_round_trip(store, tmp_path):
    source = tmp_path / "training.jsonl"
    source.write_bytes(b'{"messages": []}\n' * 100_000)  # ~1.7 MB
    store.put_file(BUCKET, KEY, source, content_type="application/json")
    assert store.get(BUCKET, KEY) == source.read_bytes()
    store.put_file(BUCKET, KEY, str(source))  # str paths too
    assert store.exists(BUCKET, KEY)


def test_signed_url_is_a_url_naming_the_object(store):
    store.put(BUCKET, KEY, b"x")
    url = store.signed_url(BUCKET, KEY, 300, download_name="My File.json")
    assert url.split(":", 1)[0] in ("file", "http", "https")
    assert "training.json" in url


def test_get_many_returns_every_key_and_captures_missing(store):
    keys = [f"o1/conv-{i:02d}/enriched.json" for i in range(20)]
    for key in keys:
        store.put(BUCKET, key, key.encode())
    results = get_many(store, BUCKET, [*keys, "o1/missing.json", keys[0]], max_workers=4)
    assert list(results) == [*keys, "o1/missing.json"]
    assert all(results[key] == key.encode() for key in keys)
    missing = results["o1/missing.json"]
    assert isinstance(missing, ObjectNotFound) and missing.key == "o1/missing.json"


def test_get_many_bounds_concurrency(store):
    keys = [f"k{i}" for i in range(12)]
    for key in keys:
        store.put(BUCKET, key, b"v")
    active = peak = 0
    lock = threading.Lock()

    class Counting:
        def get(self, bucket, key):
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.02)
            try:
                return store.get(bucket, key)
            finally:
                with lock:
                    active -= 1

    results = get_many(Counting(), BUCKET, keys, max_workers=3)
    assert results == {key: b"v" for key in keys}
    assert 1 < peak <= 3


def test_get_many_empty():
    assert get_many(None, BUCKET, []) == {}


def test_importing_storage_does_not_import_backends():
    code = (
        "import sys, lorafiles.storage; "
        "print(sorted(m for m in ('boto3', 'botocore', 'supabase', 'storage3', 'httpx') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_a_content_type_other_than_the_file_names_is_refused(store, tmp_path):
    source = tmp_path / "t"
    source.write_bytes(b"x")
    with pytest.raises(ValueError, match="application/jsonl"):
        store.put(BUCKET, "o/f/v1/trl.jsonl", b"x", content_type="application/json")
    with pytest.raises(ValueError, match="text/markdown"):
        store.put_file(BUCKET, "o/f/v1/README.md", source, content_type="text/plain")
    assert not store.exists(BUCKET, "o/f/v1/trl.jsonl")
    store.put(BUCKET, "o/f/v1/blob.bin", b"x", content_type="application/octet-stream")  # unknown name: as given
