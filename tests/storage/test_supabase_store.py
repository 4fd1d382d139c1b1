"""SupabaseObjectStore specifics, over real HTTP against the fake Storage server."""

from __future__ import annotations

import socket
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage import SupabaseObjectStore, make_store
from lorafiles.storage import supabase as supabase_adapter

from lorafiles.storage.content_types import ALLOWED_MIME_TYPES, ARTIFACT_NAMES, content_type_for

BUCKET = "training-files"
KEY = "owner-1/file-1/v1/training.jsonl"


def test_every_request_is_authenticated_with_the_key(supabase_store, fake_supabase):
    supabase_store.put(BUCKET, KEY, b"{}")
    supabase_store.get(BUCKET, KEY)
    assert fake_supabase.requests
    for _method, _path, headers in fake_supabase.requests:
        assert headers["apiKey"] == fake_supabase.key
        assert headers["Authorization"] == f"Bearer {fake_supabase.key}"


def test_upload_is_an_upsert_with_the_content_type(supabase_store, fake_supabase, tmp_path):
    supabase_store.put(BUCKET, KEY, b"1\n", content_type="application/jsonl")
    source = tmp_path / "t.jsonl"
    source.write_bytes(b"2\n")
    supabase_store.put_file(BUCKET, KEY, source)  # the content type of the key's file name
    assert fake_supabase.buckets[BUCKET][KEY] == (b"2\n", "application/jsonl")
    uploads = [r for r in fake_supabase.requests if r[0] == "POST" and r[1].endswith(KEY)]
    assert len(uploads) == 2
    assert all(headers["x-upsert"] == "true" for _m, _p, headers in uploads)


def test_signed_url_carries_download_name_and_serves_the_object(supabase_store, fake_supabase):
    supabase_store.put(BUCKET, KEY, b'{"messages": []}\n')
    url = supabase_store.signed_url(BUCKET, KEY, 300, download_name="Advisor set.jsonl")
    parts = urlsplit(url)
    assert url.startswith(f"{fake_supabase.url}/storage/v1/object/sign/{BUCKET}/{KEY}?")
    query = parse_qs(parts.query)
    assert query["download"] == ["Advisor set.jsonl"] and query["token"]
    response = httpx.get(url, trust_env=False)
    assert response.status_code == 200 and response.content == b'{"messages": []}\n'
    assert response.headers["Content-Disposition"] == 'attachment; filename="Advisor set.jsonl"'


def test_signed_url_for_missing_object_is_object_not_found(supabase_store):
    with pytest.raises(ObjectNotFound):
        supabase_store.signed_url(BUCKET, "owner-1/nope.json", 60)


def test_missing_object_arrives_as_http_400_but_maps_to_object_not_found(
    supabase_store, fake_supabase
):
    with pytest.raises(ObjectNotFound) as caught:
        supabase_store.get(BUCKET, KEY)
    assert caught.value.__cause__.status == "404"  # from the body; the HTTP status was 400


def test_missing_bucket_is_storage_error_not_object_not_found(supabase_store):
    for operation in (
        lambda: supabase_store.get("no-such-bucket", KEY),
        lambda: supabase_store.put("no-such-bucket", KEY, b"x"),
        lambda: supabase_store.exists("no-such-bucket", KEY),
        lambda: supabase_store.list("no-such-bucket", ""),
    ):
        with pytest.raises(StorageError, match="Bucket not found") as caught:
            operation()
        assert not isinstance(caught.value, ObjectNotFound)
        assert "no-such-bucket" in str(caught.value)


def test_rejected_key_is_storage_error(fake_supabase):
    store = SupabaseObjectStore(fake_supabase.url, "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.bad")
    with pytest.raises(StorageError, match=f"reading {BUCKET}/{KEY} failed.*Unauthorized"):
        store.get(BUCKET, KEY)


def test_unreachable_server_is_storage_error(fake_supabase):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = SupabaseObjectStore(f"http://127.0.0.1:{port}", fake_supabase.key)
    with pytest.raises(StorageError, match="ConnectError"):
        store.get(BUCKET, KEY)


def test_list_pages_and_walks_folders(supabase_store, fake_supabase, monkeypatch):
    monkeypatch.setattr(supabase_adapter, "_LIST_PAGE", 2)
    keys = [f"o1/f1/fragments/c{i}/x.json" for i in range(5)] + ["o1/f1/v1/training.json"]
    for key in keys:
        supabase_store.put(BUCKET, key, b"x")
    fake_supabase.requests.clear()
    assert supabase_store.list(BUCKET, "o1/") == sorted(keys)
    list_calls = [r for r in fake_supabase.requests if "/object/list/" in r[1]]
    assert len(list_calls) > len(keys)  # several pages in fragments/, one request per folder


def test_list_filters_the_case_insensitive_server_search(supabase_store):
    for key in ("o1/Abc.json", "o1/abd.json", "o1/ABX/y.json"):
        supabase_store.put(BUCKET, key, b"x")
    assert supabase_store.list(BUCKET, "o1/ab") == ["o1/abd.json"]
    assert supabase_store.list(BUCKET, "o1/AB") == ["o1/ABX/y.json"]


def test_dot_segment_keys_are_rejected_by_storage3(supabase_store):
    with pytest.raises(ValueError, match="dot segments"):
        supabase_store.put(BUCKET, "o1/../escape.json", b"x")


def test_make_store_supabase(fake_supabase):
    store = make_store("supabase", url=fake_supabase.url, key=fake_supabase.key)
    assert isinstance(store, SupabaseObjectStore)
    store.put(BUCKET, KEY, b"ok")
    assert store.get(BUCKET, KEY) == b"ok"


@pytest.mark.parametrize("name", ARTIFACT_NAMES)
def test_every_artifact_is_uploaded_with_a_type_the_bucket_allows(supabase_store, fake_supabase, name):
    key = f"owner-1/file-1/v1/{name}"
    supabase_store.put(BUCKET, key, b"x")
    assert fake_supabase.buckets[BUCKET][key][1] == content_type_for(name) in ALLOWED_MIME_TYPES
