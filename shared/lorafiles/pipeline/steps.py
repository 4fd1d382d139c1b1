"""What every Step Functions task handler shares: Powertools decorators, payload validation
and keeping a step's domain error on the job. Handlers in functions/ stay a few lines."""
from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, Field

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
            except TransientError:
                metrics.add_metric(name="TransientFailures", unit=MetricUnit.Count, value=1)
                raise
            except LorafilesError as exc:
                logger.warning("step failed", extra={"code": exc.code, "error": exc.message})
                metrics.add_metric(name="StepFailures", unit=MetricUnit.Count, value=1)
                get_service().steps.record_failure(step.job_id, exc)
                raise
            return result

        return handler

    return wrap
