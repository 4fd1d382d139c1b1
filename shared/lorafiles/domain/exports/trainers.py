"""Trainer-side configuration shipped with the exports, and the per-format notes of the manifest.

Axolotl keys were checked against axolotl-ai-cloud/axolotl (src/axolotl/prompt_strategies/
chat_template.py, utils/schemas/datasets.py, docs/dataset-formats/conversation.qmd):
- a message's own `message_field_training` flag, when present, decides whether that message is
  trained; `roles_to_train` only applies to messages without the flag;
- `message_field_role` / `message_field_content` are deprecated in favour of
  `message_property_mappings` (Axolotl logs a warning and converts them), so the mapping is used;
- `excess_length_strategy` is a top-level key (`drop` by default, `truncate`, `raise`).
LLaMA-Factory's `dataset_info.json` entry follows its sharegpt format (data/README.md).
"""
from __future__ import annotations

from typing import Any

import orjson

from .policy import EXPORT_FILES, TrainingPolicy


def axolotl_datasets_yaml(policy: TrainingPolicy, file_name: str = EXPORT_FILES["axolotl"]) -> str:
    """The ready `axolotl.yml` snippet for `axolotl.jsonl` (merge it into a full Axolotl config)."""
    path = orjson.dumps(file_name).decode()  # a JSON string is a valid YAML scalar
    return f"""\
# Axolotl dataset config for {file_name}, written by lorafiles.
# Every example was rendered with {policy.target_model}'s own chat template and counted with its
# tokenizer: each fits in {policy.max_length} tokens (length policy: {policy.over_length}).
chat_template: tokenizer_default  # the template of the model's tokenizer_config.json, as measured
sequence_len: {policy.max_length}
# No row should be longer than sequence_len; `raise` makes a mismatch fail loudly instead of
# Axolotl's default `drop`, which would silently lose the row.
excess_length_strategy: raise
datasets:
  - path: {path}
    ds_type: json
    type: chat_template
    field_messages: messages
    # current form of the deprecated message_field_role: role / message_field_content: content
    message_property_mappings:
      role: role
      content: content
    # Every message carries a boolean `train`. When a message has it, Axolotl uses it to decide
    # whether that message is trained; roles_to_train only applies to messages WITHOUT the flag.
    # Here the flags rule: true on trained assistant messages only, false on system, user and
    # context-only assistant messages (truncated, below min_quality, over length, re-used history).
    message_field_training: train
    roles_to_train: ["assistant"]
    train_on_eos: turn  # the end-of-turn token of each trained message is trained (as counted)
"""


def llamafactory_dataset_info(name: str, file_name: str = EXPORT_FILES["sharegpt"]) -> dict[str, Any]:
    """LLaMA-Factory's `dataset_info.json` content declaring `sharegpt.jsonl` as dataset `name`."""
    return {
        name: {
            "file_name": file_name,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system"},
            "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"},
        }
    }


_COMMON = {
    "truncated_target": "a target ending in a backslash is never trained; it stays as context of later turns",
    "below_min_quality": "a target whose quality_score is below min_quality is not trained (context only)",
    "empty_content": "empty or whitespace-only content is an error: the conversation is blocked",
    "fix_literal_escapes": "when on, literal backslash-n, backslash-quote, backslash-t become real characters "
                           "in every message of every format (counted: literal_escapes_fixed)",
    "repeated_user_input": "a current_user_input equal to the last history message is not repeated",
    "fail": "an over-length turn blocks the conversation: no format gets a line of it",
}


def format_notes() -> dict[str, Any]:
    """How each policy choice is expressed (or handled) in each format; declared in the manifest."""
    return {
        "openai": {
            **_COMMON,
            "file": EXPORT_FILES["openai"],
            "shape": '{"messages": [{"role": "system"|"user"|"assistant", "content", "weight"?}]}',
            "per_message_training": "exact: weight 1 on trained assistant messages, 0 on context-only ones; "
                                    "no weight on system or user messages",
            "lines": "one per example (normally one per dialogue)",
            "drop_turn": "an over-length turn gets weight 0 and the example ends at the last trained turn that fits",
            "trim_history": "an over-length turn starts a new example whose oldest user/assistant exchanges are "
                            "removed (system kept); earlier turns in it have weight 0",
            "max_length": "OpenAI applies its own context limit; every example fits in max_length tokens of the "
                          "target model",
        },
        "trl": {
            **_COMMON,
            "file": EXPORT_FILES["trl"],
            "shape": '{"prompt": [system, user, assistant, ..., user], "completion": [{"role": "assistant", '
                     '"content"}]}',
            "per_message_training": "one line per trained assistant turn; TRL trains the completion only "
                                    "(prompt-completion default), the prompt is context",
            "lines": "one per trained turn, its prompt being its example up to that turn",
            "drop_turn": "an over-length turn gets no line",
            "trim_history": "a trimmed turn's prompt starts after the removed exchanges (system kept)",
            "max_length": "set SFTConfig(max_length=...) to max_length (TRL's default is 1024; truncation "
                          "keeps the start)",
        },
        "axolotl": {
            **_COMMON,
            "file": EXPORT_FILES["axolotl"],
            "shape": '{"messages": [{"role", "content", "train": bool}]}',
            "per_message_training": "exact: train true on trained assistant messages, false on every other "
                                    "message (message_field_training: train)",
            "lines": "one per example, as openai",
            "drop_turn": "as openai (train false instead of weight 0)",
            "trim_history": "as openai",
            "max_length": "axolotl.yml sets sequence_len to max_length and excess_length_strategy: raise",
        },
        "sharegpt": {
            **_COMMON,
            "file": EXPORT_FILES["sharegpt"],
            "shape": '{"conversations": [{"from": "human"|"gpt", "value"}], "system"}',
            "per_message_training": "none: LLaMA-Factory trains every gpt message of a line; a line ends before "
                                    "the first context-only assistant message that precedes a trained one and "
                                    "the later trained turns go on in a new line starting at the next user "
                                    "message (counted: sharegpt_context_dropped, the messages left out)",
            "lines": "one per run of trained turns of an example",
            "drop_turn": "as openai; an untrained turn inside an example splits the line (see per_message_training)",
            "trim_history": "as openai, then split around context-only turns",
            "truncated_target": "a truncated target cannot be context here: its exchange is left out and the "
                                "line is split there",
            "below_min_quality": "as truncated_target",
            "max_length": "set cutoff_len to max_length (LLaMA-Factory's default is 2048); do not set "
                          "mask_history (it would train the last turn only)",
            "dataset_info": "dataset_info.json declares the file with formatting sharegpt and the tags above",
        },
    }
