"""Domain exceptions. Each has a stable `code` (API clients and the state machine switch on it)
and an HTTP-ish `status` used by the one place that maps errors to responses."""
from __future__ import annotations

from typing import Any


class LorafilesError(Exception):
    code = "error"
    status = 400

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class SelectionBlocked(LorafilesError):
    """The selection has problems; nothing was started. `details` lists one entry per problem."""

    code, status = "selection_blocked", 422


class InvalidRequest(LorafilesError):
    code, status = "invalid_request", 422


class IdempotencyKeyReused(LorafilesError):
    """The Idempotency-Key already names another request; `details.differs` lists the fields
    that differ. The other request's job is never returned."""

    code, status = "idempotency_key_reused", 422


class InvalidCursor(LorafilesError):
    """A pagination cursor that this API did not issue (or issued for another sort order)."""

    code, status = "invalid_cursor", 422


class NameTaken(LorafilesError):
    code, status = "name_taken", 409


class NotFound(LorafilesError):
    code, status = "not_found", 404


class FileBusy(LorafilesError):
    code, status = "file_busy", 409


class ConversationsInvalid(LorafilesError):
    """Enriched files failed validation while a job read them. `details`: per-conversation reports."""

    code, status = "conversations_invalid", 422


class JobStateError(LorafilesError):
    code, status = "job_state", 409


class StoredDataInvalid(LorafilesError):
    """An object this system stored does not hold what its database record says (checksum, size or
    shape). The message names the object; nothing is changed. An operator's problem, not the caller's."""

    code, status = "stored_data_invalid", 500


class TransientError(LorafilesError):
    """Worth retrying (storage or database hiccup). The state machine retries it with backoff."""

    code, status = "transient", 503
