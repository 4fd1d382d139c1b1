"""Version-wide figures folded from member stats."""
import orjson
import pytest
from exports_helpers import FakeModel, make_pairs, words
from lorafiles.domain.exports import (
    CHANGE_KINDS,
    EXCLUSION_REASONS,
    EXPORT_FORMATS,
    ExportAccumulator,
    TrainingPolicy,
    build_member_exports,
    nearest_rank,
)
from lorafiles.domain.exports.aggregate import distribution


def test_nearest_rank():
    values = list(range(1, 101))
    assert [nearest_rank(values, p) for p in (1, 50, 95, 99, 100)] == [1, 50, 95, 99, 100]
    assert nearest_rank([1, 2, 3, 4], 50) == 2 and nearest_rank([1, 2, 3, 4], 51) == 3
    assert nearest_rank([7], 99) == 7
    with pytest.raises(ValueError):
        nearest_rank([], 50)
    with pytest.raises(ValueError):
        nearest_rank([1], 0)


def test_distribution():
    assert distribution([5, 1, 3, 2, 4]) == {"min": 1, "max": 5, "mean": 3.0, "p50": 3, "p95": 5, "p99": 5}
    assert distribution([]) == {"min": None, "mean": None, "p50": None, "p95": None, "p99": None, "max": None}


def _stats(tokens, exclusions=(), trims=(), changes=None, checks=None, max_length=2048):
    return {"max_length": max_length,
            "tokens": {f: tokens.get(f, []) for f in EXPORT_FORMATS},
            "exclusions": list(exclusions), "trims": list(trims),
            "changes": changes or {}, "checks": checks or {}}


def test_accumulator_figures():
    acc = ExportAccumulator()
    acc.add(_stats({"openai": [[100, 10], [3000, 30]], "trl": [[50, 5]]},
                   exclusions=[{"pair_id": "x", "turn_number": 2, "reason": "over_length", "trainable_tokens": 40},
                               {"pair_id": "x", "turn_number": 4, "reason": "truncated_target", "trainable_tokens": 7}],
                   trims=[{"pair_id": "x", "turn_number": 6, "messages_removed": 2, "context_tokens_removed": 90}],
                   changes={"role_inferred": 2}, checks={"truncated_target": 1}))
    acc.add(_stats({"openai": [[200, 20]]},
                   exclusions=[{"pair_id": "y", "turn_number": 2, "reason": "over_length", "trainable_tokens": 1}],
                   changes={"role_inferred": 1, "literal_escapes_fixed": 4}))
    out = acc.result()
    assert out["conversations"] == 2 and out["max_length"] == 2048
    o = out["formats"]["openai"]
    assert o["lines"] == 3
    assert o["total_tokens"] == {"max": 3000, "mean": 1100.0, "min": 100, "p50": 200, "p95": 3000, "p99": 3000}
    assert o["trainable_tokens"]["p50"] == 20
    assert o["examples_over_max_length"] == 1
    assert o["training_tokens_per_epoch"] == 3300 and o["trainable_tokens_per_epoch"] == 60
    assert o["trainable_tokens_excluded"] == 48 and o["context_tokens_trimmed"] == 90
    assert out["formats"]["sharegpt"]["lines"] == 0 and out["formats"]["sharegpt"]["total_tokens"]["p50"] is None
    assert out["exclusions"]["over_length"] == {"count": 2, "trainable_tokens": 41}
    assert out["exclusions"]["below_min_quality"] == {"count": 0, "trainable_tokens": 0}
    assert set(out["exclusions"]) == set(EXCLUSION_REASONS)
    assert out["trims"] == {"context_tokens_removed": 90, "count": 1, "messages_removed": 2}
    assert out["changes"]["role_inferred"] == 3 and out["changes"]["literal_escapes_fixed"] == 4
    assert set(out["changes"]) == set(CHANGE_KINDS)
    assert out["checks"]["truncated_target"] == 1 and out["checks"]["data_type"] == 0
    assert "nearest-rank" in out["percentiles"]


def test_result_is_deterministic_with_sorted_keys():
    def keys_sorted(v):
        if isinstance(v, dict):
            return list(v) == sorted(v) and all(keys_sorted(x) for x in v.values())
        return True
    acc = ExportAccumulator()
    model, policy = FakeModel(), TrainingPolicy(max_length=200, over_length="trim_history")
    texts = [words(10), words(50), words(10), words(120), words(5), words(5 + 1)]
    members = [build_member_exports(f"c{i}", make_pairs(texts[:2 + 2 * (i % 3)]), policy, model) for i in range(6)]
    acc.extend(m.stats for m in members)
    out = acc.result()
    assert keys_sorted(out)
    again = ExportAccumulator().extend(orjson.loads(orjson.dumps(m.stats)) for m in members).result()
    assert orjson.dumps(out) == orjson.dumps(again)  # works from stored (JSONB round-tripped) stats
    assert out["formats"]["openai"]["lines"] == sum(m.stats["lines"]["openai"] for m in members)
    assert out["formats"]["trl"]["trainable_tokens_per_epoch"] == sum(t for m in members for _, t in m.stats["tokens"]["trl"])
