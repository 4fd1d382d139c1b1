"""Chat templates rendered the way Hugging Face renders `chat_template` (issue 14, tokens): the
environment's whitespace control, `tojson`, `{% break %}`, `raise_exception`, the immutable
sandbox and the render memo, on a small template written here (the shipped ones are single-line
and never show most of these). Expected outputs are written out, not computed with Jinja."""
from __future__ import annotations

import pytest

from lorafiles.ports import TemplateRenderError
from lorafiles.tokens import _jinja
from lorafiles.tokens._jinja import ChatTemplate

TEMPLATE = """{% if messages | length == 0 %}{{ raise_exception("no messages") }}{% endif %}
{% for m in messages %}
    {% if loop.index > 2 %}{% break %}{% endif %}
  {{ m.role }}={{ m.content | tojson }}
{% endfor %}
{% if add_generation_prompt %}{{ bos_token }}{% endif %}"""


@pytest.fixture
def template(monkeypatch) -> ChatTemplate:
    shipped = _jinja.template_bytes
    monkeypatch.setattr(_jinja, "template_bytes",
                        lambda name: TEMPLATE.encode() if name == "edges.jinja" else shipped(name))
    return ChatTemplate("edges.jinja", {"bos_token": "<s>"})


def test_blocks_trim_their_newline_and_their_indentation_as_in_transformers(template: ChatTemplate):
    text = template.render([{"role": "user", "content": "héllo <b> & \"q\""},
                            {"role": "assistant", "content": "ok"}], add_generation_prompt=True)
    assert text == '  user="héllo <b> & \\"q\\""\n  assistant="ok"\n<s>'


def test_loop_controls_stop_the_loop(template: ChatTemplate):
    text = template.render([{"role": "user", "content": str(i)} for i in range(5)])
    assert text == '  user="0"\n  user="1"\n'


def test_tojson_takes_the_json_dumps_arguments():
    assert _jinja._tojson({"b": "é", "a": [1, 2]}) == '{"b": "é", "a": [1, 2]}'
    assert _jinja._tojson({"b": 1, "a": 2}, sort_keys=True) == '{"a": 2, "b": 1}'
    assert _jinja._tojson({"a": [1]}, indent=2) == '{\n  "a": [\n    1\n  ]\n}'
    assert _jinja._tojson({"a": 1, "b": 2}, separators=(",", ":")) == '{"a":1,"b":2}'
    assert _jinja._tojson("é", ensure_ascii=True) == '"\\u00e9"'


def test_a_template_refusal_is_a_render_error_with_its_message(template: ChatTemplate):
    with pytest.raises(TemplateRenderError) as err:
        template.render([])
    assert str(err.value) == "no messages"


def test_the_sandbox_is_immutable(monkeypatch):
    monkeypatch.setattr(_jinja, "template_bytes", lambda name: b"{{ messages.append(1) }}")
    with pytest.raises(TemplateRenderError) as err:
        ChatTemplate("mutating.jinja", {}).render([{"role": "user", "content": "x"}])
    assert str(err.value).startswith("mutating.jinja: SecurityError: ")


def test_renders_are_remembered_unless_the_template_reads_the_clock(monkeypatch):
    calls = []
    monkeypatch.setattr(_jinja, "template_bytes", lambda name: b"{{ messages[0].content }}")
    t = ChatTemplate("memo.jinja", {})
    original = t._render
    t._render = lambda messages, agp: (calls.append(1), original(messages, agp))[1]
    msgs = [{"role": "user", "content": "x"}]
    assert t.render(msgs) == t.render(msgs) == "x" and len(calls) == 1
    assert t.render(msgs, add_generation_prompt=True) == "x" and len(calls) == 2  # its own key
    monkeypatch.setattr(_jinja, "template_bytes", lambda name: b"{{ strftime_now('%Y') }}{{ messages[0].content }}")
    clock = ChatTemplate("clock.jinja", {})
    assert clock._memo is None


