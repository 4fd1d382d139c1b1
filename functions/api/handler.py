"""HTTP API function (API Gateway HTTP API, payload v2): see lorafiles/api/app.py and docs/API.md."""
from aws_lambda_powertools.logging import correlation_paths

from lorafiles.api.app import app
from lorafiles.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
