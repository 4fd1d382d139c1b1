"""Token figures over the 72-conversation corpus vs the measured facts in shared/spec/trainers.md.

trainers.md (one example per conversation, repeated user message removed, Mistral v0.2):
min 689 / median 2017 / max 3987, 34 examples over 2048. Measured here:

- `mistral-7b-instruct-v0.2` as registered (the HF *legacy* tokenizer, a dummy-prefix `▁` after
  every `<s>` / `</s>`): 691 / 2020 / 3990, 34 over 2048;
- the same with `legacy=False` (no `▁` after control tokens, = mistral-common's own encoding):
  689 / 2017 / 3987, 34 over 2048: trainers.md exactly.

The gap is exactly one token per user turn of each example (the `▁` before `▁[INST]`), so
trainers.md was measured with a tokenizer that does not add a prefix space after `<s>`/`</s>`.
"""
from __future__ import annotations

import json
import statistics
from itertools import pairwise
from pathlib import Path

import pytest
from lorafiles.tokens import default_max_length, get_model
from lorafiles.tokens.mistral import MistralV02

from shared_fixtures import REASON, ROOT  # noqa: E402  (shared/fixtures beside the repo)

CORPUS = ROOT / "corpus"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=REASON)


def example_of(path: Path) -> list[dict[str, str]]:
    """One example per conversation, built the simple way: system, the history of the last pair
    with a target (roles as given, `user` if missing), its input unless it repeats the last
    history item, its target."""
    pairs = [p for p in json.loads(path.read_text("utf-8"))["training_pairs"] if p.get("target_response") is not None]
    last = pairs[-1]
    messages = [{"role": "system", "content": last["system_prompt"]}]
    history = [{"role": h.get("role") or "user", "content": h["content"]} for h in last["conversation_history"]]
    messages += history
    if not history or last["current_user_input"] != history[-1]["content"]:
        messages.append({"role": "user", "content": last["current_user_input"]})
    messages.append({"role": "assistant", "content": last["target_response"]})
    return messages


@pytest.fixture(scope="module")
def examples():
    files = sorted(CORPUS.glob("*.json"))
    assert len(files) == 72
    return [example_of(f) for f in files]


def figures(totals):
    return min(totals), statistics.median(totals), max(totals), sum(t > 2048 for t in totals)


def test_mistral_counts_match_trainers_md(examples):
    legacy, non_legacy = get_model("mistral-7b-instruct-v0.2"), MistralV02(legacy=False)
    flags = [[m["role"] == "assistant" for m in ex] for ex in examples]
    a = [legacy.count(ex, f) for ex, f in zip(examples, flags)]
    b = [non_legacy.count(ex, f) for ex, f in zip(examples, flags)]
    assert figures([c.total for c in b]) == (689, 2017, 3987, 34)              # trainers.md, exactly
    lo, med, hi, over = figures([c.total for c in a])
    assert abs(lo - 689) <= 5 and abs(med - 2017) <= 5 and abs(hi - 3987) <= 5 and over == 34
    for ex, x, y in zip(examples, a, b):
        assert x.total - y.total == sum(m["role"] == "user" for m in ex)       # the gap, explained
        assert x.trainable == y.trainable
        assert all(m["role"] != m2["role"] for m, m2 in pairwise(ex[1:]))   # alternation holds


@pytest.mark.parametrize("model_id", ["llama-3.1-8b-instruct", "qwen2.5-7b-instruct", "openai-gpt-4o"])
def test_other_models_count_the_corpus(model_id, examples):
    model = get_model(model_id)
    totals = [model.count(ex, [m["role"] == "assistant" for m in ex]).total for ex in examples]
    mistral = [len(get_model("mistral-7b-instruct-v0.2").encode(get_model("mistral-7b-instruct-v0.2").render(ex)))
               for ex in examples]
    assert max(totals) <= default_max_length(model_id)          # every corpus example fits whole
    assert sum(totals) < sum(mistral)                          # bigger vocabularies, fewer tokens
