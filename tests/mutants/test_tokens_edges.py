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
