"""How every tokenizer family cuts a rendered text and finds the trainer's prompt boundary (issue 14,
tokens/_base.py), on a family written out here so that each rule shows on its own:

- one id per character (its code point), except that "ab" is a single token (1000), so a cut between
  a and b is not a token boundary;
- a stretch of ordinary text that begins the whole text starts with id 0 (SentencePiece's dummy
  prefix in miniature: what `at_start` is for);
- control strings "[U]" 1, "[A]" 2, "[E]" 3, "[A]]" 4 (one string a prefix of another), "#" 9.

Expected ids are written out by hand. The shipped families are real tokenizers (tests/tokens); the
real non-legacy Mistral tokenizer shows the same start rule at the end.
"""
from __future__ import annotations

import pytest

from lorafiles.ports import TemplateRenderError
from lorafiles.tokens import _jinja
from lorafiles.tokens._base import AssistantSpan, TemplateChatModel, TokenBoundaryError
from lorafiles.tokens._jinja import ChatTemplate

SPECIALS = {"[U]": 1, "[A]": 2, "[E]": 3, "[A]]": 4, "#": 9}
# roles marked, reply primed with "[A]", no end of turn
MARKED = ("{% for m in messages %}{% if m.role == 'user' %}[U]{{ m.content }}{% elif m.role == 'assistant' %}"
          "{% if m.content %}[A]{{ m.content }}{% endif %}{% else %}{{ m.content }}{% endif %}{% endfor %}"
          "{% if add_generation_prompt %}[A]{% endif %}")
# contents only; a non-empty assistant message closes with "[E]"; no generation prompt
PLAIN = ("{% for m in messages %}{{ m.content }}{% if m.role == 'assistant' and m.content %}[E]{% endif %}"
         "{% endfor %}")


class Toy(TemplateChatModel):
    def __init__(self, template: ChatTemplate) -> None:
        self.calls: list[tuple[str, bool]] = []
        super().__init__(model_id="toy", tokenizer_id="toy tokenizer", vocab_sha256="0" * 64, template_id="toy",
                         template=template, special_ids=SPECIALS, control_tokens=frozenset(SPECIALS))

    def _encode_text(self, text: str, at_start: bool) -> list[int]:
        assert text, "a family is only given non-empty stretches of ordinary text"
        self.calls.append((text, at_start))
        ids, i = ([0] if at_start else []), 0
        while i < len(text):
            if text.startswith("ab", i):
                ids.append(1000)
                i += 2
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids


@pytest.fixture
def toy(monkeypatch):
    templates = {"marked.jinja": MARKED, "plain.jinja": PLAIN}
    shipped = _jinja.template_bytes
    monkeypatch.setattr(_jinja, "template_bytes",
                        lambda name: templates[name].encode() if name in templates else shipped(name))
    return lambda name="marked": Toy(ChatTemplate(f"{name}.jinja", {}))


x, y, s, o, k = (ord(c) for c in "xysok")


def test_control_strings_match_leftmost_longest(toy):
    model = toy()
    assert model.encode("[A]]y") == [4, y]
    assert model.encode("[A]y") == [2, y]
    assert model.encode("x[A]][A]") == [0, x, 4, 2]


def test_only_the_stretch_that_begins_the_text_is_encoded_as_its_start(toy):
    model = toy()
    assert model.encode("xy") == [0, x, y]
    assert model.encode("xy#") == [0, x, y, 9]
    assert model.encode("xy#xy") == [0, x, y, 9, x, y]
    assert model.encode("#xy") == [9, x, y]            # text after a control string at offset 1
    assert model.encode("#xy#xy") == [9, x, y, 9, x, y]


def test_no_empty_stretch_is_encoded_between_or_after_control_strings(toy):
    model = toy()
    assert model.encode("#") == [9]
    assert model.encode("##x##") == [9, 9, x, 9, 9]
    assert model.encode("") == []
    assert all(text for text, _ in model.calls)


def test_each_stretch_is_encoded_once_and_the_memo_is_bounded(toy):
    model = toy()
    assert model.encode("xy#xy#xy") == [0, x, y, 9, x, y, 9, x, y]
    assert model.calls == [("xy", True), ("xy", False)]
    assert model.encode("xy#xy") == [0, x, y, 9, x, y]
    assert model.calls == [("xy", True), ("xy", False)]
    model._PIECE_CACHE_SIZE = 2
    for text in ("#s", "#o", "#k", "#so"):
        model.encode(text)
        assert len(model._pieces) <= 2
    assert model.encode("#k") == [9, k]


def test_trainable_tokens_start_where_the_prompt_ends(toy):
    model = toy()
    messages = [{"role": "user", "content": "xy"}, {"role": "assistant", "content": "ok"}]
    assert model.encode(model.render(messages)) == [1, x, y, 2, o, k]
    assert model.assistant_spans(messages) == [AssistantSpan(1, 4, 6)]
    count = model.count(messages, [False, True])
    assert (count.total, count.trainable) == (6, 2)


