"""serverless.yml packages offline (Serverless v3 + serverless-step-functions validation) and the
generated CloudFormation passes cfn-lint; every ASL placeholder maps to a deployed function."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_every_asl_placeholder_is_a_deployed_function():
    placeholders = set(re.findall(r"\$\{(\w+)\}", (ROOT / "infra" / "state-machine.asl.json").read_text()))
    serverless = (ROOT / "serverless.yml").read_text()
    assert placeholders, "the ASL names its functions through placeholders"
    for name in placeholders:
        assert re.search(rf"^\s+{name}:", serverless, re.M), f"{name} has no DefinitionSubstitutions entry"


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (CI installs it)")
def test_serverless_package_and_cfn_lint_pass_offline():
    result = subprocess.run(["bash", "infra/check.sh"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
