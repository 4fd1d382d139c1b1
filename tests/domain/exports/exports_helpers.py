"""Test doubles for the exports tests: a tiny deterministic ChatModel and raw-pair builders."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lorafiles.ports import TemplateRenderError, TokenCount

OVERHEAD = 3  # tokens a message costs beyond its words (role header + end-of-turn)
EOT = 1       # of which the end-of-turn token, trained with a trained message


class FakeModel:
    """Tokens = whitespace-separated words + OVERHEAD per message (+1 for the start of the text).

    The template accepts an optional system message, then strictly alternating user/assistant
    messages starting with user, and raises TemplateRenderError otherwise (like Mistral's).
    `count` insists that only assistant messages are marked trained.
    """

    tokenizer_id = "whitespace words"
    vocab_sha256 = "0" * 64
    template_id = "fake alternating template"
    template_sha256 = "1" * 64

    def __init__(self, id: str = "mistral-7b-instruct-v0.2", control_tokens: Sequence[str] = ("<ctl>",),
                 refuse: str | None = None) -> None:
        self.id = id
        self.control_tokens = frozenset(control_tokens)
        self.refuse = refuse  # content that makes the template raise (to test render failures)
        self.renders = 0
        self.counts = 0

    def render(self, messages: Sequence[Mapping[str, str]], *, add_generation_prompt: bool = False) -> str:
        self.renders += 1
        body = list(messages)
        if body and body[0]["role"] == "system":
            body = body[1:]
        for i, m in enumerate(body):
            if m["role"] != ("user" if i % 2 == 0 else "assistant"):
                raise TemplateRenderError("Conversation roles must alternate user/assistant/user/assistant/...")
            if self.refuse is not None and self.refuse in m["content"]:
                raise TemplateRenderError(f"refused content {self.refuse!r}")
        return "<bos>" + "".join(f"<{m['role']}>{m['content']}<eot>" for m in messages)

    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))

    def count(self, messages: Sequence[Mapping[str, str]], trained: Sequence[bool]) -> TokenCount:
        self.counts += 1
        assert len(messages) == len(trained)
        self.render(messages)
        total, trainable = 1, 0
        for m, t in zip(messages, trained):
            assert not t or m["role"] == "assistant", "only assistant messages can be trained"
            words = len(m["content"].split())
            total += words + OVERHEAD
            if t:
                trainable += words + EOT
        return TokenCount(total=total, trainable=trainable)


def words(n: int, tag: str = "w") -> str:
    """A text of n distinct words."""
    return " ".join(f"{tag}{i}" for i in range(n))


def make_pairs(texts: Sequence[str], *, system: str = "You are a kind advisor.", repeat: bool = True,
               quality: float | Sequence[float] = 3, roleless: Sequence[int] = ()) -> list[dict[str, Any]]:
    """Raw training pairs like the enrichment service writes them: one pair per turn, texts
    alternating user/assistant, user pairs with a null target, the user message of a target pair
    repeated as the last history item when `repeat`; `roleless` history positions lack `role`."""
    pairs = []
    for i, text in enumerate(texts):
        user_turn = i % 2 == 0
        n_hist = i if (user_turn or repeat) else i - 1
        history = []
        for j in range(n_hist):
            item: dict[str, Any] = {"turn": j + 1, "role": "user" if j % 2 == 0 else "assistant",
                                    "content": texts[j], "emotional_state": {"primary": "calm"}}
            if j in roleless:
                del item["role"]
            history.append(item)
        score = quality if isinstance(quality, (int, float)) else quality[i]
        pairs.append({
            "id": f"t_turn{i + 1}", "conversation_id": "t", "turn_number": i + 1,
            "conversation_metadata": {}, "system_prompt": system, "conversation_history": history,
            "current_user_input": text if user_turn else texts[i - 1],
            "emotional_context": {"detected_emotions": {}},
            "target_response": None if user_turn else text,
            "training_metadata": {"quality_score": score},
        })
    return pairs
