"""Turn structure of one conversation: dialogues built from the raw training pairs.

The messages of a dialogue come from its *last* trainable pair (history + input + target).
Every earlier trainable pair whose own sequence (system + history + input + target) is a prefix
of it marks its target inside that sequence; a pair that is not a prefix (divergent history, or
a different system prompt) starts a dialogue of its own. Comparison uses the text as written
(before the export text fixes), roles after inference.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..problems import Problem

USER, ASSISTANT = "user", "assistant"
ROLES = (USER, ASSISTANT)


@dataclass
class Message:
    role: str
    text: str                 # as written in the file
    field: str                # where it comes from, e.g. training_pairs[3].target_response
    inferred: bool = False    # role taken from alternation (the history item had none)
    owner: int | None = None  # index (in the pairs) of the trainable pair whose target this is
    content: str = ""         # the export text (after the text fixes); set by the builder
    role_field: str = ""      # where its role comes from (history items)

    def same_turn(self, other: Message) -> bool:
        return self.role == other.role and self.text == other.text


@dataclass
class Dialogue:
    system: str
    system_field: str
    messages: list[Message]
    base: int                                        # the pair the messages come from
    members: list[int] = field(default_factory=list)  # trainable pairs in it, file order
    system_content: str = ""                         # export text of the system prompt

    def owned(self) -> list[int]:
        """Message indices that are targets of trainable pairs, in order."""
        return [i for i, m in enumerate(self.messages) if m.owner is not None]


@dataclass
class DialogueSet:
    dialogues: list[Dialogue]
    problems: list[Problem]
    changes: Counter[str]
    checks: Counter[str]


def pair_label(pairs: Sequence[dict[str, Any]], index: int) -> str:
    p = pairs[index]
    return f"pair {p.get('id')!s} (turn {p.get('turn_number')!s})"


def _pair_sequence(pairs: Sequence[dict[str, Any]], i: int, problems: list[Problem]) -> tuple[list[Message], bool]:
    """History + input + target of pair i, roles resolved; True when the input repeated the history."""
    pair = pairs[i]
    msgs: list[Message] = []
    for j, item in enumerate(pair.get("conversation_history") or []):
        where = f"training_pairs[{i}].conversation_history[{j}]"
        raw_role = item.get("role")
        text = item.get("content")
        if not isinstance(text, str):
            problems.append(Problem(code="wrong_type", message="history content is not a string",
                                    field=f"{where}.content"))
            text = ""
        inferred = raw_role is None or (isinstance(raw_role, str) and not raw_role.strip())
        if inferred:
            role = ASSISTANT if msgs and msgs[-1].role == USER else USER
        else:
            role = str(raw_role).strip().lower()
            if role not in ROLES:
                problems.append(Problem(code="unrecognized_role",
                                        message=f"history role {raw_role!r} is neither 'user' nor 'assistant'",
                                        field=f"{where}.role"))
        msgs.append(Message(role, text, f"{where}.content", inferred=inferred, role_field=f"{where}.role"))
    user_input = pair.get("current_user_input")
    if not isinstance(user_input, str):
        user_input = ""
    repeated = bool(msgs) and msgs[-1].role == USER and msgs[-1].text == user_input
    if not repeated:
        msgs.append(Message(USER, user_input, f"training_pairs[{i}].current_user_input"))
    msgs.append(Message(ASSISTANT, pair["target_response"], f"training_pairs[{i}].target_response", owner=i))
    return msgs, repeated


def build_dialogues(pairs: Sequence[dict[str, Any]]) -> DialogueSet:
    problems: list[Problem] = []
    changes: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    trainable = [i for i, p in enumerate(pairs) if p.get("target_response") is not None]
    dialogues: list[Dialogue] = []
    repeats: list[Problem] = []
    for i in reversed(trainable):
        # Problems of an earlier pair's own sequence only matter if it becomes a dialogue itself.
        local: list[Problem] = []
        seq, repeated = _pair_sequence(pairs, i, local)
        if repeated:
            changes["repeated_user_input_removed"] += 1
            checks["repeated_user_input"] += 1
            repeats.append(Problem(
                code="repeated_user_input", severity="warning", field=f"training_pairs[{i}].current_user_input",
                message=f"{pair_label(pairs, i)}: the user input equals the last history message; "
                        "the exports send it once"))
        system = pairs[i].get("system_prompt")
        system = system if isinstance(system, str) else ""
        home = next((d for d in dialogues if d.system == system and _is_prefix(seq, d.messages)), None)
        if home is not None:
            problems.extend(p for p in local if p.code == "wrong_type")
            target = home.messages[len(seq) - 1]
            if target.owner is None:
                target.owner = i
            else:
                problems.append(Problem(
                    code="duplicate_pair", severity="warning", field=f"training_pairs[{i}]",
                    message=f"{pair_label(pairs, i)} repeats {pair_label(pairs, target.owner)}; exported once"))
            home.members.append(i)
            continue
        problems.extend(local)
        if dialogues:
            changes["divergent_history_split"] += 1
            differs = "system prompt" if all(d.system != system for d in dialogues) else "history"
            problems.append(Problem(
                code="divergent_history_split", severity="warning",
                field=f"training_pairs[{i}].{'system_prompt' if differs == 'system prompt' else 'conversation_history'}",
                message=f"{pair_label(pairs, i)}: its {differs} is not a prefix of the later turns; "
                        "exported as a dialogue of its own"))
        dialogues.append(Dialogue(system, f"training_pairs[{i}].system_prompt", seq, base=i, members=[i]))

    problems[:0] = reversed(repeats)  # file order
    for d in dialogues:
        d.members.sort()
        _name_fields(d)
        _drop_leading_assistant(d, pairs, problems, changes)
        _check_alternation(d, problems, checks)
    for d in dialogues:
        for m in d.messages:
            if m.inferred:
                changes["role_inferred"] += 1
                checks["role_inferred"] += 1
                problems.append(Problem(code="role_inferred", severity="warning", field=m.role_field,
                                        message=f"history message without a role: {m.role!r} from alternation"))
    dialogues.sort(key=lambda d: d.members[0])  # file order of each dialogue's first trainable pair
    return DialogueSet(dialogues, problems, changes, checks)


def _is_prefix(seq: list[Message], messages: list[Message]) -> bool:
    return len(seq) <= len(messages) and all(a.same_turn(b) for a, b in zip(seq, messages))


def _name_fields(d: Dialogue) -> None:
    """A target and the user message before it are named after the pair they belong to."""
    for a in d.owned():
        owner = d.messages[a].owner
        d.messages[a].field = f"training_pairs[{owner}].target_response"
        if a > 0 and d.messages[a - 1].role == USER:
            d.messages[a - 1].field = f"training_pairs[{owner}].current_user_input"


def _drop_leading_assistant(d: Dialogue, pairs: Sequence[dict[str, Any]], problems: list[Problem],
                            changes: Counter[str]) -> None:
    """An example starts with a user message: context before the first one is left out."""
    n = 0
    while n < len(d.messages) and d.messages[n].role != USER and d.messages[n].owner is None:
        n += 1
    if n:
        changes["leading_assistant_dropped"] += n
        problems.append(Problem(code="leading_assistant_dropped", severity="warning", field=d.messages[0].field,
                                message=f"{n} history message(s) before the first user message of "
                                        f"{pair_label(pairs, d.base)} left out of the exports"))
        del d.messages[:n]


def _check_alternation(d: Dialogue, problems: list[Problem], checks: Counter[str]) -> None:
    for idx, m in enumerate(d.messages):
        expected = USER if idx % 2 == 0 else ASSISTANT
        if m.role in ROLES and m.role != expected:
            checks["alternation"] += 1
            problems.append(Problem(code="alternation", field=m.field,
                                    message=f"a {m.role} message follows a {d.messages[idx - 1].role} message "
                                            "(after the system message roles must alternate user/assistant)"
                                    if idx else f"the first message is a {m.role} message, not user"))
            return
