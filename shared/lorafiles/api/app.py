"""The HTTP API of the web frontend: one Powertools resolver (API Gateway HTTP API, payload v2).

The Lambda function (functions/api/handler.py) and the local server (`lorafiles serve`,
lorafiles/api/local_server.py) both call `app.resolve(event, context)`: the same routes, the
same auth, the same errors. Handlers stay thin: the use cases live in TrainingFileService and
ConversationCatalog; authentication in api/auth.py; error mapping in api/errors.py.
"""
# No `from __future__ import annotations`: Powertools reads the route signatures at runtime.
from typing import Annotated, Any, Literal, Optional
from uuid import UUID

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.middlewares import BaseMiddlewareHandler, NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestUnsupportedContentType, RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Tag
from aws_lambda_powertools.event_handler.openapi.params import Header, Query

from ..conversations import SORTABLE, ConversationCatalog, Filters, Page, Sort
from ..errors import LorafilesError
from ..file_catalog import FileCatalog
from ..observability import logger
from ..runtime import get_service
from . import errors as api_errors
from .auth import get_verifier
from .cors import cors, is_preflight
from .models import (AddConversationsRequest, ArtifactFormat, ConversationPage, CreateTrainingFileRequest, DownloadLink,
                     ErrorResponse, JobAccepted, JobStatus, SelectionReport, Text, TrainingFileDetail,
                     TrainingFileList, ValidateSelectionRequest, VersionDiff)

TITLE = "lorafiles API"
API_VERSION = "1.0.0"  # of the HTTP contract (docs/openapi.json), not of the package
PUBLIC_PATHS = frozenset({"/openapi.json", "/docs"})  # everything else needs a bearer token
TAGS = [
    Tag(name="selections", description="Check a selection of conversations against a target file."),
    Tag(name="training-files", description="Create training files, add conversations, read, download."),
    Tag(name="jobs", description="Progress of the create/add jobs (Step Functions)."),
    Tag(name="conversations", description="My conversations with their eligibility (conversations page)."),
]

app = APIGatewayHttpResolver(enable_validation=True, cors=cors)  # origins: api/cors.py
app.configure_openapi(
    title=TITLE, version=API_VERSION,
    description=("HTTP API of lorafiles for the web frontend. Every operation needs "
                 "`Authorization: Bearer <Supabase access token>`; errors are "
                 '`{"error": {"code", "message", "details"}}` (codes in docs/API.md).'),
    tags=TAGS,
    security_schemes={"bearerAuth": HTTPBearer(bearerFormat="JWT", description="Supabase user access token")},
    security=[{"bearerAuth": []}],
)
app.enable_swagger(path="/docs", title=TITLE, version=API_VERSION, persist_authorization=True)