def test_a_prompt_that_ends_inside_ordinary_text_is_cut_there(toy):
    model = toy("plain")
    # the prompt is "s" (one character): its tokens are the dummy prefix and s
    messages = [{"role": "system", "content": "s"}, {"role": "assistant", "content": "ok"}]
    assert model.encode(model.render(messages)) == [0, s, o, k, 3]
    assert model.assistant_spans(messages) == [AssistantSpan(1, 2, 5)]
    # an empty prompt: every token is the assistant's
    assert model.assistant_spans(messages[1:]) == [AssistantSpan(0, 0, 4)]
    # after a control string at offset 1, the cut stretch is not the text's start
    messages = [{"role": "system", "content": "#s"}, {"role": "assistant", "content": "ok"}]
    assert model.encode(model.render(messages)) == [9, s, o, k, 3]
    assert model.assistant_spans(messages) == [AssistantSpan(1, 2, 5)]


def test_an_assistant_turn_that_renders_nothing_trains_nothing(toy):
    model = toy("plain")
    messages = [{"role": "system", "content": "s"}, {"role": "assistant", "content": ""}]
    assert model.assistant_spans(messages) == [AssistantSpan(1, 2, 2)]
    assert model.count(messages, [False, True]).trainable == 0


def test_a_turn_that_ends_before_its_prompt_is_refused(toy):
    model = toy()
    messages = [{"role": "user", "content": "xy"}, {"role": "assistant", "content": ""},
                {"role": "assistant", "content": "ok"}]
    with pytest.raises(TokenBoundaryError) as err:
        model.count(messages, [False, True, True])
    assert str(err.value) == "message 1: its rendered turn ends (token 3) before its prompt does (token 4)"


def test_a_prompt_that_splits_a_token_is_refused_showing_both_sides(toy):
    model = toy("plain")
    before, after = "p" * 45 + "a", "b" + "q" * 45
    messages = [{"role": "system", "content": before}, {"role": "assistant", "content": after}]
    with pytest.raises(TokenBoundaryError) as err:
        model.assistant_spans(messages)
    assert str(err.value) == (
        f"the prompt before message 1 does not end on a token boundary of the full example: the text "
        f"{before[-40:]!r} | {after[:40]!r} is tokenised differently with and without what follows the cut "
        f"(the trainer's prompt mask would be off)")
    assert err.value.code == "token_boundary_mismatch" and isinstance(err.value, TemplateRenderError)
    # what is shown after the cut stops at the stretch's end (here the "[E]" that closes the turn)
    messages[1]["content"] = "b"
    with pytest.raises(TokenBoundaryError) as err:
        model.assistant_spans(messages)
    assert f"{before[-40:]!r} | 'b' is tokenised differently" in str(err.value)


def test_a_turn_that_splits_a_token_of_the_text_after_it_is_refused(toy):
    model = toy()
    messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "xa"},
                {"role": "system", "content": "bq"}]
    with pytest.raises(TokenBoundaryError) as err:
        model.count(messages, [False, True, False])
    assert str(err.value).startswith(
        "the example up to message 1 does not end on a token boundary of the full example: the text 'xa' | 'bq' ")


def test_a_turn_that_ends_inside_a_control_string_is_refused(toy):
    model = toy()
    messages = [{"role": "user", "content": "u"}, {"role": "assistant", "content": "x["},
                {"role": "system", "content": "A]"}]
    assert model.encode(model.render(messages)) == [1, ord("u"), 2, x, 2]
    with pytest.raises(TokenBoundaryError) as err:
        model.count(messages, [False, True, False])
    assert str(err.value) == ("the tokens of the example up to message 1 are not a prefix of the tokens of the "
                              "full example")


def test_a_trained_flag_on_a_message_that_is_not_the_assistants_names_its_role(toy):
    model = toy()
    with pytest.raises(ValueError) as err:
        model.count([{"role": "user", "content": "xy"}], [True])
    assert str(err.value) == "message 0 is marked trained but its role is 'user', not 'assistant'"


def test_the_real_non_legacy_mistral_tokenizer_prefixes_only_the_texts_start():
    from lorafiles.tokens.mistral import CONTROL_TOKENS, MistralV02

    strict = MistralV02(legacy=False)
    piece = strict._sp.id_to_piece
    assert [piece(i) for i in strict.encode("hello</s>hello")] == ["▁hell", "o", "</s>", "hello"]
    assert [piece(i) for i in strict.encode("<s>hello")] == ["<s>", "hello"]
    assert strict.control_tokens == CONTROL_TOKENS == frozenset({"[INST]", "[/INST]", "<s>", "</s>", "<unk>"})
    assert repr(strict) == f"<MistralV02 mistral-7b-instruct-v0.2: {strict.tokenizer_id}>"
