"""Problems found while validating a conversation or a selection."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

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
    """Validation report of one conversation: errors block, warnings do not."""

    conversation_id: str | None = None
    source: str | None = None
    errors: list[Problem] = Field(default_factory=list)
    warnings: list[Problem] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, code: str, message: str, field: str | None = None) -> None:
        self.errors.append(Problem(code=code, message=message, field=field, severity="error"))

    def warn(self, code: str, message: str, field: str | None = None) -> None:
        self.warnings.append(Problem(code=code, message=message, field=field, severity="warning"))