# ---------------------------------------------------------------------------- authentication
class _AuthenticateFirst(BaseMiddlewareHandler):
    """Runs before Powertools validates the request (it wraps the resolver's request validation
    middleware, which Powertools always runs first; tests/api/test_auth.py checks the order):

    0. a CORS preflight carries no token: from an allowed origin it goes on to Powertools' answer
       (204 + Access-Control-Allow-*), from another it is 403 origin_not_allowed (api/cors.py);
    1. authentication (api/auth.py), so that a caller without a valid token gets 401 and learns
       nothing about the request shape; the owner goes into the resolver's context;
    2. the body must be JSON: another content type is 415, undecodable bytes 422 (not a 500).
    """

    def __init__(self, validate: BaseMiddlewareHandler) -> None:
        self.validate = validate

    def handler(self, app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
        event = app.current_event
        if is_preflight(event.http_method, event.headers):
            if not cors.allows(event.headers.get("origin")):
                raise api_errors.OriginNotAllowed("this origin may not call the API (LORAFILES_CORS_ALLOWED_ORIGINS)")
            return next_middleware(app)
        if app.context["_route"].path not in PUBLIC_PATHS:
            principal = get_verifier().authenticate(event.headers.get("authorization"))
            app.append_context(owner_id=principal.owner_id)
            logger.append_keys(owner_id=principal.owner_id)
        if event.body:
            _require_json_media_type(event)
            if event.http_method in ("POST", "PUT", "PATCH"):
                try:
                    event.json_body  # noqa: B018 - parsed (and cached) here: bad bytes are a 422
                except (ValueError, RecursionError):  # not UTF-8 / base64 / JSON, or nested too deep
                    raise api_errors.invalid_request([{"loc": ("body",), "type": "json_invalid",
                                                       "msg": "the body is not valid UTF-8 JSON"}]) from None
        return self.validate.handler(app, next_middleware)


app._request_validation_middleware = _AuthenticateFirst(app._request_validation_middleware)


def _require_json_media_type(event: Any) -> None:
    """The media type must be exactly `application/json` (any case, parameters allowed:
    `application/json; charset=utf-8`); `application/jsonfoo`, `application/json-patch+json`
    or two types are 415. The header is rewritten with the lower-case type for Powertools, which
    compares case-sensitively."""
    headers = event.raw_event.get("headers") or {}
    for name in [n for n in headers if n.lower() == "content-type"]:
        media_type, sep, params = str(headers[name]).partition(";")
        if not media_type.strip() and not sep:
            continue  # an empty header is no header: the body is read as JSON
        if media_type.strip().lower() != "application/json":
            raise api_errors.UnsupportedMediaType("send the body as application/json")
        headers[name] = "application/json" + sep + params


def owner() -> str:
    return app.context["owner_id"]


# ---------------------------------------------------------------------------- errors (the one mapping)
@app.exception_handler(LorafilesError)
def _domain_error(exc: LorafilesError) -> Response:
    if exc.status >= 500:
        logger.warning("request failed", extra={"code": exc.code, "error": exc.message})
    return api_errors.error_response(exc)


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    return api_errors.error_response(api_errors.invalid_request(list(exc.errors())))


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_media_type(exc: RequestUnsupportedContentType) -> Response:
    return api_errors.error_response(api_errors.UnsupportedMediaType("send the body as application/json"))


@app.exception_handler(NotFoundError)
def _no_route(exc: NotFoundError) -> Response:
    event = app.current_event
    return api_errors.error_response(api_errors.RouteNotFound(f"no route {event.http_method} {event.path}"))


@app.exception_handler(ServiceError)
def _service_error(exc: ServiceError) -> Response:
    if exc.status_code >= 500:
        return _unexpected(exc)
    return api_errors.error_response(api_errors.HttpError(exc.status_code, exc.msg))


@app.exception_handler(Exception)
def _unexpected(exc: Exception) -> Response:
    logger.exception("unhandled error")
    return api_errors.error_response(api_errors.Internal("internal error; it has been logged"))


def _responses(ok: int, description: str, *errors: int, body: bool = False) -> dict[int, dict[str, Any]]:
    """OpenAPI responses: the success one (from the return annotation) and the error ones. A 202
    declares its `Location` header (the job's URL)."""
    about = {401: "Missing or invalid bearer token (`unauthorized`).",
             404: "No such file/job for this user (`not_found`): other users' objects are not found.",
             409: "The file is busy with another job (`file_busy`).",
             415: "The body is not `application/json` (`unsupported_media_type`).",
             422: "Invalid request (`invalid_request`, field errors), blocked selection "
                  "(`selection_blocked`, per-conversation problems in `details`), an Idempotency-Key already "
                  "used for another request (`idempotency_key_reused`, `details.differs`) or a tampered "
                  "cursor (`invalid_cursor`).",
             500: "A stored object does not match what the database recorded for it (`stored_data_invalid`; "
                  "the message names it) or an unexpected error (`internal`).",
             503: "A dependency could not be reached, e.g. the signing keys (JWKS) to verify the token "
                  "(`transient`): retry later."}
    out: dict[int, dict[str, Any]] = {ok: {"description": description}}
    if ok == 202:
        out[ok]["headers"] = {"Location": {"description": "The job's URL (`/jobs/{job_id}`), also `links.job`.",
                                           "schema": {"type": "string", "format": "uri-reference"}}}
    for code in (401, *sorted(e for e in errors if e < 500), *((415,) if body else ()), 422,
                 *sorted(e for e in errors if e >= 500), 503):
        out[code] = {"description": about[code], "content": {"application/json": {"model": ErrorResponse}}}
    return out


# ---------------------------------------------------------------------------- mapping rows to models
def _job_links(job: dict[str, Any]) -> dict[str, Any]:
    return {"job": f"/jobs/{job['id']}", "file": f"/training-files/{job['file_id']}" if job["file_id"] else None}


def _job_status(job: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job["id"], "kind": job["kind"], "status": job["status"], "step": job["step"],
        "file_id": job["file_id"], "file_name": job["file_name"],
        "progress": {"batches_done": len(job["completed_batches"]), "batches_total": job["total_batches"],
                     "conversations": len(job["requested_ids"])},
        "published_version": job["published_version"], "error": _job_error(job["error"]),
        "created_at": job["created_at"], "started_at": job["started_at"], "finished_at": job["finished_at"],
        "links": _job_links(job),
    }


def _job_error(error: Any) -> dict[str, Any] | None:
    if not error:
        return None
    if not isinstance(error, dict):
        return {"code": "failed", "message": str(error), "details": None}
    return {"code": str(error.get("code") or "failed"), "message": str(error.get("message") or "the job failed"),
            "details": error.get("details")}


_SUMMARY = ("id", "name", "description", "status", "current_version", "conversation_count", "training_pair_count",
            "total_turns", "quality_summary", "created_at", "updated_at")


def _file_summary(f: dict[str, Any]) -> dict[str, Any]:
    return {k: f[k] for k in _SUMMARY}


def _accepted(job: dict[str, Any]) -> Response[JobAccepted]:
    body = JobAccepted(job_id=job["id"], file_id=job["file_id"], kind=job["kind"], status=job["status"],
                       links=_job_links(job))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=body,
                    headers={"Location": body.links.job})


