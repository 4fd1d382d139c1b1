"""What every adapter shares: control-string splitting, encoding, and the trainer's loss mask.

Encoding (`encode`): like a Hugging Face tokenizer called with `add_special_tokens=False` (what
`apply_chat_template(..., tokenize=True)` does), the text is first cut at every occurrence of
the model's control strings (leftmost-longest match, as the HF added-token matcher does); each
control string becomes its single id, and each stretch of ordinary text between them is encoded
on its own by the family's `_encode_text` (so SentencePiece's dummy prefix, BPE pre-tokenisation
and normalisation restart after every control string, exactly as in HF).

Trainable tokens (`count`): TRL's prompt-completion masking, per trained assistant message `j`:
the tokens of `render(messages[:j+1])` that come after those of
`render(messages[:j], add_generation_prompt=True)`, i.e. the assistant's content plus whatever
the template closes the turn with (end-of-turn / eos token, and a trailing newline for ChatML).
The full example is encoded once; each boundary's token position is found by locating the
rendered prefix in the full text and re-encoding only the ordinary-text segment that the cut
falls in. The prefix's own tokenisation must be a prefix of the full tokenisation (the property
TRL relies on); when it is not, `TokenBoundaryError` says where.
"""
from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..ports import TemplateRenderError, TokenCount
from ._jinja import ChatTemplate


class TokenBoundaryError(TemplateRenderError):
    """The tokens of a rendered prompt are not a prefix of the tokens of prompt + completion.

    A trainer masking "everything after the prompt" would then train on the wrong tokens (TRL
    only warns "Mismatch between tokenized prompt and the start of tokenized prompt+completion").
    A `TemplateRenderError` so that callers treating template failures per conversation also
    handle it; its own code tells the two apart.
    """

    code = "token_boundary_mismatch"


@dataclass(frozen=True)
class _Segment:
    start: int          # character offsets in the text
    end: int
    ids: tuple[int, ...]
    control: bool       # a control string (one id) rather than ordinary text


@dataclass(frozen=True)
class AssistantSpan:
    """Token offsets `[start, end)` of one assistant message in `encode(render(messages))`."""

    index: int          # message index
    start: int          # first token after the prompt (render(messages[:index], add_generation_prompt=True))
    end: int            # end of render(messages[:index + 1])

    @property
    def tokens(self) -> int:
        return self.end - self.start


class _Layout:
    """One text cut into segments, with cumulative token counts."""

    __slots__ = ("before", "ids", "segments", "starts", "text")

    def __init__(self, text: str, segments: list[_Segment]) -> None:
        self.text = text
        self.segments = segments
        self.starts = [s.start for s in segments]
        self.before: list[int] = []
        ids: list[int] = []
        for s in segments:
            self.before.append(len(ids))
            ids.extend(s.ids)
        self.ids = ids


