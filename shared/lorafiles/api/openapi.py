"""The committed OpenAPI document (docs/openapi.json): what the resolver generates, pretty-printed.

    python -m lorafiles.api.openapi            # rewrite docs/openapi.json
    python -m lorafiles.api.openapi --check    # exit 1 when it is stale (tests/api/test_openapi.py)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def document() -> dict:
    from .app import openapi_json

    return json.loads(openapi_json())


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(next((a for a in args if not a.startswith("--")), DOC))
    if "--check" in args:
        if not path.is_file() or json.loads(path.read_text()) != document():
            print(f"{path} is stale: run python -m lorafiles.api.openapi", file=sys.stderr)
            return 1
        return 0
    path.write_text(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
