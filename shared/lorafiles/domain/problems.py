"""Problems found while validating a conversation or a selection."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .bounds import MAX_PROBLEM_MESSAGE_CHARS, MAX_PROBLEMS_PER_REPORT, clip

Severity = Literal["error", "warning"]


class Problem(BaseModel):
    """One finding. `code` is stable (clients switch on it); `message` is for people."""

    code: str
    message: str
    severity: Severity = "error"
    field: str | None = None

    def line(self, subject: str | None = None) -> str:
        where = f" ({self.field})" if self.field else ""
        head = f"{subject}: " if subject else ""
        return f"{head}{self.severity}: {self.code}{where}: {self.message}"


class ConversationReport(BaseModel):
    """Validation report of one conversation: errors block, warnings do not.

    Bounded whatever the file holds: at most MAX_PROBLEMS_PER_REPORT errors and warnings are
    listed (messages clipped), and `errors_omitted` / `warnings_omitted` count the rest.
    """

    conversation_id: str | None = None
    source: str | None = None
    errors: list[Problem] = Field(default_factory=list)
    warnings: list[Problem] = Field(default_factory=list)
    errors_omitted: int = 0
    warnings_omitted: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        """Every error raised, listed or omitted."""
        return len(self.errors) + self.errors_omitted

    def error(self, code: str, message: str, field: str | None = None) -> None:
        if len(self.errors) >= MAX_PROBLEMS_PER_REPORT:
            self.errors_omitted += 1
            return
        self.errors.append(Problem(code=code, message=clip(message, MAX_PROBLEM_MESSAGE_CHARS),
                                   field=clip(field, 300) if field else field, severity="error"))

    def warn(self, code: str, message: str, field: str | None = None) -> None:
        if len(self.warnings) >= MAX_PROBLEMS_PER_REPORT:
            self.warnings_omitted += 1
            return
        self.warnings.append(Problem(code=code, message=clip(message, MAX_PROBLEM_MESSAGE_CHARS),
                                     field=clip(field, 300) if field else field, severity="warning"))
