"""One Lambda "container" of the offline rehearsal (tests/infra/test_rehearsal.py).

Run as `python3.13 -I -S rehearsal_driver.py BUNDLE HANDLER` with the function's environment:
no site-packages, no PYTHONPATH from the caller; sys.path is what Lambda gives a function whose
code is BUNDLE (the unzipped package, /var/task) and whose PYTHONPATH is the template's (with
/var/task mapped to BUNDLE; /var/runtime, the runtime's own boto3, does not exist here: the
bundle has to bring everything). The handler is imported the way the Python runtime imports it
(`functions/api/handler.handler` -> module `functions.api.handler`).

Then it serves invocations: one JSON line in ({"event": ...}), one JSON line out
({"result"|"error", "calls": [AWS API calls made], "modules_outside": [...]}).
"""
import importlib
import json
import os
import sys
import time
import traceback


def main() -> None:
    bundle, handler_path = sys.argv[1], sys.argv[2]
    extra = [p.replace("/var/task", bundle) for p in os.environ.get("PYTHONPATH", "").split(":") if p]
    sys.path[:0] = [bundle] + [p for p in extra if os.path.isdir(p)]
    assert not any("site-packages" in p for p in sys.path), sys.path

    started = time.perf_counter()
    import boto3  # from the bundle

    calls = []

    def record(service, operation, params):
        calls.append({"service": service, "operation": operation, "Bucket": params.get("Bucket"),
                      "Key": params.get("Key"), "Name": params.get("Name"), "SecretId": params.get("SecretId"),
                      "stateMachineArn": params.get("stateMachineArn"), "executionArn": params.get("executionArn")})

    # Every client of every session (Powertools Parameters makes its own): real calls and presigning.
    import botocore.signers
    from botocore.client import BaseClient

    make_api_call, presign = BaseClient._make_api_call, botocore.signers.generate_presigned_url

    def recorded_call(self, operation_name, api_params):
        record(self.meta.service_model.service_name, operation_name, api_params)
        return make_api_call(self, operation_name, api_params)

    def recorded_presign(self, ClientMethod, Params=None, *args, **kw):  # noqa: N803 - botocore's names
        operation = self.meta.method_to_api_mapping.get(ClientMethod, ClientMethod)
        record(self.meta.service_model.service_name, operation, Params or {})
        return presign(self, ClientMethod, Params, *args, **kw)

    BaseClient._make_api_call, botocore.signers.generate_presigned_url = recorded_call, recorded_presign
    module_name, function = handler_path.rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name.replace("/", ".")), function)
    import_ms = (time.perf_counter() - started) * 1000

    stdlib = os.path.dirname(os.__file__)
    outside = sorted({name for name, m in list(sys.modules.items())
                      if getattr(m, "__file__", None) and not m.__file__.startswith((bundle, stdlib))
                      and m.__file__ != __file__})
    print("\x1e" + json.dumps({"ready": True, "import_ms": import_ms, "modules_outside": outside,
                      "python": sys.version.split()[0]}), flush=True)

    class Context:
        function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "rehearsal")
        function_version = "$LATEST"
        memory_limit_in_mb = 512
        invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        aws_request_id = "00000000-0000-4000-8000-000000000000"
        log_group_name = f"/aws/lambda/{function_name}"
        log_stream_name = "rehearsal"

        @staticmethod
        def get_remaining_time_in_millis() -> int:
            return 60_000

    for line in sys.stdin:
        request = json.loads(line)
        calls.clear()
        try:
            result = handler(request["event"], Context())
            reply = {"result": result}
        except Exception as exc:  # reported like Lambda's errorType / errorMessage
            reply = {"error": {"errorType": type(exc).__name__, "errorMessage": str(exc),
                               "trace": traceback.format_exc()}}
        reply["calls"] = list(calls)
        print("\x1e" + json.dumps(reply, default=str), flush=True)


if __name__ == "__main__":
    main()
