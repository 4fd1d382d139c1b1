"""What every Step Functions task handler shares: Powertools decorators, payload validation,
keeping a step's domain error on the job, and bounding what a task returns or raises (a result
or error `Cause` over Step Functions' 256 KiB ends the execution with the uncatchable
States.DataLimitExceeded). Handlers in functions/ stay a few lines."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import orjson
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, Field

from ..domain.bounds import MAX_TASK_MESSAGE_CHARS, MAX_TASK_RESULT_BYTES, clip
from ..errors import LorafilesError, TransientError
from ..observability import logger, metrics, tracer
from ..runtime import get_service

M = TypeVar("M", bound=BaseModel)


class JobStep(BaseModel):
    job_id: str = Field(min_length=36, max_length=36)


class BatchStep(JobStep):
    batch_index: int = Field(ge=0)


class CompensateStep(JobStep):
    error: dict[str, Any] | None = None


class ResultTooLarge(LorafilesError):
    """A task produced a result too large for a state payload (a bug: tasks return ids and counts)."""

    code, status = "result_too_large", 500


def bounded(exc: BaseException) -> BaseException:
    """`exc` with its message clipped to MAX_TASK_MESSAGE_CHARS, keeping its class name (Retry and
    Catch match on it). The full story of a domain error is on the job row (record_failure)."""
    text = str(exc)
    if len(text) <= MAX_TASK_MESSAGE_CHARS:
        return exc
    short = clip(text, MAX_TASK_MESSAGE_CHARS)
    try:
        exc.args = (short,)
        if isinstance(exc, LorafilesError):
            exc.message = short
        if len(str(exc)) <= MAX_TASK_MESSAGE_CHARS:
            return exc
    except Exception:  # noqa: BLE001 - an exception type that does not take this
        pass
    same_name = type(type(exc).__name__, (Exception,), {"__module__": type(exc).__module__})
    return same_name(short)


def pipeline_step(model: type[M]) -> Callable[[Callable[[M], dict[str, Any]]], Callable[[dict, Any], dict]]:
    def wrap(fn: Callable[[M], dict[str, Any]]) -> Callable[[dict, Any], dict]:
        @logger.inject_lambda_context(clear_state=True)
        @tracer.capture_lambda_handler
        @metrics.log_metrics
        @functools.wraps(fn)
        def handler(event: dict, context: Any) -> dict:
            step = parse(event=event, model=model)
            logger.append_keys(job_id=step.job_id)
            try:
                result = fn(step)
                size = len(orjson.dumps(result, default=str))
                if size > MAX_TASK_RESULT_BYTES:
                    raise ResultTooLarge(f"the task's result is {size} bytes, over {MAX_TASK_RESULT_BYTES}")
            except TransientError as exc:
                metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
                raise _reraise(exc)
            except LorafilesError as exc:
                logger.warning("step failed", extra={"code": exc.code, "error": clip(exc.message, 4_000)})
                metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=1)
                get_service().steps.record_failure(step.job_id, exc)
                raise _reraise(exc)
            except Exception as exc:  # noqa: BLE001 - bounded like the rest, then Retry/Catch decide
                raise _reraise(exc)
            return result

        return handler

    return wrap


def _reraise(exc: BaseException) -> BaseException:
    short = bounded(exc)
    if short is not exc:
        short.__cause__, short.__suppress_context__ = None, True
    return short
