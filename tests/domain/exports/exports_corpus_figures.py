"""Export figures of the real fixture corpus for one target model.

    .venv/bin/python tests/domain/exports/exports_corpus_figures.py [model-id] [max_length] [over_length]

Builds the exports of every file of /work/shared/fixtures/corpus/*.json (72 conversations) and
enriched/*.json (16) and prints, per folder and together: lines per format, token statistics
(nearest-rank percentiles), exclusions by reason, trims, changes and non-zero checks.
Needs `lorafiles.tokens` (the real tokenizers and chat templates).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from lorafiles.domain.enriched import parse_enriched
from lorafiles.domain.exports import (
    EXPORT_FORMATS,
    ExportAccumulator,
    MemberExports,
    TrainingPolicy,
    build_member_exports,
)

try:
    from shared_fixtures import ROOT as FIXTURES
except ImportError:  # run as a script (python tests/domain/exports/exports_corpus_figures.py)
    FIXTURES = Path(__file__).resolve().parents[3].parent / "shared" / "fixtures"
FOLDERS = ("corpus", "enriched")


def fixture_files(root: Path = FIXTURES) -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((root / folder).glob("*.json"))]


def build_all(model: Any, policy: TrainingPolicy, files: list[Path]) -> Iterator[tuple[Path, Any, MemberExports]]:
    for path in files:
        parsed = parse_enriched(path.read_bytes(), source=str(path))
        assert parsed.ok, (path, parsed.report.errors)
        yield path, parsed, build_member_exports(path.stem, parsed.pairs, policy, model)


def figures(model: Any, policy: TrainingPolicy, files: list[Path]) -> dict[str, Any]:
    accs = {folder: ExportAccumulator() for folder in (*FOLDERS, "all")}
    errors: list[str] = []
    for path, _, member in build_all(model, policy, files):
        if not member.ok:
            errors += [f"{path.parent.name}/{path.name}: {e.line()}" for e in member.errors]
            continue
        accs[path.parent.name].add(member.stats)
        accs["all"].add(member.stats)
    return {"model": model.id, "policy": policy.model_dump(), "errors": errors,
            **{folder: acc.result() for folder, acc in accs.items()}}


def summary(result: dict[str, Any]) -> str:
    out = [f"model {result['model']}  policy {orjson.dumps(result['policy']).decode()}"]
    for folder in (*FOLDERS, "all"):
        r = result[folder]
        out.append(f"\n[{folder}] {r['conversations']} conversations (without errors)")
        out.append(f"  {'format':9} {'lines':>5}  {'total tokens min/mean/p50/p95/p99/max':44} "
                   f"{'trainable min/p50/max':24} {'epoch total':>11} {'epoch trainable':>15}")
        for fmt in EXPORT_FORMATS:
            f = r["formats"][fmt]
            t, tr = f["total_tokens"], f["trainable_tokens"]
            dist = "/".join(str(t[k]) for k in ("min", "mean", "p50", "p95", "p99", "max"))
            tdist = "/".join(str(tr[k]) for k in ("min", "p50", "max"))
            out.append(f"  {fmt:9} {f['lines']:>5}  {dist:44} {tdist:24} {f['training_tokens_per_epoch']:>11} "
                       f"{f['trainable_tokens_per_epoch']:>15}   over max_length: {f['examples_over_max_length']}")
        out.append("  exclusions: " + ", ".join(f"{k} {v['count']} ({v['trainable_tokens']} trainable tokens)"
                                                for k, v in r["exclusions"].items()))
        out.append(f"  trims: {r['trims']}")
        out.append(f"  changes: {r['changes']}")
        out.append("  non-zero checks: " + str({k: v for k, v in r["checks"].items() if v}))
    if result["errors"]:
        out.append("\nerrors:\n  " + "\n  ".join(result["errors"]))
    return "\n".join(out)


def main(argv: list[str]) -> int:
    from lorafiles.tokens import get_model

    model_id = argv[0] if argv else "mistral-7b-instruct-v0.2"
    policy = TrainingPolicy(target_model=model_id, **({"max_length": int(argv[1])} if len(argv) > 1 else {}),
                            **({"over_length": argv[2]} if len(argv) > 2 else {}))
    print(summary(figures(get_model(model_id), policy, fixture_files())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