IdempotencyKey = Annotated[
    Optional[Text(255, 1)],
    Header(alias="Idempotency-Key", description="Retrying the same request with the same key returns the same job (one "
                                                "job starts); the key used for another request is 422 "
                                                "`idempotency_key_reused`."),
]


# ---------------------------------------------------------------------------- routes
@app.post("/selections/validate", tags=["selections"], operation_id="validateSelection",
          summary="Check a selection against a new file name or an existing file",
          responses=_responses(200, "Every problem, per conversation (`ok` true when there is none).", 404,
                               body=True))
def validate_selection(body: ValidateSelectionRequest) -> SelectionReport:
    return get_service().jobs.validate_selection(owner(), body.conversation_ids, name=body.name,
                                            file_id=str(body.file_id) if body.file_id else None)


@app.post("/training-files", tags=["training-files"], operation_id="createTrainingFile",
          summary="Create a training file from a selection (starts a job)",
          responses=_responses(202, "Job started (or the job of this Idempotency-Key).", body=True))
def create_training_file(body: CreateTrainingFileRequest,
                         idempotency_key: IdempotencyKey = None) -> Response[JobAccepted]:
    job = get_service().jobs.start_job(owner(), kind="create", conversation_ids=body.conversation_ids, name=body.name,
                                       description=body.description, idempotency_key=idempotency_key,
                                       policy=body.policy.overrides() if body.policy else None)
    return _accepted(job)


@app.post("/training-files/<file_id>/conversations", tags=["training-files"], operation_id="addConversations",
          summary="Add a selection of conversations to a training file (starts a job)",
          responses=_responses(202, "Job started (or the job of this Idempotency-Key).", 404, 409, body=True))
def add_conversations(file_id: UUID, body: AddConversationsRequest,
                      idempotency_key: IdempotencyKey = None) -> Response[JobAccepted]:
    job = get_service().jobs.start_job(owner(), kind="add", conversation_ids=body.conversation_ids,
                                       file_id=str(file_id), idempotency_key=idempotency_key,
                                       policy=body.policy.overrides() if body.policy else None)
    return _accepted(job)


@app.get("/training-files", tags=["training-files"], operation_id="listTrainingFiles",
         summary="My training files, newest first, paginated like /conversations",
         responses=_responses(200, "A page of my training files and their total."))
def list_training_files(
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Ignored when `cursor` is given.")] = 0,
    cursor: Annotated[Optional[Text(2000, 1)], Query(description="`next_cursor` of the previous page.")] = None,
) -> TrainingFileList:
    page = FileCatalog(get_service().db).list(owner(), Page(limit=limit, offset=offset, cursor=cursor))
    return {**page, "items": [_file_summary(f) for f in page["items"]]}


@app.get("/training-files/<file_id>", tags=["training-files"], operation_id="getTrainingFile",
         summary="One training file: figures, members, versions, current job",
         responses=_responses(200, "The training file.", 404))