def test_the_mistral_model_names_exactly_what_it_counts_with():
    """The identity a manifest records for the default target: which tokenizer build, which
    vocabulary bytes, which template bytes, and the special tokens its template is given."""
    import hashlib
    from importlib import metadata

    from lorafiles.tokens.mistral import MistralV02, vocab_path

    legacy, strict = MistralV02(), MistralV02(legacy=False)
    version = metadata.version("sentencepiece")
    assert legacy.id == strict.id == "mistral-7b-instruct-v0.2"
    assert legacy.tokenizer_id == (
        f"sentencepiece {version}: SentencePiece v1 lorafiles/tokens/data/mistral-v1.tokenizer.model "
        "(HF legacy Llama tokenizer: <s> </s> <unk> special, dummy prefix per split)")
    assert strict.tokenizer_id == (
        f"sentencepiece {version}: SentencePiece v1 lorafiles/tokens/data/mistral-v1.tokenizer.model "
        "(HF non-legacy Llama tokenizer: <s> </s> <unk> special, dummy prefix on the first split only)")
    with open(vocab_path(), "rb") as fh:
        assert legacy.vocab_sha256 == hashlib.sha256(fh.read()).hexdigest() == (
            "dadfd56d766715c61d2ef780a525ab43b8e6da4de6865bda3d95fdef5e134055")
    assert legacy.template_id == "mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template (system-aware)"
    assert legacy.template_sha256 == "796853172235ab3aaa4810013ddfe2eab481bda3306dad4f700c00d436eed596"
    assert legacy._template.special_tokens == {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def test_the_non_legacy_mistral_tokenizer_adds_no_dummy_prefix_after_the_first_split():
    from lorafiles.tokens.mistral import MistralV02

    legacy, strict = MistralV02(), MistralV02(legacy=False)
    assert [legacy._sp.id_to_piece(i) for i in legacy._encode_text("hello", False)] == ["▁hell", "o"]
    assert [strict._sp.id_to_piece(i) for i in strict._encode_text("hello", False)] == ["hello"]
    assert [strict._sp.id_to_piece(i) for i in strict._encode_text(" world", False)] == ["▁world"]
    assert strict._encode_text("hello", True) == legacy._encode_text("hello", True)  # the first split keeps it


BPE_IDENTITIES = {
    "llama-3.1-8b-instruct": (
        "llama3 quicktok/data/llama3.vocab (Llama 3.1 control-token names 128000-128255)", "llama3.vocab",
        "124bfc185ea93e669e4ce2e1b5aa5733d2e793a910372fa198dfc1597e1220f2",
        "meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json chat_template",
        {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
        {"<|begin_of_text|>": 128000, "<|end_of_text|>": 128001, "<|reserved_special_token_0|>": 128002,
         "<|finetune_right_pad_id|>": 128004, "<|start_header_id|>": 128006, "<|end_header_id|>": 128007,
         "<|eom_id|>": 128008, "<|eot_id|>": 128009, "<|python_tag|>": 128010,
         "<|reserved_special_token_3|>": 128011, "<|reserved_special_token_247|>": 128255}, 256),
    "qwen2.5-7b-instruct": (
        "qwen3 quicktok/data/qwen3.vocab (Qwen2.5 added tokens 151643-151664, NFC)", "qwen3.vocab",
        "6114087889f61af31f72abe80529bbd09826df4d396753a281a14bcc21abc2fa",
        "Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template",
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<tool_call>": 151657,
         "<|file_sep|>": 151664}, 22),
    "openai-gpt-4o": (
        "o200k_base quicktok/data/o200k.vocab (framing <|start|> <|message|> <|end|> as o200k_harmony ids "
        "200006/200008/200007)", "o200k.vocab",
        "6b17521f79788c7ace48fc75f6edde125637a90b0018427e68f28d051b2ac1fe",
        "lorafiles framing of OpenAI cookbook 'How to count tokens with tiktoken' (num_tokens_from_messages: "
        "3 per message + role + content, reply primed with <|start|>assistant<|message|>)",
        {}, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018, "<|start|>": 200006, "<|end|>": 200007,
             "<|message|>": 200008}, 5),
}


