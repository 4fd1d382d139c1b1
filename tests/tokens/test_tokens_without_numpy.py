"""The Lambda bundle leaves numpy out (serverless.yml `noDeploy`): quicktok-v1 declares it but
only its `count_batch` imports it. Every tokenizer must count without it."""
from __future__ import annotations

import subprocess
import sys

SCRIPT = r'''
import builtins, sys
real = builtins.__import__
def guard(name, *a, **k):
    if name == "numpy" or name.startswith("numpy."):
        raise ImportError("numpy is not in the Lambda bundle")
    return real(name, *a, **k)
builtins.__import__ = guard
from lorafiles.tokens import SUPPORTED_MODELS, get_model
msgs = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi — how?"},
        {"role": "assistant", "content": "Step by step.\nFirst…"}]
for m in SUPPORTED_MODELS:
    c = get_model(m).count(msgs, [False, False, True])
    assert 0 < c.trainable < c.total, (m, c)
assert "numpy" not in sys.modules
print("ok", len(SUPPORTED_MODELS))
'''


def test_every_tokenizer_counts_without_numpy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok 4"
