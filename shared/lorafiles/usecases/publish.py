"""Writing one version's artifacts in a single streamed pass over its members.

For each member, three stored objects are read (its v4 JSON fragment, its v4 JSONL lines and
its exports bundle) with a bounded read-ahead, and every artifact is appended to at once:
`training.json`, `training.jsonl`, the four trainer exports, `report.json` and the member list
of `manifest.json`. Memory does not grow with the file (members are streamed from a server-side
cursor; the manifest's member list goes through a temporary file). Nothing here decides what is
published: `PipelineSteps.generate` uploads the files and then points the database at them in
one transaction.
"""
from __future__ import annotations

import hashlib
from collections import Counter, deque
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, BinaryIO, Iterable, Iterator, Mapping

import orjson

from .. import __version__
from ..domain import bundle
from ..domain.exports import (BUILDER_VERSION, EXPORT_FORMATS, TrainingPolicy, axolotl_datasets_yaml,
                              format_notes, llamafactory_dataset_info)
from ..domain.render import FileHeader, json_head, jsonl_meta_line
from ..ports import ChatModel, ObjectStore
from .common import ARTIFACTS, OUTPUT_BUCKET
from .dataset_files import DatasetFiles

_SORTED = orjson.OPT_SORT_KEYS
_INDENTED = orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2


class _Out:
    """An artifact being written: hashes, sizes and counts lines as it goes."""

    def __init__(self, path: Path) -> None:
        self.raw: BinaryIO = open(path, "wb")
        self.sha, self.size, self.lines = hashlib.sha256(), 0, 0

    def write(self, data: bytes) -> None:
        self.raw.write(data)
        self.sha.update(data)
        self.size += len(data)
        self.lines += data.count(b"\n")

    def close(self) -> None:
        self.raw.close()


def model_identity(model: ChatModel) -> dict[str, str]:
    return {"id": model.id, "tokenizer_id": model.tokenizer_id, "vocab_sha256": model.vocab_sha256,
            "template_id": model.template_id, "template_sha256": model.template_sha256}


READ_AHEAD = 64  # members in flight while publishing: <= 3 x 64 objects held, whatever the file's size


def read_members(store: ObjectStore, pool: Executor, entries: Iterable[Mapping[str, Any]],
                 window: int = READ_AHEAD) -> Iterator[tuple[Mapping[str, Any], bytes, bytes, bytes]]:
    """(entry, json fragment, jsonl fragment, exports bundle) in member order, read ahead with a
    bounded window on a shared pool (constant memory). Each object is its own task, so the three
    reads of a member overlap as well as the members: against S3 the cost is about
    3N x latency / (pool threads), not 3N x latency / 8 sequential-ish round trips."""
    keys = ("json_fragment_key", "jsonl_fragment_key", "exports_fragment_key")
    pending: deque[Any] = deque()
    for entry in entries:
        pending.append((entry, [pool.submit(store.get, OUTPUT_BUCKET, entry[k]) for k in keys]))
        if len(pending) >= window:
            e, futs = pending.popleft()
            yield (e, *(f.result() for f in futs))
    while pending:
        e, futs = pending.popleft()
        yield (e, *(f.result() for f in futs))


def stream_members(store: ObjectStore, entries: Iterable[Mapping[str, Any]],
                   window: int = READ_AHEAD) -> Iterator[tuple[Mapping[str, Any], bytes, bytes, bytes]]:
    """`read_members` on the process's shared I/O pool (storage.io_pool)."""
    from ..storage import io_pool

    return read_members(store, io_pool(), entries, window)


