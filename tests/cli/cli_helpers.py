"""Running the real `lorafiles` console script in a subprocess."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "lorafiles"
if not SCRIPT.exists():  # pragma: no cover - not in a venv
    SCRIPT = Path(shutil.which("lorafiles") or "lorafiles")
LOCAL_OWNER = "00000000-0000-4000-8000-00000000a11c"


@dataclass
class Result:
    args: list[str]
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def no_traceback(self) -> None:
        for stream in (self.out, self.err):
            assert "Traceback" not in stream, f"{self.args}: traceback\n{stream}"
            assert 'File "' not in stream, f"{self.args}: traceback\n{stream}"

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(args: list[str], *, home: Path, database_url: str | None, timeout: float = 180,
            env: dict[str, str] | None = None) -> Result:
    """`lorafiles ARGS` with LORAFILES_HOME=home; DATABASE_URL set (fast) or unset (embedded)."""
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "LORAFILES_STORAGE", "LORAFILES_STORAGE_ROOT", "LORAFILES_OWNER",
                             "LORAFILES_PROGRESS", "LORAFILES_STATE_MACHINE_ARN")}
    full_env["LORAFILES_HOME"] = str(home)
    if database_url:
        full_env["DATABASE_URL"] = database_url
    full_env.update(env or {})
    proc = subprocess.run([str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=timeout)
    return Result(args, proc.returncode, proc.stdout, proc.stderr)
