"""Powertools Logger, Tracer and Metrics, created once for every function."""
from __future__ import annotations

import logging
import os
import sys
import warnings

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "lorafiles")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Lorafiles")
IN_LAMBDA = bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))
# Locally (CLI, tests) there is no X-Ray daemon and no CloudWatch: keep tracer and metrics quiet,
# and send logs to stderr so that stdout stays the command's own output.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "false" if IN_LAMBDA else "true")
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "false" if IN_LAMBDA else "true")

warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(
    service=SERVICE,
    level=os.environ.get("LOG_LEVEL", "INFO" if IN_LAMBDA else "WARNING"),
    logger_handler=None if IN_LAMBDA else logging.StreamHandler(sys.stderr),
)


class _NoTracer:
    """What the handlers use of Powertools' Tracer, doing nothing: with tracing off the X-Ray SDK
    (about 0.5 s of imports) is never loaded."""

    @staticmethod
    def capture_lambda_handler(fn=None, **_kw):  # noqa: ANN001, ANN205
        return fn if fn is not None else (lambda f: f)

    capture_method = capture_lambda_handler


def _tracer():  # noqa: ANN202
    if os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("true", "1"):
        return _NoTracer()
    from aws_lambda_powertools import Tracer

    return Tracer(service=SERVICE)


tracer = _tracer()
metrics = Metrics(service=SERVICE)
