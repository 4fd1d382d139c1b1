"""The `kit` every test here works through: the service over a fresh database and a local store
(tests/mutants/stepkit.py), closed afterwards."""
from __future__ import annotations

import pytest

from stepkit import Kit, make_kit


@pytest.fixture
def kit(db_url, tmp_path) -> Kit:
    k = make_kit(db_url, tmp_path)
    yield k
    k.service.db.close()
