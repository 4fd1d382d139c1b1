"""SQS (from EventBridge `EnrichmentCompleted`): one record per event, partial batch failures.
A record that does not parse (EnrichmentEventRecord) or fails is reported alone in batchItemFailures."""
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from lorafiles.events import EnrichmentEventRecord, handle_enrichment_event
from lorafiles.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS, model=EnrichmentEventRecord)


@tracer.capture_method
def record_handler(record: EnrichmentEventRecord) -> dict:
    return handle_enrichment_event(record.body)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