@pytest.mark.parametrize("model_id", sorted(BPE_IDENTITIES))
def test_each_bpe_model_names_exactly_what_it_counts_with(model_id: str):
    """Loaded afresh (not the process's cached model): the tokenizer build and vocabulary file with
    its checksum, the template and the variables it is given, and the control tokens' ids."""
    import hashlib
    import os
    from importlib import metadata

    import quicktok

    from lorafiles.tokens import _LOADERS
    from lorafiles.tokens import bpe

    described, vocab, vocab_sha, template_id, template_vars, some_ids, count = BPE_IDENTITIES[model_id]
    model = getattr(bpe, _LOADERS[model_id][1])()
    assert model.id == model_id
    assert model.tokenizer_id == f"quicktok-v1 {metadata.version('quicktok-v1')}: {described}"
    with open(os.path.join(os.path.dirname(quicktok.__file__), "data", vocab), "rb") as fh:
        assert model.vocab_sha256 == hashlib.sha256(fh.read()).hexdigest() == vocab_sha
    assert model.template_id == template_id
    assert model.template_sha256 == hashlib.sha256(_jinja.template_bytes(f"{model_id}.jinja")).hexdigest()
    assert model._template.special_tokens == template_vars
    assert {k: model.special_ids[k] for k in some_ids} == some_ids and len(model.special_ids) == count
    assert model.control_tokens == frozenset(model.special_ids)


