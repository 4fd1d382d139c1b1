"""LocalObjectStore specifics: layout, key safety, atomic writes, signed URLs."""

from __future__ import annotations

import os
import threading
import tracemalloc
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage import LocalObjectStore, make_store

BUCKET = "training-files"


def test_objects_live_at_root_bucket_key(local_store):
    local_store.put(BUCKET, "o1/f1/v1/training.json", b"{}")
    assert (local_store.root / BUCKET / "o1/f1/v1/training.json").read_bytes() == b"{}"


def test_make_store_local(tmp_path):
    store = make_store("local", root=tmp_path)
    assert isinstance(store, LocalObjectStore) and store.root == tmp_path.resolve()


def test_make_store_unknown_kind():
    with pytest.raises(ValueError, match="'gcs'"):
        make_store("gcs")


BAD_KEYS = [
    "../escape.json",
    "o1/../../escape.json",
    "o1/..",
    "/etc/passwd",
    "",
    "o1//x",
    "./x",
    "a\\..\\b",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_traversal_and_odd_keys_rejected(local_store, tmp_path, key):
    source = tmp_path / "src"
    source.write_bytes(b"x")
    operations = [
        lambda: local_store.get(BUCKET, key),
        lambda: local_store.put(BUCKET, key, b"x"),
        lambda: local_store.put_file(BUCKET, key, source),
        lambda: local_store.exists(BUCKET, key),
        lambda: local_store.delete(BUCKET, key),
        lambda: local_store.signed_url(BUCKET, key, 60),
        lambda: local_store.open_stream(BUCKET, key).__enter__(),
    ]
    for operation in operations:
        with pytest.raises(ValueError) as caught:
            operation()
        assert repr(key) in str(caught.value)
    assert not (tmp_path / "escape.json").exists()


@pytest.mark.parametrize("bucket", ["..", "a/b", ""])
def test_bad_bucket_rejected(local_store, bucket):
    with pytest.raises(ValueError, match="bucket"):
        local_store.put(bucket, "k", b"x")


def test_list_rejects_traversing_prefix(local_store):
    with pytest.raises(ValueError, match=r"\.\./"):
        local_store.list(BUCKET, "../x/")


def test_directory_is_not_an_object(local_store):
    local_store.put(BUCKET, "o1/f1/a.json", b"x")
    with pytest.raises(ObjectNotFound):
        local_store.get(BUCKET, "o1/f1")
    with pytest.raises(ObjectNotFound):
        local_store.get(BUCKET, "o1/f1/a.json/deeper")


def test_overwrite_is_atomic_for_concurrent_readers(local_store):
    """A reader sees one whole version or the other, never a mix or a truncation."""
    versions = [b"A" * 2_000_000, b"B" * 1_000_000]
    local_store.put(BUCKET, "k.json", versions[0])
    stop = threading.Event()
    torn: list[int] = []
    reads = 0

    def check() -> None:
        nonlocal reads
        while not stop.is_set():
            data = local_store.get(BUCKET, "k.json")
            reads += 1
            if data not in versions:
                torn.append(len(data))

    reader = threading.Thread(target=check)
    reader.start()
    try:
        for i in range(40):
            local_store.put(BUCKET, "k.json", versions[i % 2])
    finally:
        stop.set()
        reader.join()
    assert reads > 0 and torn == []


def test_failed_write_keeps_old_object_and_leaves_no_temp_file(local_store, monkeypatch):
    local_store.put(BUCKET, "o1/k.json", b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(StorageError, match="training-files/o1/k.json"):
        local_store.put(BUCKET, "o1/k.json", b"new")
    monkeypatch.undo()
    assert local_store.get(BUCKET, "o1/k.json") == b"old"
    assert os.listdir(local_store.root / BUCKET / "o1") == ["k.json"]


def test_list_skips_in_flight_temp_files(local_store):
    local_store.put(BUCKET, "o1/k.json", b"x")
    (local_store.root / BUCKET / "o1" / ".lorafiles-tmp-abc123").write_bytes(b"partial")
    assert local_store.list(BUCKET, "o1/") == ["o1/k.json"]


def test_put_file_streams_instead_of_loading_the_file(local_store, tmp_path):
    source = tmp_path / "big.jsonl"
    with source.open("wb") as out:
        for _ in range(16):
            out.write(os.urandom(1024 * 1024))
    tracemalloc.start()
    try:
        local_store.put_file(BUCKET, "o1/big.jsonl", source)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert local_store.get(BUCKET, "o1/big.jsonl") == source.read_bytes()


def test_signed_url_without_signer_is_file_url(local_store):
    local_store.put(BUCKET, "o1/my file.json", b"x")
    url = local_store.signed_url(BUCKET, "o1/my file.json", 60, download_name="x.json")
    parts = urlsplit(url)
    assert parts.scheme == "file"
    assert Path(unquote(parts.path)).read_bytes() == b"x"


def test_signed_url_uses_injected_signer(tmp_path):
    calls = []

    def signer(bucket, key, expires_in, download_name):
        calls.append((bucket, key, expires_in, download_name))
        return f"http://127.0.0.1:8000/files/{bucket}/{key}?sig=abc"

    store = LocalObjectStore(tmp_path, url_signer=signer)
    url = store.signed_url(BUCKET, "o1/k.json", 900, download_name="Training.json")
    assert url == "http://127.0.0.1:8000/files/training-files/o1/k.json?sig=abc"
    assert calls == [(BUCKET, "o1/k.json", 900, "Training.json")]
