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
