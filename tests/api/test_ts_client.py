"""The typed TypeScript client (clients/ts): its generated schema is what openapi-typescript makes
of the committed docs/openapi.json today, and the client and the README's example type-check.

Needs Node + npm (the versions are pinned in clients/ts/package-lock.json; `npm ci` runs here when
clients/ts/node_modules is missing). Skipped, with the reason, only when npm is not installed."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "ts"
BIN = CLIENT / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def npm_tools() -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("npm/node are not installed: cannot regenerate the TypeScript client (.ci/run installs them)")
    if not (BIN / "openapi-typescript").exists() or not (BIN / "tsc").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT, check=True,
                       timeout=600)
    return BIN


def test_generated_schema_is_fresh(npm_tools: Path, tmp_path: Path) -> None:
    out = tmp_path / "schema.d.ts"
    subprocess.run([str(npm_tools / "openapi-typescript"), str(ROOT / "docs" / "openapi.json"), "--output", str(out)],
                   cwd=CLIENT, check=True, capture_output=True, timeout=300)
    committed = (CLIENT / "src" / "schema.d.ts").read_text()
    assert out.read_text() == committed, (
        "clients/ts/src/schema.d.ts is stale: run `npm run generate` in clients/ts "
        "(after `.venv/bin/python -m lorafiles.api.openapi`)")
    for operation in ("listConversations", "validateSelection", "createTrainingFile", "addConversations", "getJob",
                      "listTrainingFiles", "getTrainingFile", "getDownloadLink"):
        assert f'operations["{operation}"]' in committed


def test_client_and_readme_example_type_check(npm_tools: Path) -> None:
    done = subprocess.run([str(npm_tools / "tsc"), "--noEmit", "-p", "."], cwd=CLIENT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    example = (CLIENT / "examples" / "create-and-poll.ts").read_text()
    readme = (ROOT / "README.md").read_text()
    for line in ('api.POST("/training-files"', "waitForJob(api, accepted.job_id"):
        assert line in example and line in readme, f"README.md must show the example's {line!r}"
