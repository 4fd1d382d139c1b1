"""Local import: register enriched JSON files as completed conversations of a user (CLI, demos)."""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Iterable

from ..db.repository import Repository, is_uuid
from ..domain.enriched import parse_enriched
from ..domain.summary import conversation_stats
from ..errors import InvalidRequest
from .common import INPUT_BUCKET, UseCase


class LocalImport(UseCase):
    def import_files(self, owner_id: str, paths: Iterable[Path], batch_id: str | None = None) -> dict[str, Any]:
        """Register enriched JSON files as completed conversations of `owner_id` (local use, demos)."""
        if batch_id is not None:
            if not is_uuid(batch_id):
                raise InvalidRequest(f"batch id {batch_id!r} is not a UUID")
            batch_id = str(uuid.UUID(str(batch_id)))
        imported, refused = [], []
        limits = self.settings.enriched_limits
        for path in paths:
            try:
                size = Path(path).stat().st_size
                if size > limits.max_bytes:  # refused without reading it
                    refused.append({"file": str(path), "problems": [{
                        "code": "file_too_large", "field": None, "severity": "error",
                        "message": f"the file is {size} bytes; the limit is {limits.max_bytes} bytes per enriched "
                                   "file (LORAFILES_MAX_ENRICHED_BYTES)"}]})
                    continue
                blob = Path(path).read_bytes()
            except OSError as exc:  # a directory named *.json, no permission, vanished meanwhile
                refused.append({"file": str(path), "problems": [{
                    "code": "unreadable", "field": None, "severity": "error",
                    "message": f"cannot read the file: {exc.strerror or exc}"}]})
                continue
            parsed = parse_enriched(blob, source=str(path), limits=limits)
            if not parsed.ok:
                refused.append({"file": str(path), "problems": [e.model_dump() for e in parsed.report.errors]})
                continue
            cid = parsed.report.conversation_id
            key = f"{owner_id}/{cid}/enriched.json"
            sc = parsed.scaffolding()
            stats = conversation_stats(parsed, sc)
            with self.db.connection() as conn:  # the object is written inside the row's transaction
                repo = Repository(conn)
                mine = repo.upsert_conversation({
                    "conversation_id": cid, "created_by": owner_id, "enriched_file_path": key,
                    "enriched_file_size": len(blob), "persona_key": sc.persona_key,
                    "emotional_arc_key": sc.emotional_arc_key, "topic_key": sc.training_topic_key,
                    "turn_count": stats.pairs,
                    # (an accepted file has a trainable pair, so a mean quality; the column holds one decimal)
                    "quality_score": round(stats.quality_score, 1),
                })
                if not mine:
                    refused.append({"file": str(path), "problems": [{
                        "code": "conversation_taken", "field": "dataset_metadata.dataset_name", "severity": "error",
                        "message": f"conversation {cid} belongs to another user"}]})
                    continue
                self.store.put(INPUT_BUCKET, key, blob)
                if batch_id:
                    repo.ensure_batch_link(batch_id, cid, owner_id)
            imported.append({"conversation_id": cid, "file": str(path), "warnings": len(parsed.report.warnings)})
        return {"imported": imported, "refused": refused}

    def owned_conversation_ids(self, owner_id: str) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute("select conversation_id from conversations where created_by = %s "
                                "order by created_at, conversation_id", (owner_id,)).fetchall()
        return [r["conversation_id"] for r in rows]