class TemplateChatModel:
    """A `lorafiles.ports.ChatModel`: a chat template plus a tokenizer family (`_encode_text`)."""

    id: str
    tokenizer_id: str
    vocab_sha256: str
    template_id: str
    template_sha256: str
    control_tokens: frozenset[str]

    def __init__(self, *, model_id: str, tokenizer_id: str, vocab_sha256: str, template_id: str,
                 template: ChatTemplate, special_ids: Mapping[str, int], control_tokens: frozenset[str]) -> None:
        self.id = model_id
        self.tokenizer_id = tokenizer_id
        self.vocab_sha256 = vocab_sha256
        self.template_id = template_id
        self.template_sha256 = template.sha256
        self.control_tokens = frozenset(control_tokens)
        self.special_ids: dict[str, int] = dict(special_ids)
        self._template = template
        alternatives = sorted(self.special_ids, key=lambda s: (-len(s), s))
        self._split = re.compile("|".join(re.escape(s) for s in alternatives))
        # ordinary-text pieces recur across the windows the length policy counts: memoise them
        self._pieces: dict[tuple[str, bool], tuple[int, ...]] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}: {self.tokenizer_id}>"

    # -- family hook ------------------------------------------------------------------------------
    def _encode_text(self, text: str, at_start: bool) -> list[int]:
        """Ids of a non-empty stretch of ordinary text (no control string inside); `at_start`:
        the stretch begins the whole text (only SentencePiece's non-legacy mode cares)."""
        raise NotImplementedError

    # -- ChatModel --------------------------------------------------------------------------------
    @property
    def template_text(self) -> str:
        return self._template.text

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = False) -> str:
        return self._template.render(messages, add_generation_prompt=add_generation_prompt)

    def encode(self, text: str) -> list[int]:
        return self._layout(text).ids

    def count(self, messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> TokenCount:
        flags = self._check_trained(messages, trained)
        layout = self._layout(self.render(messages))
        trainable = sum(self._span(messages, j, layout).tokens for j, flag in enumerate(flags) if flag)
        return TokenCount(total=len(layout.ids), trainable=trainable)

    # -- extras (not part of the port) ------------------------------------------------------------
    def assistant_spans(self, messages: Sequence[Mapping[str, str]]) -> list[AssistantSpan]:
        """Where each assistant message's trainable tokens are in `encode(render(messages))`."""
        layout = self._layout(self.render(messages))
        return [self._span(messages, j, layout) for j, m in enumerate(messages) if m.get("role") == "assistant"]

    # -- internals --------------------------------------------------------------------------------
    _PIECE_CACHE_SIZE = 4096

    def _piece(self, text: str, at_start: bool) -> tuple[int, ...]:
        key = (text, at_start)
        ids = self._pieces.get(key)
        if ids is None:
            ids = tuple(self._encode_text(text, at_start))
            if len(self._pieces) >= self._PIECE_CACHE_SIZE:
                self._pieces.clear()
            self._pieces[key] = ids
        return ids

    @staticmethod
    def _check_trained(messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> list[bool]:
        flags = [bool(t) for t in trained]
        if len(flags) != len(messages):
            raise ValueError(f"trained has {len(flags)} flags for {len(messages)} messages")
        for i, (m, flag) in enumerate(zip(messages, flags)):
            if flag and m.get("role") != "assistant":
                raise ValueError(f"message {i} is marked trained but its role is {m.get('role')!r}, not 'assistant'")
        return flags

    def _layout(self, text: str) -> _Layout:
        segments: list[_Segment] = []
        pos = 0
        for m in self._split.finditer(text):
            if m.start() > pos:
                segments.append(_Segment(pos, m.start(), self._piece(text[pos:m.start()], pos == 0), False))
            segments.append(_Segment(m.start(), m.end(), (self.special_ids[m.group()],), True))
            pos = m.end()
        if pos < len(text):
            segments.append(_Segment(pos, len(text), self._piece(text[pos:], pos == 0), False))
        return _Layout(text, segments)

    def _span(self, messages: Sequence[Mapping[str, str]], j: int, layout: _Layout) -> AssistantSpan:
        prompt = self.render(messages[:j], add_generation_prompt=True)
        closed = self.render(messages[:j + 1])
        start = self._tokens_of_prefix(prompt, layout, f"the prompt before message {j}")
        end = self._tokens_of_prefix(closed, layout, f"the example up to message {j}")
        if end < start:
            raise TokenBoundaryError(f"message {j}: its rendered turn ends (token {end}) before its prompt does "
                                     f"(token {start})")
        return AssistantSpan(j, start, end)

    def _tokens_of_prefix(self, prefix: str, layout: _Layout, what: str) -> int:
        """len(encode(prefix)), checked to be a prefix of `layout.ids`."""
        text, cut = layout.text, len(prefix)
        if cut == 0:
            return 0
        if text.startswith(prefix):
            if cut == len(text):
                return len(layout.ids)
            k = bisect_right(layout.starts, cut) - 1
            seg = layout.segments[k]
            if cut == seg.start:
                return layout.before[k]
            if not seg.control:
                partial = self._piece(text[seg.start:cut], seg.start == 0)
                if seg.ids[:len(partial)] != partial:
                    raise TokenBoundaryError(
                        f"{what} does not end on a token boundary of the full example: the text "
                        f"{text[seg.start:cut][-40:]!r} | {text[cut:seg.end][:40]!r} is tokenised differently "
                        f"with and without what follows the cut (the trainer's prompt mask would be off)")
                return layout.before[k] + len(partial)
        # not a plain string prefix, or the cut falls inside a control string: encode it whole
        ids = self.encode(prefix)
        if layout.ids[:len(ids)] != ids:
            raise TokenBoundaryError(f"the tokens of {what} are not a prefix of the tokens of the full example")
        return len(ids)
