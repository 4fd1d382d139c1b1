"""Starting executions of the deployed state machine."""
from __future__ import annotations

from typing import Any

import boto3
import orjson


class StepFunctionsStarter:
    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        self.arn = state_machine_arn
        self.client = client or boto3.client("stepfunctions")

    def start(self, execution_name: str, payload: dict[str, Any]) -> str:
        """Start once: the name derives from the job, so a retried call finds the same execution."""
        try:
            return self.client.start_execution(stateMachineArn=self.arn, name=execution_name,
                                               input=orjson.dumps(payload).decode())["executionArn"]
        except self.client.exceptions.ExecutionAlreadyExists:
            return self.arn.replace(":stateMachine:", ":execution:") + ":" + execution_name

    def execution_status(self, execution_arn: str) -> tuple[str, str] | None:
        """(status, explanation) from DescribeExecution; None when Step Functions cannot say."""
        try:
            status = self.client.describe_execution(executionArn=execution_arn)["status"]
        except self.client.exceptions.ExecutionDoesNotExist:
            return "MISSING", f"Step Functions has no execution {execution_arn}"
        except Exception:  # noqa: BLE001 - throttled, no permission: decide on the timeout instead
            return None
        return status, f"execution {execution_arn.rsplit(':', 1)[-1]} is {status}"

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        try:
            self.client.stop_execution(executionArn=execution_arn, error=error, cause=cause[:32000])
        except self.client.exceptions.ExecutionDoesNotExist:
            pass
