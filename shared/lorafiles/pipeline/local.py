"""Run the production state machine (infra/state-machine.asl.json) locally in moto's Step
Functions interpreter, with its Lambda tasks dispatched in-process to functions/*/handler.py.

There is no second orchestration: this loads the same ASL file that serverless.yml deploys and
only substitutes the function ARNs (and, for tests, shortens retry intervals and timeouts).

What AWS does around the state machine, the runner does here too: when an execution ends
FAILED, TIMED_OUT or ABORTED it hands the same "Execution Status Change" event that EventBridge
delivers in AWS to functions/execution-ended, which compensates a job the state machine could
not (States.DataLimitExceeded, States.Runtime, a machine timeout). The state machine's name
carries this process's identity (host, pid, start time), so a later process can tell that an
execution whose runner is gone will never finish (`execution_status`).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import orjson

from ..cleanup import pid_alive

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
EXECUTION_ENDED = "execution-ended"  # EventBridge -> Lambda in AWS; the runner here
ENDED_UNCOMPENSATED = ("FAILED", "TIMED_OUT", "ABORTED")
_RUNNER_RE = re.compile(r"^lorafiles-local-([0-9a-f]{8})-(\d+)-(\d+)$")


def _lazy_moto_batch() -> None:
    """moto's Step Functions parser imports `moto.batch.utils` (for one enum) at load time, and
    `moto/batch/__init__.py` imports the Batch backend, which pulls in `moto.ec2` and its region
    tables: about 1.9 s that a machine with no Batch task never uses. Register `moto.batch` as
    its bare package (same path, so `moto.batch.utils` and `.models` import as usual) whose
    `batch_backends` loads on first access, as `moto.backends` asks for it."""
    import sys

    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or not spec.submodule_search_locations:
        return
    package = ModuleType("moto.batch")
    package.__spec__, package.__file__ = spec, spec.origin
    package.__path__ = list(spec.submodule_search_locations)
    package.__package__ = "moto.batch"

    def __getattr__(name: str) -> Any:
        if name == "batch_backends":
            from moto.batch.models import batch_backends

            return batch_backends
        raise AttributeError(f"module 'moto.batch' has no attribute {name!r}")

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["moto.batch"] = package
    setattr(sys.modules["moto"], "batch", package)


class _Terminations:
    """Wakes the runners when moto's interpreter ends an execution (its worker's `terminated()`
    hook, after the status and stop date are set), so that `wait` and the watcher react at once
    instead of at their next poll; polling stays as the fallback."""

    def __init__(self) -> None:
        self.generation = 0
        self.changed = threading.Condition()
        self._users = 0
        self._original: Callable[..., Any] | None = None

    def install(self) -> None:
        from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication as comm

        with self.changed:
            self._users += 1
            if self._original is not None:
                return
            self._original = original = comm.terminated

            def terminated(this: Any) -> None:
                try:
                    original(this)
                finally:
                    with self.changed:
                        self.generation += 1
                        self.changed.notify_all()

            comm.terminated = terminated

    def uninstall(self) -> None:
        from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication as comm

        with self.changed:
            self._users -= 1
            if self._users == 0 and self._original is not None:
                comm.terminated = self._original
                self._original = None

    def wait_after(self, generation: int, timeout: float, stop: threading.Event | None = None) -> None:
        """Until an execution ends after `generation` was read, `stop` is set, or `timeout` seconds."""
        with self.changed:
            self.changed.wait_for(lambda: self.generation != generation or (stop is not None and stop.is_set()),
                                  timeout=max(0.0, timeout))

    def wake(self) -> None:
        with self.changed:
            self.changed.notify_all()


_terminations = _Terminations()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lorafiles-local-{name}"


def load_definition(retry_scale: float = 1.0, asl_path: Path = ASL_PATH,
                    timeouts: dict[str, int] | None = None) -> dict[str, Any]:
    """The ASL with `${Placeholder}` function names resolved to local ARNs. `timeouts` (tests)
    replaces the TimeoutSeconds of the named states, "$" being the whole machine's."""
    text = asl_path.read_text()
    text = re.sub(r"\$\{(\w+)\}", lambda m: function_arn(FUNCTIONS[m.group(1)]), text)
    definition = orjson.loads(text)
    if retry_scale != 1.0:
        _scale_retries(definition, retry_scale)
    for name, seconds in (timeouts or {}).items():
        if name == "$":
            definition["TimeoutSeconds"] = seconds
        else:
            _set_timeout(definition, name, seconds)
    return definition


