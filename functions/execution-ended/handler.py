"""EventBridge "Step Functions Execution Status Change" (FAILED / TIMED_OUT / ABORTED): compensate
the job of an execution that ended without the state machine compensating it. See lorafiles.recovery."""
from aws_lambda_powertools.utilities.parser import parse

from lorafiles.observability import logger, metrics, tracer
from lorafiles.recovery import ExecutionStatusChange, handle_execution_ended
from lorafiles.runtime import get_service


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    return handle_execution_ended(parse(event=event, model=ExecutionStatusChange), get_service())
