"""Problems and the bounded per-conversation report: what a person reads (`Problem.line`) and the
limits that keep a report small whatever the file holds (issue 14)."""
from __future__ import annotations

import pytest

from lorafiles.domain.bounds import MAX_PROBLEM_MESSAGE_CHARS, MAX_PROBLEMS_PER_REPORT, clip
from lorafiles.domain.problems import ConversationReport, Problem


@pytest.mark.parametrize("problem,subject,line", [
    (Problem(code="bad_role", message="role 'bot' is unknown", field="training_pairs[2].role"), "conv.json",
     "conv.json: error: bad_role (training_pairs[2].role): role 'bot' is unknown"),
    (Problem(code="bad_role", message="m", field="f"), None, "error: bad_role (f): m"),
    (Problem(code="low_quality", message="m", severity="warning"), "c1", "c1: warning: low_quality: m"),
    (Problem(code="x", message="m"), None, "error: x: m"),
    (Problem(code="x", message="m", field=""), "", "error: x: m"),
])
def test_a_problem_reads_as_one_line(problem, subject, line):
    assert problem.line(subject) == line
    if subject is None:
        assert problem.line() == line


def test_errors_and_warnings_keep_their_severity_code_message_and_field():
    report = ConversationReport(conversation_id="c", source="s")
    report.error("duplicate_key", "key 'id' appears twice", field="training_pairs[0]")
    report.warn("low_quality", "quality 2.0 is below 2.5")
    report.warn("odd", "m", field="dataset_metadata")
    assert [p.model_dump() for p in report.errors] == [
        {"code": "duplicate_key", "message": "key 'id' appears twice", "severity": "error", "field": "training_pairs[0]"}]
    assert [p.model_dump() for p in report.warnings] == [
        {"code": "low_quality", "message": "quality 2.0 is below 2.5", "severity": "warning", "field": None},
        {"code": "odd", "message": "m", "severity": "warning", "field": "dataset_metadata"}]
    assert not report.ok and report.error_count == 1


def test_warnings_alone_leave_a_report_ok():
    report = ConversationReport()
    report.warn("w", "m")
    assert report.ok and report.error_count == 0 and report.errors == []


@pytest.mark.parametrize("kind", ["error", "warn"])
def test_at_most_the_limit_is_listed_and_the_rest_is_counted(kind):
    report = ConversationReport()
    add = getattr(report, kind)
    listed = lambda: report.errors if kind == "error" else report.warnings  # noqa: E731
    omitted = lambda: report.errors_omitted if kind == "error" else report.warnings_omitted  # noqa: E731
    for i in range(MAX_PROBLEMS_PER_REPORT):
        add("c", f"m{i}")
    assert len(listed()) == MAX_PROBLEMS_PER_REPORT == 20 and omitted() == 0
    add("c", "one too many")
    assert len(listed()) == 20 and omitted() == 1
    for _ in range(4):
        add("c", "more")
    assert omitted() == 5
    assert [p.message for p in listed()] == [f"m{i}" for i in range(20)]  # the first ones are kept
    other_omitted = report.warnings_omitted if kind == "error" else report.errors_omitted
    assert other_omitted == 0
    if kind == "error":
        assert report.error_count == 25 and report.warnings == []
    else:
        assert report.error_count == 0 and report.errors == []


@pytest.mark.parametrize("kind", ["error", "warn"])
def test_long_messages_and_fields_are_clipped(kind):
    report = ConversationReport()
    add = getattr(report, kind)
    message, field = "m" * (MAX_PROBLEM_MESSAGE_CHARS + 1), "f" * 301
    add("c", message, field=field)
    add("c", "short", field="f" * 300)
    [clipped, kept] = report.errors if kind == "error" else report.warnings
    assert clipped.message == clip(message, MAX_PROBLEM_MESSAGE_CHARS) and len(clipped.message) <= 500
    assert clipped.message.endswith("more characters]")
    assert clipped.field == clip(field, 300) and len(clipped.field) <= 300 and clipped.field.endswith("more characters]")
    assert (kept.message, kept.field) == ("short", "f" * 300)
