"""The one rule of what makes two job requests the same request (domain/idempotency.py)."""
from __future__ import annotations

import uuid

from lorafiles.domain.idempotency import canonical_request, fingerprint_of, request_differences, request_fingerprint

FILE = "b79bfcfe-0000-4000-8000-000000000001"
BASE = dict(kind="add", file_id=FILE, name=None, description=None, conversation_ids=["c1", "c2"])


def test_same_request_same_fingerprint_whatever_the_spelling_of_the_target():
    assert request_fingerprint(**BASE) == request_fingerprint(**{**BASE, "file_id": FILE.upper()})
    assert request_fingerprint(**BASE) == request_fingerprint(**{**BASE, "file_id": uuid.UUID(FILE)})
    assert request_fingerprint(**BASE) == request_fingerprint(**{**BASE, "conversation_ids": ("c1", "c2")})
    assert request_fingerprint(**BASE) == fingerprint_of(canonical_request(**BASE))


def test_every_field_counts_and_is_named():
    changes = {"kind": "create", "file_id": "b79bfcfe-0000-4000-8000-000000000002", "name": "n",
               "description": "", "conversation_ids": ["c2", "c1"]}
    for field, value in changes.items():
        other = {**BASE, field: value}
        assert request_fingerprint(**other) != request_fingerprint(**BASE), field
        assert request_differences(canonical_request(**BASE), canonical_request(**other)) == [field]


def test_future_options_pass_through_and_none_is_no_option():
    """A `policy` option added to start_job joins the fingerprint by being passed through;
    requests that do not use it keep their fingerprint."""
    assert request_fingerprint(**BASE, policy=None) == request_fingerprint(**BASE)
    with_policy = request_fingerprint(**BASE, policy={"epochs": 3, "lr": 0.0002})
    assert with_policy != request_fingerprint(**BASE)
    assert with_policy == request_fingerprint(**BASE, policy={"lr": 0.0002, "epochs": 3})  # key order is not content
    assert with_policy != request_fingerprint(**BASE, policy={"epochs": 4, "lr": 0.0002})
    old = canonical_request(**BASE)
    assert request_differences(old, canonical_request(**BASE, policy={"epochs": 3})) == ["policy"]
    assert request_differences(canonical_request(**BASE, policy={"epochs": 3}),
                               canonical_request(**{**BASE, "name": "x"}, policy={"epochs": 4})) == ["name", "policy"]
