"""Trained turns: truncated targets, min_quality and the three over-length policies.

FakeModel costs: 1 + per message (words + 3); the system prompt "You are a kind advisor." is 8.
"""
import orjson
from exports_helpers import EOT, FakeModel, make_pairs, words
from lorafiles.domain.exports import TrainingPolicy, build_member_exports


def build(pairs, model=None, **policy):
    return build_member_exports("c", pairs, TrainingPolicy(**policy), model or FakeModel())


def decoded(result, fmt):
    return [orjson.loads(line) for line in result.lines[fmt].splitlines()]


def weights(result):
    return [[m.get("weight") for m in line["messages"] if m["role"] == "assistant"] for line in decoded(result, "openai")]


def reasons(result):
    return [(e["turn_number"], e["reason"], e["trainable_tokens"]) for e in result.stats["exclusions"]]


def test_truncated_target_is_context_not_trained_and_counted():
    texts = ["u one", "a one cut \\", "u two", "a two", "u three", "a three \\ "]
    r = build(make_pairs(texts))
    assert r.ok
    assert weights(r) == [[0, 1]]  # the trailing truncated turn is cut; the middle one is context
    assert reasons(r) == [(2, "truncated_target", 4 + EOT), (6, "truncated_target", 3 + EOT)]
    assert r.stats["checks"]["truncated_target"] == 2
    assert [p.field for p in r.problems if p.code == "truncated_target"] == [
        "training_pairs[1].target_response", "training_pairs[5].target_response"]
    assert all(p.severity == "warning" for p in r.problems if p.code == "truncated_target")
    # the truncated text itself is kept, unchanged, as context
    assert decoded(r, "openai")[0]["messages"][2]["content"] == "a one cut \\"
    assert [c["completion"][0]["content"] for c in decoded(r, "trl")] == ["a two"]


def test_a_conversation_whose_targets_are_all_truncated_has_no_line_and_is_not_an_error():
    r = build(make_pairs(["u one", "a one \\", "u two", "a two \\"]))
    assert r.ok
    assert r.lines == {f: b"" for f in r.lines}
    assert r.stats["lines"] == {"openai": 0, "trl": 0, "axolotl": 0, "sharegpt": 0}
    assert [x[1] for x in reasons(r)] == ["truncated_target", "truncated_target"]


def test_min_quality_uses_the_pair_quality_score():
    texts = ["u1", "a1", "u2", "a2", "u3", "a3"]
    quality = [3, 3.4, 3, 2.9, 3, 3.0]
    assert weights(build(make_pairs(texts, quality=quality))) == [[1, 1, 1]]
    r = build(make_pairs(texts, quality=quality), min_quality=3)
    assert weights(r) == [[1, 0, 1]]
    assert reasons(r) == [(4, "below_min_quality", 1 + EOT)]
    r = build(make_pairs(texts, quality=quality), min_quality=3.5)
    assert r.ok and r.lines["openai"] == b"" and len(reasons(r)) == 3


LONG = [words(10, "a"), words(10, "b"), words(10, "c"), words(200, "d"), words(10, "e"), words(10, "f")]
# example totals: up to turn 2: 1+8+13+13 = 35; turn 4: 35+13+203 = 251; turn 6: 251+13+13 = 277


def test_drop_turn_stops_at_the_last_turn_that_fits():
    r = build(make_pairs(LONG), max_length=250)
    assert r.ok
    assert weights(r) == [[1]]
    assert reasons(r) == [(4, "over_length", 200 + EOT), (6, "over_length", 10 + EOT)]
    assert r.stats["tokens"]["openai"] == [[35, 10 + EOT]]
    assert r.stats["trims"] == []


def test_drop_turn_keeps_everything_that_fits():
    r = build(make_pairs(LONG), max_length=277)
    assert weights(r) == [[1, 1, 1]] and reasons(r) == []
    assert r.stats["tokens"]["openai"] == [[277, 10 + 200 + 10 + 3 * EOT]]
    assert r.stats["tokens"]["trl"] == [[35, 11], [251, 201], [277, 11]]


def test_fail_policy_makes_an_over_length_turn_a_blocking_error():
    r = build(make_pairs(LONG), max_length=250, over_length="fail")
    assert not r.ok
    errs = [e for e in r.errors if e.code == "over_length"]
    assert [e.field for e in errs] == ["training_pairs[3].target_response", "training_pairs[5].target_response"]
    assert "251 tokens" in errs[0].message and "max_length 250" in errs[0].message
    assert r.lines == {f: b"" for f in r.lines}
    assert build(make_pairs(LONG), max_length=277, over_length="fail").ok


def test_trim_history_removes_the_oldest_exchanges_and_reuses_earlier_turns_as_context():
    texts = [words(5, "a"), words(5, "b"), words(5, "c"), words(5, "d"), words(60, "e"), words(60, "f")]
    # turn 4's example: 1+8+4*8 = 41; turn 6's: 41+63+63 = 167; without the first exchange: 151
    r = build(make_pairs(texts), max_length=151, over_length="trim_history")
    assert r.ok
    first, second = decoded(r, "openai")
    assert [m["content"][:2] for m in first["messages"][1:]] == ["a0", "b0", "c0", "d0"]
    assert [m.get("weight") for m in first["messages"]] == [None, None, 1, None, 1]
    assert first["messages"][0]["role"] == "system" and second["messages"][0]["role"] == "system"
    assert [m["content"][:2] for m in second["messages"][1:]] == ["c0", "d0", "e0", "f0"]
    assert [m.get("weight") for m in second["messages"]] == [None, None, 0, None, 1]
    assert r.stats["trims"] == [{"pair_id": "t_turn6", "turn_number": 6, "messages_removed": 2,
                                 "context_tokens_removed": 16}]
    assert r.stats["tokens"]["openai"] == [[41, 12], [151, 61]]
    assert reasons(r) == []
    # drop_turn on the same data loses the last turn instead
    d = build(make_pairs(texts), max_length=151)
    assert weights(d) == [[1, 1]] and reasons(d) == [(6, "over_length", 61)]


def test_trim_history_marks_a_turn_that_does_not_fit_even_alone_as_over_length():
    r = build(make_pairs(LONG), max_length=200, over_length="trim_history")
    assert r.ok
    assert weights(r) == [[1], [1]]
    assert reasons(r) == [(4, "over_length", 201)]
    # turn 6 alone (system + u3 + a3) = 35; everything before it (4 messages) was removed
    assert r.stats["trims"] == [{"pair_id": "t_turn6", "turn_number": 6, "messages_removed": 4,
                                 "context_tokens_removed": 277 - 35}]
    assert [line["messages"][1]["content"][:2] for line in decoded(r, "openai")] == ["a0", "e0"]


def test_every_line_fits_and_has_trainable_tokens_under_every_policy():
    for policy in ("drop_turn", "trim_history"):
        for limit in (128, 150, 200, 260, 300):
            r = build(make_pairs(LONG), max_length=limit, over_length=policy)
            for fmt, pairs in r.stats["tokens"].items():
                assert all(total <= limit and trainable > 0 for total, trainable in pairs), (policy, limit, fmt)
            assert r.stats["checks"]["over_max_length"] == 0
