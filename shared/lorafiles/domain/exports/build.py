"""One conversation's exports: dialogues -> text fixes and checks -> length policy -> lines.

A conversation with any error contributes no line at all (its `lines` are empty bytes and its
per-line token lists empty): errors block it, and nothing half-checked can be published.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ...ports import ChatModel, TemplateRenderError
from ..problems import Problem
from .checks import CHECK_NAMES, line_violations, openai_format_errors, prepare_text
from .dialogue import ASSISTANT, Dialogue, build_dialogues, pair_label
from .fixes import is_blank, is_truncated
from .formats import Line, axolotl_line, openai_line, sharegpt_lines, trl_lines, view_of
from .length import Example, Measure, select
from .policy import EXPORT_FORMATS, TrainingPolicy

BUILDER_VERSION = "lorafiles.exports/1"
EXCLUSION_REASONS = ("truncated_target", "below_min_quality", "over_length", "empty_content")
CHANGE_KINDS = ("literal_escapes_fixed", "repeated_user_input_removed", "role_inferred",
                "divergent_history_split", "sharegpt_context_dropped", "leading_assistant_dropped")


@dataclass
class MemberExports:
    conversation_id: str
    lines: dict[str, bytes]
    stats: dict[str, Any]
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def report_entry(self) -> dict[str, Any]:
        """This conversation's entry in a version's report.json."""
        s = self.stats
        formats = {}
        for fmt in EXPORT_FORMATS:
            pairs = s["tokens"][fmt]
            formats[fmt] = {
                "lines": s["lines"][fmt],
                "total_tokens": sum(t for t, _ in pairs),
                "trainable_tokens": sum(tr for _, tr in pairs),
                "max_total_tokens": max((t for t, _ in pairs), default=0),
                "examples": [list(p) for p in pairs],  # [total, trainable] per line, in line order
            }
        return {
            "conversation_id": self.conversation_id,
            "ok": self.ok,
            "errors": [p.model_dump() for p in self.errors],
            "warnings": [p.model_dump() for p in self.warnings],
            "exclusions": s["exclusions"],
            "trims": s["trims"],
            "changes": s["changes"],
            "formats": formats,
        }


def build_member_exports(conversation_id: str, pairs: list[dict], policy: TrainingPolicy,
                         model: ChatModel) -> MemberExports:
    """The four formats' lines, compact stats and problems of one enriched conversation.

    `pairs` are the raw `training_pairs` of a file that passed `parse_enriched`; `model` is the
    policy's target model (its template renders, its tokenizer counts).
    """
    if model.id != policy.target_model:
        raise ValueError(f"model {model.id!r} is not the policy's target model {policy.target_model!r}")
    return _Build(conversation_id, pairs, policy, model).run()


class _Build:
    def __init__(self, conversation_id: str, pairs: Sequence[dict[str, Any]], policy: TrainingPolicy,
                 model: ChatModel) -> None:
        self.cid, self.pairs, self.policy, self.model = conversation_id, pairs, policy, model
        self.problems: list[Problem] = []
        self.changes: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.exclusions: list[tuple[int, str, int]] = []   # (pair index, reason, trainable tokens)
        self.trims: list[tuple[int, int, int]] = []        # (pair index, messages, tokens)
        self.trained_turns = 0

    # -- helpers -------------------------------------------------------------------------------
    def error(self, code: str, message: str, where: str | None) -> None:
        self.problems.append(Problem(code=code, message=message, field=where, severity="error"))

    def warn(self, code: str, message: str, where: str | None) -> None:
        self.problems.append(Problem(code=code, message=message, field=where, severity="warning"))

    def _render_failed(self, exc: TemplateRenderError, what: str, where: str) -> None:
        # `template_render_failed`, or a subclass's own code (e.g. a token-boundary mismatch)
        code = getattr(exc, "code", None) or "template_render_failed"
        self.checks[code] += 1
        self.error(code, f"{self.model.id}: {what} cannot be rendered and counted: {exc}", where)

    @property
    def blocked(self) -> bool:
        return any(p.severity == "error" for p in self.problems)

    def _not_trained(self, d: Dialogue, a: int) -> str | None:
        m = d.messages[a]
        if is_blank(m.content):
            return "empty_content"
        if is_truncated(m.text):
            self.checks["truncated_target"] += 1
            self.warn("truncated_target", f"{pair_label(self.pairs, m.owner)}: the target ends in a backslash "
                      "(truncated mid-sentence); not trained, only context of later turns", m.field)
            return "truncated_target"
        floor = self.policy.min_quality
        if floor is not None:
            score = (self.pairs[m.owner].get("training_metadata") or {}).get("quality_score")
            if not isinstance(score, (int, float)) or score < floor:
                return "below_min_quality"
        return None

    # -- steps ---------------------------------------------------------------------------------
    def run(self) -> MemberExports:
        ds = build_dialogues(self.pairs)
        self.problems += ds.problems
        self.changes.update(ds.changes)
        self.checks.update(ds.checks)
        prepare_text(ds.dialogues, fix=self.policy.fix_literal_escapes, control_strings=self.model.control_tokens,
                     problems=self.problems, changes=self.changes, checks=self.checks)
        plans = []
        for d in ds.dialogues:
            eligible, skipped = [], []
            for a in d.owned():
                reason = self._not_trained(d, a)
                if reason:
                    skipped.append((a, reason))
                else:
                    eligible.append(a)
            plans.append((d, eligible, skipped))
        if self.blocked:
            for d, _, skipped in plans:
                self.exclusions += [(d.messages[a].owner, reason, 0) for a, reason in skipped]
            return self._result({})
        selected = [self._select(d, eligible, skipped) for d, eligible, skipped in plans]
        if self.blocked:
            return self._result({})
        lines = self._lines(selected)
        return self._result({} if self.blocked else lines)

    def _select(self, d: Dialogue, eligible: list[int],
                skipped: list[tuple[int, str]]) -> tuple[Dialogue, Measure, list[Example]]:
        measure = Measure(self.model, d)
        try:
            # (never empty_content: an empty target is an error, and a blocked conversation stops before)
            for a, reason in skipped:
                self.exclusions.append((d.messages[a].owner, reason, measure.alone(a).trainable))
            sel = select(eligible, self.policy, measure)
        except TemplateRenderError as exc:
            self._render_failed(exc, f"the dialogue of {pair_label(self.pairs, d.base)}", d.messages[-1].field)
            return d, measure, []
        for o in sel.over_length:
            owner = d.messages[o.index].owner
            self.exclusions.append((owner, "over_length", o.trainable))
            if self.policy.over_length == "fail":
                self.error("over_length", f"{pair_label(self.pairs, owner)}: its example has {o.tokens} tokens "
                           f"({self.model.id}), more than max_length {self.policy.max_length} "
                           "(over_length policy 'fail')", d.messages[o.index].field)
        for t in sel.trims:
            self.trims.append((d.messages[t.index].owner, t.messages_removed, t.context_tokens_removed))
        self.trained_turns += sum(len(ex.trained) for ex in sel.examples)
        return d, measure, sel.examples

    def _lines(self, selected: list[tuple[Dialogue, Measure, list[Example]]]
               ) -> dict[str, list[tuple[bytes, list[int]]]]:
        out: dict[str, list[tuple[bytes, list[int]]]] = {fmt: [] for fmt in EXPORT_FORMATS}
        for d, measure, examples in selected:
            rendered: set[tuple[int, int]] = set()
            for ex in examples:
                share, dropped = sharegpt_lines(d, ex)
                if dropped:
                    self.changes["sharegpt_context_dropped"] += dropped
                    self.warn("sharegpt_context_dropped",
                              f"sharegpt trains every assistant message of a line: {dropped} context message(s) "
                              f"of the example ending at {pair_label(self.pairs, d.messages[ex.end].owner)} "
                              "are left out and the later turns start a new line", d.messages[ex.end].field)
                produced = [openai_line(d, ex), *trl_lines(d, ex), axolotl_line(d, ex), *share]
                for line in produced:
                    item = self._check_line(d, measure, line, rendered)
                    if item is not None:
                        out[line.fmt].append(item)
        return out

    def _check_line(self, d: Dialogue, measure: Measure, line: Line,
                    rendered: set[tuple[int, int]]) -> tuple[bytes, list[int]] | None:
        where = d.messages[line.end].field
        what = f"{line.fmt} line ending at {pair_label(self.pairs, d.messages[line.end].owner)}"
        data = orjson.dumps(line.record) + b"\n"
        decoded = orjson.loads(data)
        found: Counter[str] = Counter()
        if line.fmt == "openai":
            found.update(openai_format_errors(decoded))
            if any("weight" in m and m.get("role") != ASSISTANT for m in decoded["messages"]):
                found["weight_on_non_assistant"] = 1
        messages, flags = view_of(line.fmt, decoded)
        found.update(line_violations(messages, flags))
        if messages != measure.messages(line.start, line.end) or flags != line.flags():
            found["view_mismatch"] = 1
        if found:
            self.checks.update(found)
            self.error("export_check_failed", f"{what} fails the check(s) {', '.join(sorted(found))}", where)
            return None
        try:
            if (line.start, line.end) not in rendered:
                self.model.render(messages)
                rendered.add((line.start, line.end))
            count = measure(line.start, line.end, line.trained)
        except TemplateRenderError as exc:
            self._render_failed(exc, f"the {what}", where)
            return None
        if count.total > self.policy.max_length:
            self.checks["over_max_length"] += 1
            self.error("over_max_length", f"{what} has {count.total} tokens after the length policy, more than "
                       f"max_length {self.policy.max_length} (builder defect)", where)
            return None
        if count.trainable <= 0:
            self.checks["zero_trainable_tokens"] += 1
            self.error("zero_trainable_tokens", f"{what} has no trainable token (builder defect)", where)
            return None
        return data, [count.total, count.trainable]

    def _result(self, lines: dict[str, list[tuple[bytes, list[int]]]]) -> MemberExports:
        pairs = self.pairs
        exclusions = [{"pair_id": pairs[i].get("id"), "turn_number": pairs[i].get("turn_number"),
                       "reason": reason, "trainable_tokens": lost}
                      for i, reason, lost in sorted(self.exclusions)]  # (a pair has one reason at most)
        trims = [{"pair_id": pairs[i].get("id"), "turn_number": pairs[i].get("turn_number"),
                  "messages_removed": n, "context_tokens_removed": tokens}
                 for i, n, tokens in sorted(self.trims)]
        per_format = {fmt: lines.get(fmt, []) for fmt in EXPORT_FORMATS}
        stats = {
            "builder": BUILDER_VERSION,
            "model": self.model.id,
            "policy": self.policy.digest(),
            "max_length": self.policy.max_length,
            "trainable_pairs": sum(1 for p in pairs if p.get("target_response") is not None),
            "trained_turns": self.trained_turns if not self.blocked else 0,
            "lines": {fmt: len(items) for fmt, items in per_format.items()},
            "tokens": {fmt: [tc for _, tc in items] for fmt, items in per_format.items()},
            "exclusions": exclusions,
            "trims": trims,
            "changes": {k: self.changes.get(k, 0) for k in CHANGE_KINDS},
            "checks": {k: self.checks.get(k, 0) for k in sorted(set(CHECK_NAMES) | set(self.checks))},
        }
        return MemberExports(
            conversation_id=self.cid,
            lines={fmt: b"".join(data for data, _ in items) for fmt, items in per_format.items()},
            stats=stats,
            problems=list(self.problems),
        )
