"""Run the production state machine (infra/state-machine.asl.json) locally in moto's Step
Functions interpreter, with its Lambda tasks dispatched in-process to functions/*/handler.py.

There is no second orchestration: this loads the same ASL file that serverless.yml deploys and
only substitutes the function ARNs (and, for tests, shortens retry intervals).
"""
from __future__ import annotations

import importlib.util
import logging
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import orjson

REPO_ROOT = Path(__file__).resolve().parents[3]
ASL_PATH = Path(os.environ.get("LORAFILES_ASL", REPO_ROOT / "infra" / "state-machine.asl.json"))
FUNCTIONS_DIR = Path(os.environ.get("LORAFILES_FUNCTIONS_DIR", REPO_ROOT / "functions"))
REGION, ACCOUNT = "us-east-1", "123456789012"
# ASL placeholder -> function directory
FUNCTIONS = {
    "ValidateSelection": "validate-selection",
    "CreateFile": "create-file",
    "AppendBatch": "append-batch",
    "GenerateJsonl": "generate-jsonl",
    "CompensateJob": "compensate-job",
}


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lorafiles-local-{name}"


def load_definition(retry_scale: float = 1.0, asl_path: Path = ASL_PATH) -> dict[str, Any]:
    """The ASL with `${Placeholder}` function names resolved to local ARNs."""
    text = asl_path.read_text()
    text = re.sub(r"\$\{(\w+)\}", lambda m: function_arn(FUNCTIONS[m.group(1)]), text)
    definition = orjson.loads(text)
    if retry_scale != 1.0:
        _scale_retries(definition, retry_scale)
    return definition


def _scale_retries(node: Any, scale: float) -> None:
    if isinstance(node, dict):
        for retry in node.get("Retry", []):
            retry["IntervalSeconds"] = max(1, int(retry.get("IntervalSeconds", 1) * scale))
            retry["MaxDelaySeconds"] = max(1, int(retry.get("MaxDelaySeconds", 1) * scale))
            retry["BackoffRate"] = 1.0 if scale < 1 else retry.get("BackoffRate", 2.0)
        for value in node.values():
            _scale_retries(value, scale)
    elif isinstance(node, list):
        for value in node:
            _scale_retries(value, scale)


@dataclass
class LambdaContext:
    """What Powertools reads from a Lambda context."""

    function_name: str
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return function_arn(self.function_name)


_modules: dict[str, ModuleType] = {}


def load_handler(function: str) -> Callable[[dict, Any], Any]:
    if function not in _modules:
        path = FUNCTIONS_DIR / function / "handler.py"
        spec = importlib.util.spec_from_file_location(f"lorafiles_fn_{function.replace('-', '_')}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _modules[function] = module
    return _modules[function].handler


class LocalStateMachine:
    """moto-backed Step Functions with our handlers behind the Lambda tasks.

    `fault` (tests) is called before each dispatch with (function, payload) and may raise to
    simulate a crash of that invocation.
    """

    def __init__(self, *, retry_scale: float = 1.0, fault: Callable[[str, dict], None] | None = None) -> None:
        self.retry_scale, self.fault = retry_scale, fault
        self._mock = None
        self.client = None
        self.arn: str | None = None
        self.invocations: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0

    def __enter__(self) -> "LocalStateMachine":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        import boto3
        from moto import mock_aws
        from moto.awslambda_simple.models import LambdaSimpleBackend

        if not os.environ.get("LORAFILES_DEBUG"):
            # The interpreter logs every failing state with its whole parse tree; the job records
            # the error that matters (and a CLI user must not get moto's internals on stderr).
            logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True},
                                      "lambda": {"use_docker": False},
                                      "core": {"mock_credentials": True, "reset_boto3_session": False}})
        self._mock.start()
        runner = self

        def invoke(backend, function_name, qualifier, body, headers, response_headers):  # noqa: ANN001
            return runner._dispatch(function_name, body, response_headers)

        self._original_invoke = LambdaSimpleBackend.invoke
        LambdaSimpleBackend.invoke = invoke
        self.client = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="local",
                                   aws_secret_access_key="local")
        definition = orjson.dumps(load_definition(self.retry_scale)).decode()
        self.arn = self.client.create_state_machine(
            name="lorafiles-training-file-job", definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/lorafiles-local")["stateMachineArn"]

    def close(self) -> None:
        if self._mock is not None:
            from moto.awslambda_simple.models import LambdaSimpleBackend

            LambdaSimpleBackend.invoke = self._original_invoke
            self._mock.stop()
            self._mock = None

    def _dispatch(self, function_name: str, body: Any, response_headers: dict) -> bytes:
        name = function_name.rsplit(":", 1)[-1].removeprefix("lorafiles-local-")
        payload = orjson.loads(body) if body else {}
        with self._lock:
            self.invocations.append((name, payload))
            self._inflight += 1
        try:
            if self.fault is not None:
                self.fault(name, payload)
            result = load_handler(name)(payload, LambdaContext(function_name=name))
            return orjson.dumps(result)
        except Exception as exc:  # noqa: BLE001 - reported to the interpreter like Lambda does
            response_headers["x-amz-function-error"] = "Unhandled"
            return orjson.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)})
        finally:
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    # --- the JobStarter port ------------------------------------------------------------
    def start(self, execution_name: str, payload: dict[str, Any]) -> str:
        if self._mock is None:
            self.open()
        try:
            return self.client.start_execution(stateMachineArn=self.arn, name=execution_name,
                                               input=orjson.dumps(payload).decode())["executionArn"]
        except self.client.exceptions.ExecutionAlreadyExists:
            return self.arn.replace(":stateMachine:", ":execution:") + ":" + execution_name

    def wait(self, execution_arn: str, timeout: float = 600.0, poll: float = 0.05,
             on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if on_poll is not None:
                on_poll()
            desc = self.client.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                # Like Lambda, an invocation whose Map already failed runs to its end: let it finish.
                with self._idle:
                    self._idle.wait_for(lambda: self._inflight == 0, timeout=max(0.0, deadline - time.monotonic()))
                return desc
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout}s")
            time.sleep(poll)

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        try:
            self.client.stop_execution(executionArn=execution_arn, error=error, cause=cause)
        except Exception:  # noqa: BLE001 - already finished
            pass