class VersionWriter:
    """Writes every artifact of one version into `folder` (local temporary files)."""

    def __init__(self, folder: Path, *, file_id: str, version: int, header: FileHeader, policy: TrainingPolicy,
                 model: ChatModel, export_figures: dict[str, Any], source_warnings: Counter[str]) -> None:
        self.folder, self.file_id, self.version, self.header = folder, file_id, version, header
        self.policy, self.model, self.figures = policy, model, export_figures
        self.source_warnings = source_warnings
        self.dataset = DatasetFiles(folder, policy, _Out)  # splits, duplicates, coverage, card (issue 12)
        self.outs = {name: _Out(folder / ARTIFACTS[name][0]) for name in ("json", "jsonl", *EXPORT_FORMATS, "report")}
        self._members = open(folder / "members.part", "wb")
        self.members = 0
        self.outs["json"].write(json_head(header))
        self.outs["jsonl"].write(jsonl_meta_line(header.file_name, header.total_training_pairs))
        report_head = orjson.dumps({
            "file_id": file_id, "file_name": header.file_name, "version": version,
            "policy": policy.model_dump(mode="json"), "model": model_identity(model),
            "summary": {"conversations": header.total_conversations, "blocking_errors": 0,
                        "source_warnings_by_code": dict(sorted(source_warnings.items())),
                        "exports": export_figures},
        }, option=_SORTED)
        self.outs["report"].write(report_head[:-1] + b',"conversations":[')

    def add(self, entry: Mapping[str, Any], json_fragment: bytes, jsonl_lines: bytes, exports: bytes) -> None:
        layout = entry["exports_layout"]
        first = self.members == 0
        self.outs["json"].write(b"\n" if first else b",\n")
        self.outs["json"].write(json_fragment)
        self.outs["jsonl"].write(jsonl_lines)
        try:
            sections = {name: bundle.section(exports, layout, name) for name in bundle.SECTIONS}
        except ValueError as exc:  # stored state that does not fit: say whose
            raise ValueError(f"conversation {entry['conversation_id']}: {exc}") from None
        for fmt in EXPORT_FORMATS:
            self.outs[fmt].write(sections[fmt])
        report = sections[bundle.REPORT_SECTION]
        lead = orjson.dumps({"conversation_id": entry["conversation_id"],
                             "source_warnings": entry.get("warnings") or []}, option=_SORTED)
        self.outs["report"].write((b"" if first else b",") + lead[:-1] + b',"exports":' + report + b"}")
        placed = self.dataset.add(entry, jsonl_lines, exports)
        self._members.write((b"" if first else b",") + orjson.dumps({
            "conversation_id": entry["conversation_id"], "source_file": entry["source_file"],
            "source_sha256": entry["source_sha256"], **placed}, option=_SORTED))
        self.members += 1

    def finish(self) -> dict[str, dict[str, Any]]:
        """Close every artifact, write the configs and the manifest; {name: {file, size, sha256, lines}}."""
        self.outs["json"].write(b"\n  ]\n}\n")  # (no version without a member is ever published)
        quality = self.dataset.close()
        self.outs["report"].write(b'],"dataset_quality":' + orjson.dumps(quality, option=_SORTED) + b"}\n")
        for out in self.outs.values():
            out.close()
        self.outs.update(self.dataset.outs)
        self._members.close()
        extra = {
            "axolotl_config": axolotl_datasets_yaml(self.policy).encode(),  # (naming axolotl.jsonl)
            "dataset_info": orjson.dumps(llamafactory_dataset_info(_dataset_name(self.header.file_name)),
                                         option=_INDENTED) + b"\n",  # (declaring sharegpt.jsonl)
        }
        for name, data in extra.items():
            out = _Out(self.folder / ARTIFACTS[name][0])
            out.write(data)
            out.close()
            self.outs[name] = out
        artifacts = {name: {"file": ARTIFACTS[name][0], "content_type": ARTIFACTS[name][1], "size": out.size,
                            "sha256": out.sha.hexdigest(), "lines": out.lines}
                     for name, out in sorted(self.outs.items())}
        for fmt in EXPORT_FORMATS:  # the manifest's counts are the files' lines, checked here
            expected = self.figures["formats"][fmt]["lines"]
            if artifacts[fmt]["lines"] != expected:
                raise RuntimeError(f"{fmt} export has {artifacts[fmt]['lines']} lines, its statistics {expected}")
        card = _Out(self.folder / ARTIFACTS["card"][0])
        card.write(self.dataset.card(file_id=self.file_id, file_name=self.header.file_name, version=self.version,
                                     model=model_identity(self.model), export_figures=self.figures,
                                     source_warnings=self.source_warnings, artifacts=artifacts))
        card.close()
        artifacts["card"] = {"file": ARTIFACTS["card"][0], "content_type": ARTIFACTS["card"][1], "size": card.size,
                             "sha256": card.sha.hexdigest(), "lines": card.lines}
        self.outs["manifest"] = self._write_manifest(artifacts)
        m = self.outs["manifest"]
        artifacts["manifest"] = {"file": ARTIFACTS["manifest"][0], "content_type": ARTIFACTS["manifest"][1],
                                 "size": m.size, "sha256": m.sha.hexdigest(), "lines": m.lines}
        return artifacts

    def _write_manifest(self, artifacts: dict[str, dict[str, Any]]) -> _Out:
        head = orjson.dumps({
            "builder": {"name": "lorafiles", "version": __version__, "exports": BUILDER_VERSION},
            "file": {"id": self.file_id, "name": self.header.file_name, "version": self.version,
                     "last_updated": self.header.last_updated},
            "policy": self.policy.model_dump(mode="json"), "policy_digest": self.policy.digest(),
            "model": model_identity(self.model),
            "text_fixes": {"fix_literal_escapes": self.policy.fix_literal_escapes,
                           "literal_escapes_fixed": self.figures["changes"]["literal_escapes_fixed"],
                           "applies_to": "exports only; training.json and training.jsonl carry the text as written"},
            "format_notes": format_notes(),
            "artifacts": artifacts,
            "tokens": {fmt: self.figures["formats"][fmt] for fmt in EXPORT_FORMATS},
            "exclusions": self.figures["exclusions"], "trims": self.figures["trims"],
            "changes": self.figures["changes"],
            "member_count": self.members,
            "dataset": self.dataset.manifest_section(artifacts),
        }, option=_SORTED)
        out = _Out(self.folder / ARTIFACTS["manifest"][0])
        out.write(head[:-1] + b',"members":[')
        with open(self.folder / "members.part", "rb") as part:
            while chunk := part.read(1 << 20):
                out.write(chunk)
        out.write(b"]}\n")
        out.close()
        return out


def _dataset_name(file_name: str) -> str:
    """LLaMA-Factory dataset key: the file name in lower snake case (ASCII letters, digits, `_`)."""
    name = "".join(c if c.isascii() and c.isalnum() else "_" for c in file_name.lower())
    return "lorafiles_" + ("_".join(part for part in name.split("_") if part) or "training_file")
