"""EventBridge schedule: reap stuck jobs, then start regenerations of stale files. Returns counts."""
from lorafiles.events import run_scheduled
from lorafiles.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True, log_event=False)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    logger.append_keys(schedule_event_id=(event or {}).get("id"))
    return run_scheduled()