def _set_timeout(node: Any, name: str, seconds: int) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name and isinstance(value, dict) and "Type" in value:
                value["TimeoutSeconds"] = seconds
            _set_timeout(value, name, seconds)
    elif isinstance(node, list):
        for value in node:
            _set_timeout(value, name, seconds)


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
_modules_lock = threading.Lock()


def load_handler(function: str) -> Callable[[dict, Any], Any]:
    module = _modules.get(function)
    if module is None:
        with _modules_lock:  # once per process, even when preload() and the interpreter race for it
            module = _modules.get(function)
            if module is None:
                path = FUNCTIONS_DIR / function / "handler.py"
                spec = importlib.util.spec_from_file_location(f"lorafiles_fn_{function.replace('-', '_')}", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                _modules[function] = module
    return module.handler


# what open() and an execution import: moto's interpreter with the service models its parser
# and Lambda backend load (~930 modules), then the handlers
_PRELOAD_MODULES = (
    "boto3", "moto", "moto.awslambda_simple.models", "moto.stepfunctions.responses",
    "moto.stepfunctions.parser.models", "moto.stepfunctions.parser.backend.execution",
    "moto.stepfunctions.parser.asl.component.state.exec.state_task.lambda_eval_utils",
    "moto.stepfunctions.parser.asl.component.common.path.result_path",
    "moto.stepfunctions.parser.asl.utils.json_path",
)
_preloading: threading.Thread | None = None


def preload(*warm: Callable[[], Any]) -> None:
    """Import, in a background thread, what `LocalStateMachine.open` and the handlers will import
    (moto's interpreter is about 0.5 s of CPU), then run `warm` (e.g. load a tokenizer), so that a
    command's other start-up work overlaps it: the embedded PostgreSQL starting, the migration
    check, the selection's validation. Nothing is started (no mock, no execution); `open` waits
    for it. A failure here is ignored: `open` imports again and reports it. Once per process."""
    global _preloading
    with _modules_lock:
        if _preloading is not None:
            return

        def work() -> None:
            try:
                import moto  # noqa: F401  (the package first: _lazy_moto_batch registers beside it)

                _lazy_moto_batch()
                for name in _PRELOAD_MODULES:
                    importlib.import_module(name)
                for function in FUNCTIONS.values():
                    load_handler(function)
                for fn in warm:
                    fn()
            except Exception:  # noqa: BLE001 - open() and the handlers import again, and say why
                logging.getLogger(__name__).debug("preload failed", exc_info=True)

        _preloading = threading.Thread(target=work, name="lorafiles-preload", daemon=True)
        _preloading.start()


def _preloaded() -> None:
    thread = _preloading
    if thread is not None:
        thread.join()


# ------------------------------------------------------------------ who runs an execution
def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _process_start(pid: int) -> int | None:
    try:
        import psutil

        return int(psutil.Process(pid).create_time())
    except Exception:  # noqa: BLE001 - no such process, or psutil missing
        return None


def runner_name() -> str:
    """This process's state machine name: lorafiles-local-<host>-<pid>-<process start time>."""
    return f"lorafiles-local-{_host_tag()}-{os.getpid()}-{_process_start(os.getpid()) or 0}"


def runner_of(execution_arn: str | None) -> tuple[str, int, int] | None:
    """(host tag, pid, process start) of the local runner of an execution ARN, if it is one."""
    parts = (execution_arn or "").split(":")
    if len(parts) != 8 or parts[5] != "execution":
        return None
    m = _RUNNER_RE.match(parts[6])
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def runner_alive(execution_arn: str | None) -> bool | None:
    """Is the local process that runs this execution alive? None when that cannot be known here
    (not a local execution, or one run on another host)."""
    runner = runner_of(execution_arn)
    if runner is None or runner[0] != _host_tag():
        return None
    _, pid, start = runner
    if not pid_alive(pid):
        return False
    started = _process_start(pid)
    if started is None or start == 0:
        return True
    return abs(started - start) <= 1  # otherwise another process has been given that pid since


def local_execution_status(execution_arn: str | None) -> tuple[str, str] | None:
    """("GONE" | "RUNNING", explanation) for an execution run by a local process of this host,
    judged by whether that process is alive; None for any other execution."""
    alive = runner_alive(execution_arn)
    if alive is None:
        return None
    pid = runner_of(execution_arn)[1]
    if alive:
        return "RUNNING", f"its lorafiles process (pid {pid}) is still running"
    return "GONE", (f"the lorafiles process that ran it (pid {pid}) is gone: it was killed or crashed "
                    "before the job finished")


class LocalStateMachine:
    """moto-backed Step Functions with our handlers behind the Lambda tasks.

    `fault` (tests) is called before each dispatch with (function, payload) and may raise to
    simulate a crash of that invocation. `timeouts` (tests) replaces states' TimeoutSeconds.
    """

    def __init__(self, *, retry_scale: float = 1.0, fault: Callable[[str, dict], None] | None = None,
                 timeouts: dict[str, int] | None = None) -> None:
        self.retry_scale, self.fault, self.timeouts = retry_scale, fault, timeouts
        self._mock = None
        self.client = None
        self.arn: str | None = None
        self.invocations: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._inflight = 0
        self._started: dict[str, dict[str, Any]] = {}  # execution ARN -> input, until settled
        self._settled: set[str] = set()
        self._settling: dict[str, threading.Lock] = {}
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> "LocalStateMachine":
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        _preloaded()
        _lazy_moto_batch()
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
        self._reuse_lambda_clients()
        self._invoke_directly()
        self._memoise_json_paths()
        _terminations.install()
        self.client = boto3.client("stepfunctions", region_name=REGION, aws_access_key_id="local",
                                   aws_secret_access_key="local")
        definition = orjson.dumps(load_definition(self.retry_scale, timeouts=self.timeouts)).decode()
        self.arn = self.client.create_state_machine(
            name=runner_name(), definition=definition,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/lorafiles-local")["stateMachineArn"]
        self._stop_watch.clear()
        self._watcher = threading.Thread(target=self._watch, name="lorafiles-execution-watcher", daemon=True)
        self._watcher.start()

    def _reuse_lambda_clients(self) -> None:
        """moto's interpreter builds a new boto3 Lambda client for every Task it runs (~10 ms of
        CPU each); boto3 clients are thread-safe, so keep one per region and service while this runs."""
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils as leu

        build, cache, guard = leu.boto_client_for, {}, threading.Lock()

        def cached(region: str, service: str, state_credentials: Any = None) -> Any:
            # moto 5.2's boto_client_for ignores state_credentials: the client depends on region only
            with guard:
                if (region, service) not in cache:
                    cache[(region, service)] = build(region, service)
                return cache[(region, service)]

        self._original_client_for = build
        leu.boto_client_for = cached

    def _memoise_json_paths(self) -> None:
        """The interpreter parses every JSONPath of the ASL (`$.job_id`, `$.Payload.batches`, the
        ResultPaths...) each time a state evaluates it, building a new PLY parser each time (~0.5 ms
        of CPU per path, dozens per execution). Parsed paths are immutable: keep them."""
        import functools

        from moto.stepfunctions.parser.asl.component.common.path import result_path
        from moto.stepfunctions.parser.asl.utils import json_path

        self._original_parsers = [(module, module.parse) for module in (json_path, result_path)]
        for module, parse in self._original_parsers:
            module.parse = functools.lru_cache(maxsize=1024)(parse)

    def _invoke_directly(self) -> None:
        """The interpreter's `arn:aws:states:::lambda:invoke` integration calls Lambda through a
        boto3 client and moto's Lambda service (request signing, routing, serialising: ~4 ms of
        CPU per task). Hand the task's parameters to the handlers instead, answering what Lambda's
        Invoke answers (StatusCode, FunctionError, the payload as the interpreter decodes it); the
        ASL's Parameters, ResultSelector, Retry and Catch are evaluated by the interpreter as before."""
        import io

        from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils as leu

        runner = self

        def invoke(parameters: dict, region: str, state_credentials: Any = None) -> dict[str, Any]:
            headers: dict[str, str] = {}
            out = runner._dispatch(str(parameters["FunctionName"]), parameters.get("Payload"), headers)
            response: dict[str, Any] = {"StatusCode": 200, "ExecutedVersion": "$LATEST",
                                        "Payload": leu._from_payload(io.BytesIO(out))}
            if "x-amz-function-error" in headers:
                response["FunctionError"] = headers["x-amz-function-error"]
            return response

        self._original_invoke_function = leu._invoke_lambda_function
        leu._invoke_lambda_function = invoke

    def close(self) -> None:
        if self._watcher is not None:
            self._stop_watch.set()
            _terminations.wake()
            self._watcher.join(timeout=30)
            self._watcher = None
        if self._mock is not None:
            from moto.awslambda_simple.models import LambdaSimpleBackend

            from moto.stepfunctions.parser.asl.component.state.exec.state_task import lambda_eval_utils as leu

            LambdaSimpleBackend.invoke = self._original_invoke
            leu.boto_client_for = self._original_client_for
            leu._invoke_lambda_function = self._original_invoke_function
            for module, parse in self._original_parsers:
                module.parse = parse
            _terminations.uninstall()
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
            arn = self.client.start_execution(stateMachineArn=self.arn, name=execution_name,
                                              input=orjson.dumps(payload).decode())["executionArn"]
        except self.client.exceptions.ExecutionAlreadyExists:
            arn = self.arn.replace(":stateMachine:", ":execution:") + ":" + execution_name
        with self._lock:
            if arn not in self._settled:
                self._started.setdefault(arn, payload)
        return arn

    def execution_status(self, execution_arn: str) -> tuple[str, str] | None:
        """(status, explanation) of an execution, or None when this process cannot know it.
        An execution of a local runner that is gone is "GONE": it will never finish."""
        if self.client is not None and self.arn is not None and \
                execution_arn.startswith(self.arn.replace(":stateMachine:", ":execution:") + ":"):
            try:
                status = self.client.describe_execution(executionArn=execution_arn)["status"]
            except Exception:  # noqa: BLE001 - not known to this runner
                return None
            return status, f"execution {execution_arn.rsplit(':', 1)[-1]} is {status}"
        return local_execution_status(execution_arn)

    # --- what EventBridge does in AWS: executions that ended uncompensated ----------------
    def _watch(self) -> None:
        generation = _terminations.generation
        while not self._stop_watch.is_set():
            _terminations.wait_after(generation, 0.5, self._stop_watch)  # woken when an execution ends
            generation = _terminations.generation
            if self._stop_watch.is_set():
                return
            with self._lock:
                pending = list(self._started)
            for arn in pending:
                try:
                    if self.client.describe_execution(executionArn=arn)["status"] != "RUNNING":
                        self._settle(arn)
                except Exception:  # noqa: BLE001 - keep watching the others; wait() settles too
                    continue

    def _settle(self, execution_arn: str) -> None:
        """Once per execution that ended FAILED, TIMED_OUT or ABORTED: dispatch its "Execution
        Status Change" event to execution-ended (a no-op for a job already compensated)."""
        with self._lock:
            if execution_arn in self._settled:
                return
            guard = self._settling.setdefault(execution_arn, threading.Lock())
        with guard:
            with self._lock:
                if execution_arn in self._settled:
                    return
            desc = self.client.describe_execution(executionArn=execution_arn)
            if desc["status"] in ENDED_UNCOMPENSATED:
                event = status_change_event(desc)
                self._dispatch(function_arn(EXECUTION_ENDED), orjson.dumps(event), {})
            with self._lock:
                self._settled.add(execution_arn)
                self._started.pop(execution_arn, None)
                self._settling.pop(execution_arn, None)

    def wait(self, execution_arn: str, timeout: float = 600.0, poll: float = 0.05,
             on_poll: Callable[[], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            if on_poll is not None:
                on_poll()
            generation = _terminations.generation
            desc = self.client.describe_execution(executionArn=execution_arn)
            if desc["status"] != "RUNNING":
                # Like Lambda, an invocation whose Map already failed runs to its end: let it finish.
                with self._idle:
                    self._idle.wait_for(lambda: self._inflight == 0, timeout=max(0.0, deadline - time.monotonic()))
                self._settle(execution_arn)
                return desc
            if time.monotonic() > deadline:
                raise TimeoutError(f"execution {execution_arn} still running after {timeout}s")
            _terminations.wait_after(generation, poll)  # returns as soon as an execution ends

    def stop(self, execution_arn: str, error: str, cause: str) -> None:
        try:
            self.client.stop_execution(executionArn=execution_arn, error=error, cause=cause)
        except Exception:  # noqa: BLE001 - already finished
            pass


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.astimezone(timezone.utc).timestamp() * 1000)
    return None


def status_change_event(desc: dict[str, Any]) -> dict[str, Any]:
    """The EventBridge "Step Functions Execution Status Change" event for a DescribeExecution."""
    arn = desc["executionArn"]
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states", "account": ACCOUNT, "region": REGION,
        "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), "resources": [arn],
        "detail": {
            "executionArn": arn, "stateMachineArn": desc.get("stateMachineArn"), "name": desc.get("name"),
            "status": desc["status"], "startDate": _epoch_ms(desc.get("startDate")),
            "stopDate": _epoch_ms(desc.get("stopDate")), "input": desc.get("input"), "output": desc.get("output"),
            "error": desc.get("error"), "cause": desc.get("cause"),
        },
    }
