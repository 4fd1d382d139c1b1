"""The shared I/O pool survives a fork: a forked child (mutmut's workers, a pre-forking server,
multiprocessing's fork start method) inherits the pool object but not its threads, and must still
read objects instead of waiting forever on a pool that has no thread."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from lorafiles.storage import LocalObjectStore, get_many

BUCKET = "training-files"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_through_the_shared_pool(tmp_path):
    store = LocalObjectStore(root=tmp_path)
    keys = [f"k/{i}" for i in range(8)]
    for i, key in enumerate(keys):
        store.put(BUCKET, key, str(i).encode())
    assert get_many(store, BUCKET, keys, max_workers=4) == {k: str(i).encode() for i, k in enumerate(keys)}

    pid = os.fork()
    if pid == 0:  # the child: a bounded wait, then the answer as the exit status
        code = 3
        try:
            signal.alarm(20)
            # one read: the pool counts the parent's idle threads as its own and starts none
            code = 0 if get_many(store, BUCKET, keys[:1]) == {keys[0]: b"0"} else 2
        finally:
            sys.stdout.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0  # -SIGALRM: the child hung on the inherited pool
