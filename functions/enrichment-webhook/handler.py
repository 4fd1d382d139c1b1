"""HTTP `POST /webhooks/enrichment`: Supabase Database Webhook on public.conversations.
Shared-secret header, then lorafiles.events.handle_webhook_request (401 / 422 / 200 / 202)."""
import orjson
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types

from lorafiles.events import handle_webhook_request
from lorafiles.observability import logger, metrics, tracer

app = APIGatewayHttpResolver()


@app.post("/webhooks/enrichment")
def enrichment_webhook() -> Response:
    status, body = handle_webhook_request(app.current_event.headers, app.current_event.decoded_body)
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON,
                    body=orjson.dumps(body, default=str).decode())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context) -> dict:
    return app.resolve(event, context)
