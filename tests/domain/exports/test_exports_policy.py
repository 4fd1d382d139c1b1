import hashlib

import orjson
import pytest
from lorafiles.domain.exports import EXPORT_FILES, EXPORT_FORMATS, TrainingPolicy
from pydantic import ValidationError


def test_defaults_are_the_app_trainer():
    p = TrainingPolicy()
    assert (p.target_model, p.max_length, p.over_length, p.min_quality, p.fix_literal_escapes) == (
        "mistral-7b-instruct-v0.2", 2048, "drop_turn", None, True)


def test_formats_and_files():
    assert EXPORT_FORMATS == ("openai", "trl", "axolotl", "sharegpt")
    assert EXPORT_FILES == {f: f"{f}.jsonl" for f in EXPORT_FORMATS}


@pytest.mark.parametrize("bad", [
    {"max_length": 127}, {"max_length": 131073}, {"over_length": "truncate"}, {"min_quality": -0.1},
    {"min_quality": 10.5}, {"unknown": 1}, {"target_model": ""},
])
def test_invalid_policies_are_rejected(bad):
    with pytest.raises(ValidationError):
        TrainingPolicy(**bad)


def test_policy_is_frozen():
    with pytest.raises(ValidationError):
        TrainingPolicy().max_length = 4096


def test_digest_is_sha256_of_sorted_canonical_json_of_all_fields():
    p = TrainingPolicy(max_length=4096, min_quality=3, over_length="trim_history")
    expected = orjson.dumps({"fix_literal_escapes": True, "max_length": 4096, "min_quality": 3.0,
                             "over_length": "trim_history", "target_model": "mistral-7b-instruct-v0.2"},
                            option=orjson.OPT_SORT_KEYS)
    assert p.canonical_json() == expected
    assert p.digest() == hashlib.sha256(expected).hexdigest()


def test_digest_distinguishes_every_field_and_ignores_int_vs_float():
    base = TrainingPolicy()
    variants = [TrainingPolicy(target_model="qwen2.5-7b-instruct"), TrainingPolicy(max_length=4096),
                TrainingPolicy(over_length="fail"), TrainingPolicy(min_quality=3),
                TrainingPolicy(fix_literal_escapes=False)]
    digests = {v.digest() for v in variants} | {base.digest()}
    assert len(digests) == 6
    assert TrainingPolicy(min_quality=3).digest() == TrainingPolicy(min_quality=3.0).digest()
    assert TrainingPolicy().digest() == base.digest()
