"""The dataset card of a version (`README.md`), in the Hugging Face dataset card convention.

YAML front matter: `configs` (one per export format, `data_files` per split) and `dataset_info`
(per config: its splits with `num_examples` = lines and `num_bytes` = bytes of the JSONL file,
which is what `datasets.load_dataset` checks the example counts against). Only non-empty split
files are declared. Then the counts, policies, token statistics, coverage, the known data defects
with what was done about each, and the checksums. Deterministic: no clock, no randomness.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

from .splits import SPLITS

DEFECT_ACTIONS = {
    "truncated_target": "target ends in a backslash: never trained on, kept as context (exports only)",
    "double_escaped_newline": "literal \\n / \\\" in the text: real characters in the exports when fix_literal_escapes is on",
    "input_repeats_history": "current_user_input repeats the last history item: not repeated in the exports",
    "history_without_role": "history item without a role: role taken from alternation in the exports",
    "low_quality": "quality below 2.5: recorded; trained unless the policy's min_quality excludes it",
    "missing_scaffolding_keys": "scaffolding taken from the conversation row; coverage counts it as found",
    "dataset_name_unrecognised": "recorded; the conversation id comes from the database row",
}


def _q(value: Any) -> str:
    """A YAML scalar: JSON strings and numbers are valid YAML."""
    return json.dumps(value, ensure_ascii=False)


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def front_matter(*, pretty_name: str, formats: tuple[str, ...], artifacts: Mapping[str, Mapping[str, Any]],
                 conversations: int) -> str:
    lines = ["---", f"pretty_name: {_q(pretty_name)}", "language:", "- en", "task_categories:", "- text-generation",
             "tags:", "- lorafiles", "- synthetic", "- conversational", "- lora", "size_categories:",
             f"- {_q(size_category(conversations))}", "configs:"]
    declared: dict[str, list[str]] = {}
    for i, fmt in enumerate(formats):
        splits = [s for s in SPLITS if artifacts[f"{fmt}_{s}"]["lines"] > 0]
        declared[fmt] = splits
        if not splits:
            continue
        lines.append(f"- config_name: {fmt}")
        if i == 0:
            lines.append("  default: true")
        lines.append("  data_files:")
        for s in splits:
            lines += [f"  - split: {s}", f"    path: {_q(artifacts[f'{fmt}_{s}']['file'])}"]
    lines.append("dataset_info:")
    for fmt in formats:
        if not declared[fmt]:
            continue
        lines += [f"- config_name: {fmt}", "  splits:"]
        total = 0
        for s in declared[fmt]:
            a = artifacts[f"{fmt}_{s}"]
            total += a["size"]
            lines += [f"  - name: {s}", f"    num_bytes: {a['size']}", f"    num_examples: {a['lines']}"]
        lines += [f"  download_size: {total}", f"  dataset_size: {total}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def render_card(*, file_id: str, file_name: str, version: int, formats: tuple[str, ...],
                policy: Mapping[str, Any], model: Mapping[str, Any], dataset: Mapping[str, Any],
                export_figures: Mapping[str, Any], split_tokens: Mapping[str, Mapping[str, int]],
                source_warnings: Mapping[str, int], artifacts: Mapping[str, Mapping[str, Any]]) -> str:
    splits, dup, cov = dataset["splits"], dataset["duplicates"], dataset["coverage"]
    conversations = sum(splits["conversations"].values())
    md = [front_matter(pretty_name=f"{file_name} (v{version})", formats=formats, artifacts=artifacts,
                       conversations=conversations)]
    md += [f"# {file_name} — version {version}", "",
           f"Training file `{file_id}`, built by lorafiles for `{model.get('id')}` "
           f"(tokenizer `{model.get('tokenizer_id')}`, template `{model.get('template_id')}`). Synthetic "
           "financial-advisor conversations; every conversation, with all its turns, is in exactly one split.", "",
           "```python", "from datasets import load_dataset",
           f"ds = load_dataset(\"path/to/v{version}\", \"{formats[0]}\")  # or: " + ", ".join(formats[1:]), "```", ""]
    md += ["## Counts", ""]
    rows = [["conversations", splits["conversations"]["train"], splits["conversations"]["validation"]]]
    rows += [[f"{fmt} lines", artifacts[f"{fmt}_train"]["lines"], artifacts[f"{fmt}_validation"]["lines"]]
             for fmt in formats]
    rows += [[f"{fmt} trainable tokens", split_tokens[fmt]["train"], split_tokens[fmt]["validation"]] for fmt in formats]
    md += _table(["", "train", "validation"], rows) + [""]
    excl = dataset["exclusions"]["by_reason"]
    md += [f"Excluded from the splits: {sum(excl.values())} conversation(s)"
           + (" (" + ", ".join(f"{k}: {v}" for k, v in excl.items()) + ")" if excl else "") + ".", ""]
    md += ["## Policies", "", "| setting | value |", "|---|---|"]
    md += [f"| {k} | `{json.dumps(v)}` |" for k, v in sorted(policy.items())] + [""]
    md += [f"Split: {splits['method']}. Stratified by {splits['stratify_by']}; {splits['stated_bound']}; "
           f"largest stratum deviation: {splits['largest_stratum_count_deviation']} conversation(s) "
           f"({splits['largest_stratum_share_deviation']} as a share of a split).", ""]
    md += [f"- fallback: {note}" for note in splits["fallbacks"]] + ([""] if splits["fallbacks"] else [])
    md += ["## Token statistics (whole file, target model's template)", ""]
    rows = []
    for fmt in formats:
        f = export_figures["formats"][fmt]
        t, tr = f["total_tokens"], f["trainable_tokens"]
        rows.append([fmt, f["lines"], t["min"], t["mean"], t["p50"], t["p95"], t["max"], tr["mean"],
                     f["trainable_tokens_per_epoch"], f["examples_over_max_length"]])
    md += _table(["format", "lines", "min", "mean", "p50", "p95", "max", "trainable mean", "trainable / epoch",
                  "over max_length"], rows) + [""]
    md += ["## Coverage (persona x arc x topic)", "",
           f"{cov['filled_cells']} of {cov['cells']} cells hold a conversation; {len(cov['empty_cells'])} are empty.", ""]
    md += _table(["persona", "arc", "topic", "conversations", "train", "validation"],
                 [[r["persona"], r["arc"], r["topic"], r["conversations"], r["train"], r["validation"]]
                  for r in cov["table"] if r["conversations"]]) + [""]
    if cov["empty_cells"]:
        md += ["Empty cells: " + "; ".join(cov["empty_cells"]) + ".", ""]
    md += [f"- {w['message']}" for w in cov["warnings"]] + ([""] if cov["warnings"] else [])
    md += ["## Known data defects and what was done", ""]
    rows = [[code, n, DEFECT_ACTIONS.get(code, "warning recorded per conversation in report.json")]
            for code, n in sorted(source_warnings.items())]
    rows += [[f"export exclusion: {r}", v["count"], "not trained (see report.json)"]
             for r, v in sorted(export_figures["exclusions"].items()) if v["count"]]
    rows += [[f"export change: {k}", v, "changed in the exports only"]
             for k, v in sorted(export_figures["changes"].items()) if v]
    rows += [["exact duplicate responses", dup["exact_responses"]["duplicate_responses"], "reported (report.json)"],
             ["exact duplicate conversations", dup["exact_conversations"]["duplicate_conversations"],
              "excluded from the splits" if policy.get("exact_duplicates") == "exclude" else "reported (report.json)"],
             [f"near duplicate responses (Jaccard >= {dup['near_responses']['threshold']})",
              dup["near_responses"]["pairs"], "reported (report.json)"],
             ["train/validation leakage", dup["leakage"]["count"], "reported (report.json)"]]
    md += _table(["defect", "count", "what was done"], rows) + [""]
    if dup["top_openers"]:
        md += ["Most used openers of assistant turns: "
               + "; ".join(f"\"{o['opener']}\" ({o['count']})" for o in dup["top_openers"][:5]) + ".", ""]
    md += ["## Checksums (sha256)", ""]
    md += _table(["file", "bytes", "lines", "sha256"],
                 [[f"`{a['file']}`", a["size"], a["lines"], f"`{a['sha256']}`"]
                  for _, a in sorted(artifacts.items(), key=lambda kv: kv[1]["file"])]) + [""]
    md += ["`manifest.json` lists these and `training.json`, `report.json` (which name their version) with "
           "every member's source sha256 and split.", ""]
    return "\n".join(md)
