"""The ONE place that turns errors into HTTP responses: `{"error": {"code", "message", "details"}}`.

Domain errors (lorafiles.errors.LorafilesError and the API's own below) carry their code and
status; request validation becomes 422 `invalid_request` with one entry per offending field;
anything else is 500 `internal`, logged, with nothing of the exception in the body.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types

from ..errors import LorafilesError


class Unauthorized(LorafilesError):
    """No, or an unacceptable, bearer token. `details.reason` says which check failed."""

    code, status = "unauthorized", 401


class DownloadExpired(LorafilesError):
    code, status = "download_expired", 403


class DownloadInvalid(LorafilesError):
    code, status = "download_invalid", 403


class OriginNotAllowed(LorafilesError):
    """A CORS preflight from an origin that is not configured (api/cors.py)."""

    code, status = "origin_not_allowed", 403


class RouteNotFound(LorafilesError):
    code, status = "route_not_found", 404


class UnsupportedMediaType(LorafilesError):
    code, status = "unsupported_media_type", 415


class HttpError(LorafilesError):
    """A protocol-level error raised by the event handler itself (e.g. 405), code from the status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = HTTPStatus(status).phrase.lower().replace(" ", "_") if status in STATUS_TEXT else "http_error"


class Internal(LorafilesError):
    code, status = "internal", 500


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def error_response(exc: LorafilesError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"' if exc.details and \
            exc.details.get("reason") != "missing_token" else "Bearer"
    return Response(status_code=exc.status, content_type=content_types.APPLICATION_JSON,
                    body=error_body(exc.code, exc.message, exc.details), headers=headers)


def field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pydantic/Powertools validation errors as `{field, loc, type, message}` (no echo of the input)."""
    out = []
    for e in errors:
        loc = [str(part) for part in e.get("loc", ())]
        if e.get("type") == "json_invalid":
            loc = ["body"]  # Powertools puts the character offset here
        out.append({"field": ".".join(loc), "loc": loc, "type": e.get("type", "invalid"),
                    "message": str(e.get("msg", "invalid value"))})
    return out


def invalid_request(errors: list[dict[str, Any]]) -> LorafilesError:
    from ..errors import InvalidRequest

    fields = field_errors(errors)
    names = ", ".join(dict.fromkeys(f["field"] for f in fields)) or "request"
    return InvalidRequest(f"invalid request: {names}", details=fields)


STATUS_TEXT = {s.value: s.phrase for s in HTTPStatus}
