"""The length policy: which assistant turns are trained, and the examples they form.

Measured with `model.count` on the rendered example (system + messages), against
`policy.max_length`. Token totals do not depend on the trained flags, so one count per
(window, trained turn) suffices; counts are memoised per dialogue.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...ports import ChatModel, TokenCount
from .dialogue import Dialogue
from .policy import TrainingPolicy


@dataclass
class Example:
    """Messages `start..end` (inclusive) of a dialogue after its system message; `trained` indices."""

    start: int
    end: int
    trained: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class OverLength:
    index: int           # the assistant message (dialogue index)
    tokens: int          # its example's total tokens (system + everything up to and including it)
    trainable: int       # the trainable tokens lost


@dataclass(frozen=True)
class Trim:
    index: int
    messages_removed: int
    context_tokens_removed: int


@dataclass
class Selection:
    examples: list[Example]
    over_length: list[OverLength]
    trims: list[Trim]


class Measure:
    """`count` of a window of one dialogue, memoised. Raises `TemplateRenderError`."""

    def __init__(self, model: ChatModel, dialogue: Dialogue) -> None:
        self._model, self._d = model, dialogue
        self._memo: dict[tuple[int, int, tuple[int, ...]], TokenCount] = {}

    def messages(self, start: int, end: int) -> list[dict[str, str]]:
        d = self._d
        return [{"role": "system", "content": d.system_content}] + [
            {"role": m.role, "content": m.content} for m in d.messages[start:end + 1]]

    def __call__(self, start: int, end: int, trained: tuple[int, ...]) -> TokenCount:
        key = (start, end, trained)
        if key not in self._memo:
            flags = [False] + [i in trained for i in range(start, end + 1)]
            self._memo[key] = self._model.count(self.messages(start, end), flags)
        return self._memo[key]

    def alone(self, index: int) -> TokenCount:
        """The turn with everything before it as context: its full example."""
        return self(0, index, (index,))


def select(eligible: list[int], policy: TrainingPolicy, measure: Measure) -> Selection:
    if policy.over_length == "trim_history":
        return _trim_history(eligible, policy.max_length, measure)
    return _drop_turn(eligible, policy.max_length, measure)


def _drop_turn(eligible: list[int], limit: int, measure: Measure) -> Selection:
    """`drop_turn` and `fail` (the caller turns each over-length turn into an error for `fail`)."""
    trained, over = [], []
    for c in eligible:
        count = measure.alone(c)
        if count.total <= limit:
            trained.append(c)
        else:
            over.append(OverLength(c, count.total, count.trainable))
    examples = [Example(0, trained[-1], trained)] if trained else []
    return Selection(examples, over, [])


def _trim_history(eligible: list[int], limit: int, measure: Measure) -> Selection:
    examples: list[Example] = []
    over: list[OverLength] = []
    trims: list[Trim] = []
    current: Example | None = None
    for c in eligible:
        if current is not None:
            if measure(current.start, c, (c,)).total <= limit:
                current.trained.append(c)
                current.end = c
                continue
            examples.append(current)
            lowest = current.start + 2  # windows starting earlier are longer still
        else:
            lowest = 0
        current = None
        start = _first_fitting_start(lowest, c, limit, measure)
        full = measure.alone(c)
        if start is None:
            over.append(OverLength(c, full.total, full.trainable))
            continue
        if start > 0:
            trims.append(Trim(c, start, full.total - measure(start, c, (c,)).total))
        current = Example(start, c, [c])
    if current is not None:
        examples.append(current)
    return Selection(examples, over, trims)


def _first_fitting_start(lowest: int, c: int, limit: int, measure: Callable[..., TokenCount]) -> int | None:
    """The earliest user message (even index) from which the window up to turn c fits."""
    for start in range(lowest, c, 2):
        if measure(start, c, (c,)).total <= limit:
            return start
    return None
