"""Showing an export line exactly as the trainer sees it: rendered through the target model's chat
template, with the spans the trainer computes loss on marked."""
from __future__ import annotations

from typing import Mapping, Sequence

from ..ports import ChatModel

TRAIN_OPEN, TRAIN_CLOSE = "⟦TRAIN⟧", "⟦/TRAIN⟧"


def marked_render(model: ChatModel, messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> str:
    """The rendered text with each trained message's rendered span (its content and end-of-turn
    token, as the template writes them) between ⟦TRAIN⟧ and ⟦/TRAIN⟧.

    A message's span is the text its template adds after the rendered prefix that precedes it;
    a template whose prefix renderings are not prefixes of the whole is reported, not guessed."""
    full = model.render(messages)
    cuts: list[tuple[int, int]] = []
    for i, flag in enumerate(trained):
        if not flag:
            continue
        before = model.render(messages[:i], add_generation_prompt=True) if i else ""
        through = model.render(messages[:i + 1]) if i + 1 < len(messages) else full
        if not (full.startswith(through) and through.startswith(before)):
            raise ValueError(f"{model.id}: the template's rendering of the first {i + 1} messages is not a "
                             "prefix of the whole conversation; cannot mark trained spans")
        cuts.append((len(before), len(through)))
    out, at = [], 0
    for start, end in cuts:
        out += [full[at:start], TRAIN_OPEN, full[start:end], TRAIN_CLOSE]
        at = end
    out.append(full[at:])
    return "".join(out)
