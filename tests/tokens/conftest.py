"""Fixtures of the tokens tests (real tokenizers and templates, no mocks)."""
from __future__ import annotations

import pytest
from tokens_samples import CONVERSATIONS


@pytest.fixture(params=sorted(CONVERSATIONS))
def conversation(request):
    return CONVERSATIONS[request.param]
