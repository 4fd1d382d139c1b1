"""Package size and cold import time of each Lambda handler, from the packaged zip alone.

    bash infra/check.sh                                            # arm64 package (.serverless/)
    CHECK_ARCH=x86_64 CHECK_OUT=.serverless-x86_64 CHECK_LINT=0 bash infra/check.sh
    .venv/bin/python bench/cold_start.py [--runs 7]

Sizes are reported for every package found (arm64 is what deploys). Import times need a package
whose native wheels run here (x86_64 on this machine): each handler is imported in a fresh
CPython 3.13 process started with -I -S (no site-packages), sys.path as Lambda builds it from the
template's PYTHONPATH; the time is the import of the handler module (the INIT phase's own code:
Lambda's runtime start-up and the first connections come on top). Median and max of --runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "infra"))
from test_rehearsal import _python313  # noqa: E402

PROBE = """
import importlib, os, sys, time
bundle = sys.argv[1]
sys.path[:0] = [bundle, os.path.join(bundle, "shared")]
os.environ.update(AWS_LAMBDA_FUNCTION_NAME="bench", AWS_REGION="us-east-1", POWERTOOLS_TRACE_DISABLED="true",
                  LORAFILES_HOME="/tmp/lorafiles-bench", POWERTOOLS_SERVICE_NAME="lorafiles")
t = time.perf_counter()
importlib.import_module(sys.argv[2].replace("/", "."))
print((time.perf_counter() - t) * 1000)
"""


def sizes(zip_path: Path) -> tuple[float, float]:
    with zipfile.ZipFile(zip_path) as z:
        unzipped = sum(i.file_size for i in z.infolist())
    return unzipped / 2**20, zip_path.stat().st_size / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for folder, arch in ((".serverless", "arm64"), (".serverless-x86_64", "x86_64")):
        z = ROOT / folder / "lorafiles.zip"
        if z.exists():
            unzipped, zipped = sizes(z)
            print(f"package {arch:7s} {unzipped:6.1f} MiB unzipped  {zipped:5.1f} MiB zipped  ({z.relative_to(ROOT)})")
    x86 = ROOT / ".serverless-x86_64"
    if not (x86 / "lorafiles.zip").exists():
        print("no x86_64 package: build it (see the docstring) to time the imports", file=sys.stderr)
        return 1
    python = _python313()
    if not python:
        print("no CPython 3.13 found", file=sys.stderr)
        return 1
    template = json.loads((x86 / "cloudformation-template-update-stack.json").read_text())
    handlers = sorted(r["Properties"]["Handler"].rsplit(".", 1)[0] for r in template["Resources"].values()
                      if r["Type"] == "AWS::Lambda::Function")
    with tempfile.TemporaryDirectory() as tmp:
        zipfile.ZipFile(x86 / "lorafiles.zip").extractall(tmp)
        print(f"\ncold import of the handler module, CPython {subprocess.check_output([python, '-V'], text=True).split()[1]}"
              f" -I -S, x86_64, {args.runs} fresh processes each")
        print(f"{'handler':40s} {'median':>9s} {'max':>9s}")
        for handler in handlers:
            times = [float(subprocess.check_output([python, "-I", "-S", "-c", PROBE, tmp, handler], text=True,
                                                   cwd=tmp).strip().splitlines()[-1]) for _ in range(args.runs)]
            print(f"{handler:40s} {statistics.median(times):7.0f} ms {max(times):7.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
