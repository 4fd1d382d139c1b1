"""`presign-download`: {owner_id, file_id, format, version?} -> a signed download URL of the owner's
artifact (TrainingFileService.presign_download; the API route calls the service the same way)."""
from aws_lambda_powertools.utilities.parser import parse

from lorafiles.api.models import PresignDownloadEvent
from lorafiles.observability import logger, metrics, tracer
from lorafiles.runtime import get_service


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    req = parse(event=event, model=PresignDownloadEvent)
    return get_service().reading.presign_download(str(req.owner_id), str(req.file_id), req.format, req.version)