def get_training_file(file_id: UUID) -> TrainingFileDetail:
    shown = get_service().reading.show_file(owner(), str(file_id))
    f, job = shown["file"], shown["current_job"]
    return {
        **_file_summary(f), "target_model": f["target_model"], "vertical": f["vertical"],
        "policy": f["policy"] or {}, "exports": f["export_summary"] or {},
        "batch_ids": f["batch_ids"], "scaffolding_distribution": f["scaffolding_distribution"],
        "stale_since": f["stale_since"],
        "members": [{**{k: m[k] for k in ("conversation_id", "position", "batch_id", "added_at", "job_id", "pairs",
                                           "training_pairs", "quality_tier", "persona_key", "emotional_arc_key",
                                           "training_topic_key")},
                     "warnings": m["warnings"] or []} for m in shown["members"]],
        "versions": shown["versions"],
        "current_job": _job_status(job) if job else None,
    }


@app.get("/jobs/<job_id>", tags=["jobs"], operation_id="getJob", summary="Status and progress of a job",
         responses=_responses(200, "The job.", 404))
def get_job(job_id: UUID) -> JobStatus:
    return _job_status(get_service().reading.get_job(owner(), str(job_id)))


@app.get("/training-files/<file_id>/download", tags=["training-files"], operation_id="getDownloadLink",
         summary="A short-lived signed URL to download one artifact of a version",
         responses=_responses(200, "Signed URL and what it points at.", 404))
def get_download_link(
    file_id: UUID,
    format: Annotated[ArtifactFormat, Query(
        description="`json` (Full Training JSON), `jsonl` (v4 JSONL), the trainer exports `openai`, `trl`, "
                    "`axolotl`, `sharegpt`, their configs `axolotl_config` (axolotl.yml) and `dataset_info` "
                    "(LLaMA-Factory), `report` (pre-flight report) or `manifest`.")] = "json",
    version: Annotated[Optional[int], Query(ge=1, le=2**31 - 1, description="Default: the current version.")] = None,
) -> DownloadLink:
    link = get_service().reading.presign_download(owner(), str(file_id), format, version)
    return {**link, "format": format}


@app.get("/training-files/<file_id>/diff", tags=["training-files"], operation_id="diffVersions",
         summary="What changed between two versions: conversations added or changed, counts, tokens, coverage",
         responses=_responses(200, "The diff from `from_version` to `to_version`.", 404, 500))
def diff_versions(
    file_id: UUID,
    from_version: Annotated[int, Query(ge=1, le=2**31 - 1, description="The version to compare from.")],
    to_version: Annotated[int, Query(ge=1, le=2**31 - 1, description="The version to compare to.")],
) -> VersionDiff:
    return get_service().diffing.diff(owner(), str(file_id), from_version, to_version)


@app.get("/conversations", tags=["conversations"], operation_id="listConversations",
         summary="My conversations with their eligibility, filtered, sorted and paginated",
         responses=_responses(200, "A page of conversations, the total, and my training files."))
def list_conversations(
    batch_id: Annotated[Optional[UUID], Query()] = None,
    persona_key: Annotated[Optional[Text(255)], Query()] = None,
    emotional_arc_key: Annotated[Optional[Text(255)], Query()] = None,
    topic_key: Annotated[Optional[Text(255)], Query()] = None,
    enrichment_status: Annotated[Optional[Text(50)], Query()] = None,
    eligible: Annotated[Optional[bool], Query(description="Only eligible (true) or ineligible (false).")] = None,
    sort: Annotated[Literal[tuple(SORTABLE)], Query()] = "created_at",
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000, description="Ignored when `cursor` is given.")] = 0,
    cursor: Annotated[Optional[Text(2000, 1)], Query(description="`next_cursor` of the previous page.")] = None,
) -> ConversationPage:
    service = get_service()
    page = ConversationCatalog(service.db).list(
        owner(),
        Filters(batch_id=str(batch_id) if batch_id else None, persona_key=persona_key,
                emotional_arc_key=emotional_arc_key, topic_key=topic_key, enrichment_status=enrichment_status,
                eligible=eligible),
        Sort(sort, order), Page(limit=limit, offset=offset, cursor=cursor))
    page["training_files"] = [{k: f[k] for k in ("id", "name", "status", "conversation_count")}
                              for f in service.reading.list_files(owner())]
    return page


# ---------------------------------------------------------------------------- the document itself
_openapi_json: str | None = None


def openapi_json() -> str:
    """The OpenAPI document (what docs/openapi.json holds)."""
    global _openapi_json
    if _openapi_json is None:
        _openapi_json = app.get_openapi_json_schema()
    return _openapi_json


@app.get("/openapi.json", include_in_schema=False)
def get_openapi():  # noqa: ANN201 - a bare Response has no schema
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json())
