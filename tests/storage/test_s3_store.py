"""S3ObjectStore specifics under moto: bucket mapping, presigning, multipart, errors."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from lorafiles.ports import ObjectNotFound, StorageError
from lorafiles.storage import S3ObjectStore, make_store

from lorafiles.storage.content_types import content_type_for

BUCKET = "training-files"
REAL_BUCKET = "test-training-files"  # conftest maps BUCKET to it
KEY = "owner-1/file-1/v1/training.json"


def test_logical_bucket_maps_to_real_bucket(s3_store):
    s3_store.put(BUCKET, KEY, b"{}")
    listed = s3_store.client.list_objects_v2(Bucket=REAL_BUCKET)["Contents"]
    assert [item["Key"] for item in listed] == [KEY]
    head = s3_store.client.head_object(Bucket=REAL_BUCKET, Key=KEY)
    assert head["ContentType"] == "application/json"


def test_presigned_url_is_sigv4_with_expiry_and_download_name(s3_store):
    s3_store.put(BUCKET, KEY, b'{"ok": true}')
    url = s3_store.signed_url(BUCKET, KEY, 600, download_name="Q3 advisor set.json")
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith(f"/{KEY}") and REAL_BUCKET in url
    assert query["X-Amz-Expires"] == ["600"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["response-content-disposition"] == ['attachment; filename="Q3 advisor set.json"']
    # moto also intercepts plain HTTP to AWS, so the URL can be followed.
    response = requests.get(url, timeout=10)
    assert response.status_code == 200 and response.content == b'{"ok": true}'
    assert response.headers["Content-Disposition"] == 'attachment; filename="Q3 advisor set.json"'


def test_presigned_url_without_download_name_has_no_disposition(s3_store):
    url = s3_store.signed_url(BUCKET, KEY, 60)
    assert "response-content-disposition" not in url


def test_non_ascii_download_name_gets_rfc5987_filename(s3_store):
    url = s3_store.signed_url(BUCKET, KEY, 60, download_name='Préstamos "2025".json')
    disposition = parse_qs(urlsplit(url).query)["response-content-disposition"][0]
    assert disposition == (
        'attachment; filename="Pr?stamos \\"2025\\".json"; '
        "filename*=UTF-8''Pr%C3%A9stamos%20%222025%22.json"
    )


def test_put_file_large_goes_multipart_and_reads_back(s3_store, tmp_path):
    source = tmp_path / "training.jsonl"
    with source.open("wb") as out:
        for _ in range(12):
            out.write(os.urandom(1024 * 1024))
    s3_store.put_file(BUCKET, KEY, source)
    head = s3_store.client.head_object(Bucket=REAL_BUCKET, Key=KEY)
    assert head["ETag"].endswith('-2"')  # multipart ETag: md5-of-md5s "-<part count>"
    assert head["ContentType"] == content_type_for(KEY)
    assert s3_store.get(BUCKET, KEY) == source.read_bytes()


def test_missing_bucket_is_storage_error_not_object_not_found(s3_store):
    for operation in (
        lambda: s3_store.get("no-such-bucket", KEY),
        lambda: s3_store.put("no-such-bucket", KEY, b"x"),
        lambda: s3_store.list("no-such-bucket", ""),
    ):
        with pytest.raises(StorageError, match="no-such-bucket") as caught:
            operation()
        assert not isinstance(caught.value, ObjectNotFound)


def test_put_file_failure_is_storage_error(s3_store, tmp_path):
    source = tmp_path / "x.json"
    source.write_bytes(b"{}")
    with pytest.raises(StorageError, match=f"no-such-bucket/{KEY}"):
        s3_store.put_file("no-such-bucket", KEY, source)


def test_make_store_s3_endpoint_uses_path_style(tmp_path):
    endpoint = "http://127.0.0.1:54321/storage/v1/s3"
    store = make_store(
        "s3",
        endpoint_url=endpoint,
        region="eu-west-2",
        access_key="AKIDEXAMPLE",
        secret_key="secret",
        bucket_map={BUCKET: "training"},
    )
    assert isinstance(store, S3ObjectStore)
    url = store.signed_url(BUCKET, KEY, 120, download_name="t.json")
    assert url.startswith(f"{endpoint}/training/{KEY}?")
    query = parse_qs(urlsplit(url).query)
    assert query["X-Amz-Credential"][0].startswith("AKIDEXAMPLE/")
    assert "/eu-west-2/s3/aws4_request" in query["X-Amz-Credential"][0]
    assert query["X-Amz-Expires"] == ["120"]