def test_a_template_that_reads_the_clock_is_rendered_every_time_with_its_arguments(monkeypatch):
    from datetime import datetime

    monkeypatch.setattr(_jinja, "template_bytes", lambda name: (
        b"{{ strftime_now('%Y') }}|{{ messages | map(attribute='content') | join(',') }}"
        b"{% if add_generation_prompt %}|G{% endif %}"))
    clock = ChatTemplate("clock.jinja", {})
    years = {str(datetime.now().year)}
    text = clock.render([{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
                        add_generation_prompt=True)
    years.add(str(datetime.now().year))
    assert text in {f"{year}|x,y|G" for year in years}
    assert clock.render([{"role": "user", "content": "z"}]).endswith("|z")


def test_tools_and_documents_are_given_as_none_as_transformers_does(monkeypatch):
    monkeypatch.setattr(_jinja, "template_bytes",
                        lambda name: b"{{ tools is none }} {{ documents is none }} {{ tools is defined }}")
    assert ChatTemplate("vars.jinja", {}).render([]) == "True True True"


def test_the_template_checksum_is_the_sha256_of_its_bytes(template: ChatTemplate):
    import hashlib

    assert template.sha256 == hashlib.sha256(TEMPLATE.encode()).hexdigest()
    assert template.text == TEMPLATE and template.file_name == "edges.jinja"


def test_messages_with_unhashable_values_render_as_given_and_are_not_remembered(monkeypatch):
    monkeypatch.setattr(_jinja, "template_bytes", lambda name: (
        b"{{ messages[0].content | join(',') }}{% if add_generation_prompt %}|G{% endif %}"))
    t = ChatTemplate("lists.jinja", {})
    messages = [{"role": "user", "content": ["a", "b"]}]
    assert t.render(messages, add_generation_prompt=True) == "a,b|G"
    assert t.render(messages) == "a,b"
    assert t._memo == {} and t._memo_chars == 0


def test_the_render_memo_holds_at_most_its_character_budget(monkeypatch):
    monkeypatch.setattr(_jinja, "template_bytes", lambda name: b"{{ messages[0].content }}")
    t = ChatTemplate("budget.jinja", {})
    t.MEMO_CHARS = 10

    def render(content: str) -> tuple[int, int]:
        assert t.render([{"content": content}]) == content
        assert t._memo_chars == sum(len(v) for v in t._memo.values())
        return len(t._memo), t._memo_chars

    assert render("aaaaa") == (1, 5)
    assert render("bbbbb") == (2, 10)     # exactly the budget: kept
    assert render("aaaaa") == (2, 10)     # remembered: nothing added
    assert render("c") == (1, 1)          # over the budget: emptied, then this one kept
    assert render("dd") == (2, 3)


def test_a_quicktok_model_without_a_note_or_with_its_own_control_tokens():
    from importlib import metadata

    from lorafiles.tokens import bpe

    model = bpe.QuicktokChatModel(
        model_id="m", encoding="llama3", vocab_file="llama3.vocab", template_file="llama-3.1-8b-instruct.jinja",
        template_id="t", template_vars={}, special_ids={"<|eot_id|>": 128009, "<|begin_of_text|>": 128000},
        control_tokens=frozenset({"<|eot_id|>"}))
    assert model.tokenizer_id == f"quicktok-v1 {metadata.version('quicktok-v1')}: llama3 quicktok/data/llama3.vocab"
    assert model.control_tokens == frozenset({"<|eot_id|>"})
    assert model.encode("<|begin_of_text|>hi<|eot_id|>")[::2] == [128000, 128009]


class _MovedIds:
    """A quicktok encoding whose table disagrees with the model's: one control id moved, or a size."""

    def __init__(self, enc, moved: str | None = None, n_vocab: int | None = None) -> None:
        self._enc, self._moved, self.n_vocab = enc, moved, n_vocab or enc.n_vocab

    def encode_single_token(self, name: str) -> int:
        return self._enc.encode_single_token(name) + (name == self._moved)

    def __getattr__(self, name: str):
        return getattr(self._enc, name)


@pytest.mark.parametrize("loader, encoding, moved, n_vocab, message", [
    ("load_llama31", "llama3", "<|eot_id|>", None, "quicktok llama3: <|eot_id|> is not id 128009"),
    ("load_llama31", "llama3", None, 128257, "quicktok llama3 has 128257 tokens, Llama 3.1 has 128256"),
    ("load_qwen25", "qwen3", "<|im_end|>", None, "quicktok qwen3: <|im_end|> is not id 151645"),
    ("load_openai", "o200k_base", "<|endofprompt|>", None, "quicktok o200k_base: <|endofprompt|> is not id 200018"),
])
def test_a_quicktok_whose_table_moved_is_refused_naming_the_token(monkeypatch, loader, encoding, moved, n_vocab,
                                                                  message):
    import quicktok

    from lorafiles.tokens import bpe

    real = quicktok.get_encoding
    monkeypatch.setattr(quicktok, "get_encoding", lambda name: _MovedIds(real(name), moved, n_vocab))
    with pytest.raises(RuntimeError) as err:
        getattr(bpe, loader)()
    assert str(err.value) == message


@pytest.mark.parametrize("special_ids, size", [(True, 40), (False, None)])
def test_a_sentencepiece_file_that_is_not_mistrals_is_refused_naming_it(monkeypatch, tmp_path, special_ids, size):
    """A real SentencePiece model trained here: with Mistral's special ids but another size, or with
    Mistral's size faked but its special ids moved; either is refused."""
    import io

    import sentencepiece as spm

    from lorafiles.tokens import mistral

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(["a small corpus of words for a test vocabulary"] * 20), model_writer=out,
        vocab_size=40, hard_vocab_limit=False, minloglevel=2,
        **({} if special_ids else {"unk_id": 3, "bos_id": 0, "eos_id": 1, "pad_id": 2}))
    path = tmp_path / "other.model"
    path.write_bytes(out.getvalue())
    monkeypatch.setattr(mistral, "vocab_path", lambda: str(path))
    if size is None:
        monkeypatch.setattr(spm.SentencePieceProcessor, "get_piece_size", lambda self: 32000)
    with pytest.raises(RuntimeError) as err:
        mistral.MistralV02()
    assert str(err.value) == f"{path} is not the Mistral v1 SentencePiece vocabulary"
