"""Mistral-7B-Instruct-v0.2: SentencePiece v1 (32,000 tokens) + the system-aware HF chat template.

Tokenizer
    `sentencepiece.SentencePieceProcessor` on `data/mistral-v1.tokenizer.model`, shipped in this
    package: a byte-for-byte copy of `mistral_common/data/tokenizer.model.v1` from mistral-common
    1.13.1 (Apache-2.0; the file `MistralTokenizer.v1()` loads), identical to the model
    repository's `tokenizer.model` (sha256 dadfd56d...4055). Shipping the 587 KB file instead of
    depending on mistral-common keeps numpy, pillow, pycountry and tiktoken (about 180 MB) out of
    the Lambda package; `encode(s)` adds no BOS/EOS, as mistral-common's `encode(s, bos=False,
    eos=False)` does.

What `encode(text)` reproduces (the registry's model, `legacy=True`)
    The model's Hugging Face tokenizer as published: the *legacy* Llama tokenizer
    (`tokenizer.json` normaliser `Prepend("▁") + Replace(" ", "▁")`, no pre-tokenizer), called as
    `apply_chat_template(messages, tokenize=True)` calls it (`add_special_tokens=False`):

    - `<unk>`, `<s>`, `</s>` (ids 0, 1, 2) are its only added tokens: cut out of the text
      wherever they occur (inside message content too) and mapped to their ids. `[INST]` and
      `[/INST]` are ordinary text in the v1 vocabulary (`▁[ INST ]`, `▁[ / INST ]`).
    - each stretch of text between two of them is encoded on its own, and gets SentencePiece's
      dummy prefix `▁` (HF's `Prepend`, applied per split). The template writes `<s>` and `</s>`
      followed by `' [INST] '`, so each user turn starts with a lone `▁` (id 28705):
      `<s> ▁ ▁[ INST ] ...`, `</s> ▁ ▁[ INST ] ...`. That is one token per user turn more than
      mistral-common's own instruct encoding (`<s> ▁[ INST ] ...`, the Mistral cookbook's
      "Tokenizer V1" table), and it is what a trainer tokenising with the HF tokenizer sees.
    - whitespace is kept (`remove_extra_whitespaces` off; `split_by_whitespace` and
      `allow_whitespace_only_pieces` on); characters outside the vocabulary fall back to bytes
      (a newline is `<0x0A>` = 13).

    Checked token for token against `transformers` 4.57.1 `LlamaTokenizerFast` (including
    `apply_chat_template(..., tokenize=True)`) and the slow `LlamaTokenizer`, both built from
    this file with `legacy=True, add_prefix_space=True`: identical ids on the 72 corpus examples,
    their prompts, and edge cases (leading, repeated and trailing spaces, newlines, tabs,
    `<s>`/`</s>`/`<unk>` inside content, em dash, arrow, accents, CJK, emoji).

`MistralV02(legacy=False)`
    HF's non-legacy Llama tokenizer (Metaspace `prepend_scheme="first"`): the dummy prefix only
    on the first split of the text, none after a control token; ids equal mistral-common's
    instruct encoding and transformers' `legacy=False` tokenizers (checked the same way). The
    corpus figures of shared/spec/trainers.md (689 / 2017 / 3987) are this mode's; the registry's
    legacy mode gives 691 / 2020 / 3990 (exactly +1 per user turn). Not registered: which one a
    trainer gets depends on the `tokenizer.json` it loads and on its transformers version;
    Mistral v0.1/v0.2 are published as `legacy` tokenizers ("Mistral uses legacy = True by
    default. It was train[ed] with it", HF's tokenizer maintainer, huggingface/transformers#29452).

Known residual differences
    - TRL's SFT trainer fed *text* (`apply_chat_template(..., tokenize=False)`, then tokenised
      with `add_special_tokens=True`) may prepend a second `<s>`: one token, not counted here.
    - none known between this encoding and the legacy HF tokenizer.
"""
from __future__ import annotations

import os
from importlib import metadata

from ._base import TemplateChatModel
from ._jinja import ChatTemplate, sha256_hex

MODEL_ID = "mistral-7b-instruct-v0.2"
TEMPLATE_FILE = f"{MODEL_ID}.jinja"
TEMPLATE_ID = "mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template (system-aware)"
VOCAB_FILE = "mistral-v1.tokenizer.model"
CONTROL_TOKENS = frozenset({"[INST]", "[/INST]", "<s>", "</s>", "<unk>"})


def vocab_path() -> str:
    return os.path.join(os.path.dirname(__file__), "data", VOCAB_FILE)


class MistralV02(TemplateChatModel):
    """`legacy=True` (the registry's): the HF tokenizer as published. `legacy=False`: HF's
    non-legacy Llama tokenizer (no dummy prefix after a control token); see the module docstring."""

    def __init__(self, *, legacy: bool = True) -> None:
        from sentencepiece import SentencePieceProcessor

        path = vocab_path()
        with open(path, "rb") as fh:
            vocab_sha = sha256_hex(fh.read())
        self._sp = SentencePieceProcessor(model_file=path)
        self.legacy = legacy
        specials = {"<unk>": self._sp.unk_id(), "<s>": self._sp.bos_id(), "</s>": self._sp.eos_id()}
        if specials != {"<unk>": 0, "<s>": 1, "</s>": 2} or self._sp.get_piece_size() != 32000:
            raise RuntimeError(f"{path} is not the Mistral v1 SentencePiece vocabulary")
        self._unk_prefix = len(self._sp.encode("<unk>"))
        versions = f"sentencepiece {metadata.version('sentencepiece')}"
        mode = ("HF legacy Llama tokenizer: <s> </s> <unk> special, dummy prefix per split" if legacy else
                "HF non-legacy Llama tokenizer: <s> </s> <unk> special, dummy prefix on the first split only")
        super().__init__(
            model_id=MODEL_ID,
            tokenizer_id=f"{versions}: SentencePiece v1 lorafiles/tokens/data/{VOCAB_FILE} ({mode})",
            vocab_sha256=vocab_sha,
            template_id=TEMPLATE_ID,
            template=ChatTemplate(TEMPLATE_FILE, {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}),
            special_ids=specials,
            control_tokens=CONTROL_TOKENS,
        )

    def _encode_text(self, text: str, at_start: bool) -> list[int]:
        if self.legacy or at_start:
            return self._sp.encode(text)
        # no dummy prefix: encode after a throw-away "<unk>" text and drop its pieces (what
        # transformers' non-legacy slow LlamaTokenizer does)
        return self._sp.encode("<unk>" + text)[self._unk_prefix:]


def load() -> MistralV02:
    return MistralV02()
