"""Axolotl / LLaMA-Factory configuration and the manifest's format notes."""
import pytest
from lorafiles.domain.exports import (
    EXPORT_FILES,
    EXPORT_FORMATS,
    TrainingPolicy,
    axolotl_datasets_yaml,
    format_notes,
    llamafactory_dataset_info,
)


def test_axolotl_yaml_is_a_ready_chat_template_dataset():
    yaml = pytest.importorskip("yaml")
    text = axolotl_datasets_yaml(TrainingPolicy(max_length=4096))
    cfg = yaml.safe_load(text)
    assert cfg["sequence_len"] == 4096
    assert cfg["excess_length_strategy"] in ("drop", "truncate", "raise")
    assert cfg["chat_template"] == "tokenizer_default"
    (ds,) = cfg["datasets"]
    assert ds == {"path": "axolotl.jsonl", "ds_type": "json", "type": "chat_template", "field_messages": "messages",
                  "message_property_mappings": {"role": "role", "content": "content"},
                  "message_field_training": "train", "roles_to_train": ["assistant"], "train_on_eos": "turn"}
    assert "roles_to_train only applies to messages WITHOUT the flag" in text
    assert yaml.safe_load(axolotl_datasets_yaml(TrainingPolicy(), 'dir with "quotes"/a.jsonl'))["datasets"][0]["path"] \
        == 'dir with "quotes"/a.jsonl'


def test_llamafactory_dataset_info():
    assert llamafactory_dataset_info("advisor") == {"advisor": {
        "file_name": "sharegpt.jsonl", "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system"},
        "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}}
    assert llamafactory_dataset_info("x", "other.jsonl")["x"]["file_name"] == "other.jsonl"


def test_format_notes_cover_every_format_and_policy_choice():
    notes = format_notes()
    assert list(notes) == list(EXPORT_FORMATS)
    for fmt, n in notes.items():
        assert n["file"] == EXPORT_FILES[fmt]
        for key in ("per_message_training", "drop_turn", "trim_history", "fail", "truncated_target",
                    "below_min_quality", "empty_content", "fix_literal_escapes", "max_length"):
            assert isinstance(n[key], str) and n[key], (fmt, key)
    assert "sharegpt_context_dropped" in notes["sharegpt"]["per_message_training"]
