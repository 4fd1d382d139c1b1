"""`marked_render`: the trainer's view of one example, through each supported model's real chat
template, with exactly the trained messages' rendered spans between the markers."""
from __future__ import annotations

import pytest

from lorafiles.domain.preview import TRAIN_CLOSE, TRAIN_OPEN, marked_render
from lorafiles.tokens import SUPPORTED_MODELS, get_model

MESSAGES = [
    {"role": "system", "content": "You are a calm financial advisor."},
    {"role": "user", "content": "I panic about my 401k every time the market drops."},
    {"role": "assistant", "content": "That fear makes sense. Let's look at your timeline together."},
    {"role": "user", "content": "I retire in 25 years."},
    {"role": "assistant", "content": "Then today's drop is a small part of a long road."},
]


def _spans(text: str) -> list[str]:
    return [part.split(TRAIN_CLOSE, 1)[0] for part in text.split(TRAIN_OPEN)[1:]]


@pytest.mark.parametrize("model_id", sorted(SUPPORTED_MODELS))
def test_each_trained_message_is_marked_where_the_template_writes_it(model_id):
    model = get_model(model_id)
    full = model.render(MESSAGES)
    trained = [False, False, True, False, True]
    text = marked_render(model, MESSAGES, trained)
    assert text.replace(TRAIN_OPEN, "").replace(TRAIN_CLOSE, "") == full
    assert text.count(TRAIN_OPEN) == text.count(TRAIN_CLOSE) == 2
    first = full[len(model.render(MESSAGES[:2], add_generation_prompt=True)):len(model.render(MESSAGES[:3]))]
    last = full[len(model.render(MESSAGES[:4], add_generation_prompt=True)):]
    assert _spans(text) == [first, last]
    assert MESSAGES[2]["content"] in first and MESSAGES[4]["content"] in last
    assert MESSAGES[3]["content"] not in first and MESSAGES[1]["content"] not in "".join(_spans(text))
    assert text.endswith(TRAIN_CLOSE)  # the last trained message runs to the end of the rendering


@pytest.mark.parametrize("model_id", sorted(SUPPORTED_MODELS))
def test_only_the_middle_turn_trained_leaves_the_rest_unmarked(model_id):
    model = get_model(model_id)
    full = model.render(MESSAGES)
    text = marked_render(model, MESSAGES, [False, False, True, False, False])
    [span] = _spans(text)
    before, after = text.split(TRAIN_OPEN)[0], text.split(TRAIN_CLOSE)[1]
    assert before == model.render(MESSAGES[:2], add_generation_prompt=True)
    assert before + span == model.render(MESSAGES[:3])
    assert before + span + after == full and MESSAGES[4]["content"] in after


def test_nothing_trained_is_the_plain_rendering():
    model = get_model("mistral-7b-instruct-v0.2")
    assert marked_render(model, MESSAGES, [False] * 5) == model.render(MESSAGES)


class _Unstable:
    """A model whose template renders a prefix differently from the whole (a date stamp, say)."""

    id = "unstable-template"

    def render(self, messages, *, add_generation_prompt=False):
        body = "".join(f"<{m['role']}>{m['content']}" for m in messages)
        return body + ("<assistant>" if add_generation_prompt else "") + f"#{len(messages)}"


def test_a_template_whose_prefixes_do_not_line_up_is_reported_not_guessed():
    with pytest.raises(ValueError, match=r"^unstable-template: the template's rendering of the first 3 messages "
                                         r"is not a prefix of the whole conversation; cannot mark trained spans$"):
        marked_render(_Unstable(), MESSAGES, [False, False, True, False, False])
    # the last message too: its span starts where the prompt before it ends, which must line up
    with pytest.raises(ValueError, match="first 5 messages"):
        marked_render(_Unstable(), MESSAGES, [False, False, False, False, True])


class _Plain:
    """A minimal well-behaved template: `<role>content` per message; the generation prompt is the
    assistant header, so a prompt rendering is a prefix of the rendering with the reply."""

    id = "plain-template"

    def render(self, messages, *, add_generation_prompt=False):
        return "".join(f"<{m['role']}>{m['content']}" for m in messages) + ("<assistant>" if add_generation_prompt else "")


PLAIN = [{"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Hi."},
         {"role": "assistant", "content": "How can I help?"}, {"role": "user", "content": "Bye."}]


@pytest.mark.parametrize("trained,text", [
    # the first message: its span starts at the very beginning (nothing is rendered before it)
    ([True, False, False, False], "⟦TRAIN⟧<assistant>Hello.⟦/TRAIN⟧<user>Hi.<assistant>How can I help?<user>Bye."),
    # a later one: after the generation prompt that precedes it, up to where the next message starts
    ([False, False, True, False], "<assistant>Hello.<user>Hi.<assistant>⟦TRAIN⟧How can I help?⟦/TRAIN⟧<user>Bye."),
    ([True, False, True, False],
     "⟦TRAIN⟧<assistant>Hello.⟦/TRAIN⟧<user>Hi.<assistant>⟦TRAIN⟧How can I help?⟦/TRAIN⟧<user>Bye."),
])
def test_spans_are_cut_exactly_where_the_template_puts_each_message(trained, text):
    assert marked_render(_Plain(), PLAIN, trained) == text


def test_the_second_to_last_message_ends_where_the_last_one_starts():
    text = marked_render(_Plain(), PLAIN[:3] + [{"role": "assistant", "content": "More."}], [False, False, True, False])
    assert text == "<assistant>Hello.<user>Hi.<assistant>⟦TRAIN⟧How can I help?⟦/TRAIN⟧<assistant>More."
