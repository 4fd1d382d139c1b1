"""Reading: an owner's files, jobs and versions, and downloads of their artifacts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import orjson

from ..db.repository import Repository
from ..domain.exports import EXPORT_FORMATS, view_of
from ..domain.preview import marked_render
from ..domain.rules import download_name as safe_download_name
from ..errors import InvalidRequest, LorafilesError, NotFound
from ..tokens import get_model
from .common import ARTIFACTS, FORMATS, OUTPUT_BUCKET, UseCase


class Reading(UseCase):
    def list_files(self, owner_id: str) -> list[dict[str, Any]]:
        with self.db.connection() as conn:
            return Repository(conn).files(owner_id)

    def show_file(self, owner_id: str, file_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            jobs = repo.jobs_for_file(file_id, limit=1)
            return {"file": f, "members": repo.members(file_id), "versions": repo.versions(file_id),
                    "current_job": jobs[0] if jobs else None}

    def get_job(self, owner_id: str, job_id: str) -> dict[str, Any]:
        with self.db.connection() as conn:
            job = Repository(conn).job(job_id, owner_id)
        if job is None:
            raise NotFound(f"job {job_id} not found")
        return job

    def artifact(self, owner_id: str, file_id: str, fmt: str, version: int | None = None) -> dict[str, Any]:
        """Where one artifact of a version lives (the owner's only)."""
        if fmt not in ARTIFACTS:
            raise InvalidRequest(f"format must be one of {', '.join(ARTIFACTS)}, not {fmt!r}")
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            number = version if version is not None else f["current_version"]
            # (a bool is an int to Python, not a version number; any other int is looked up)
            v = repo.version(file_id, number) if type(number) is int else None
        if v is None:
            raise NotFound(f"training file {file_id} has no version {number}")
        a = (v["artifacts"] or {}).get(fmt)
        if a is None and fmt in FORMATS:  # versions published before the exports existed
            a = {"path": v[f"{fmt}_path"], "size": v[f"{fmt}_size"], "sha256": v[f"{fmt}_sha256"],
                 "content_type": ARTIFACTS[fmt][1]}
        if a is None:
            raise NotFound(f"version {number} of training file {file_id} has no {fmt} artifact "
                           "(it was published before trainer exports existed; regenerate the file)")
        return {"bucket": OUTPUT_BUCKET, "key": a["path"], "version": number,
                "filename": download_name(f["name"], number, fmt), "size": a["size"], "sha256": a["sha256"],
                "content_type": a["content_type"], "lines": a.get("lines")}

    def preview(self, owner_id: str, file_id: str, fmt: str = "openai", n: int = 3,
                version: int | None = None) -> dict[str, Any]:
        """The first `n` lines of an export, each rendered through the version's target model's chat
        template with the trained spans marked (what the trainer will see)."""
        if fmt not in EXPORT_FORMATS:
            raise InvalidRequest(f"preview format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
        if n < 1:
            raise InvalidRequest(f"--n must be at least 1, not {n}")
        a = self.artifact(owner_id, file_id, fmt, version)
        with self.db.connection() as conn:
            v = Repository(conn).version(file_id, a["version"])
        model = get_model((v["policy"] or {}).get("target_model") or self.settings.target_model)
        examples = []
        with self.store.open_stream(a["bucket"], a["key"]) as src:
            for number, line in enumerate(_lines(src), start=1):
                if number > n:
                    break
                messages, trained = view_of(fmt, orjson.loads(line))
                counted = model.count(messages, trained)
                examples.append({"line": number, "text": marked_render(model, messages, trained),
                                 "total_tokens": counted.total, "trainable_tokens": counted.trainable})
        return {"file_id": file_id, "version": a["version"], "format": fmt, "model": model.id,
                "lines": a.get("lines"), "examples": examples}

    def presign_download(self, owner_id: str, file_id: str, fmt: str, version: int | None = None,
                         expires_in: int | None = None) -> dict[str, Any]:
        a = self.artifact(owner_id, file_id, fmt, version)
        ttl = expires_in or self.settings.signed_url_ttl
        url = self.store.signed_url(a["bucket"], a["key"], ttl, download_name=a["filename"])
        return {"url": url, "expires_in": ttl, "filename": a["filename"], "version": a["version"],
                "size": a["size"], "sha256": a["sha256"]}

    def download(self, owner_id: str, file_id: str, fmt: str, out: Path, version: int | None = None) -> dict[str, Any]:
        """Write an artifact to the local file `out`, completely or not at all (a temporary file
        next to it is renamed into place); a path that cannot be written is a LorafilesError."""
        a = self.artifact(owner_id, file_id, fmt, version)
        out = Path(out)
        tmp = None
        try:
            with self.store.open_stream(a["bucket"], a["key"]) as src, \
                    tempfile.NamedTemporaryFile("wb", dir=out.parent, prefix=f".{out.name}.", delete=False) as dst:
                tmp = Path(dst.name)
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(tmp, out)
        except OSError as exc:
            raise LorafilesError(f"cannot write {out}: {exc.strerror or exc}") from None
        finally:
            if tmp is not None and tmp.exists():
                tmp.unlink()
        return {**a, "path": str(out)}


def download_name(file_name: str, version: int, fmt: str) -> str:
    """The name a download is saved under (made safe for headers by `rules.download_name`):
    `<file name>.json|.jsonl` for the v4 files (as before), `<file name>-v<N>-<artifact file>` for
    the exports, reports and configs."""
    if fmt in FORMATS:
        return safe_download_name(file_name, fmt)
    stem, ext = ARTIFACTS[fmt][0].rsplit(".", 1)
    return safe_download_name(f"{file_name}-v{version}-{stem}", ext)


def _lines(src: BinaryIO, chunk: int = 1 << 16) -> Iterator[bytes]:
    """Lines of a stream, read in chunks (an export can be large; a preview reads its start)."""
    rest = b""
    while data := src.read(chunk):
        rest += data
        *complete, rest = rest.split(b"\n")
        yield from (line for line in complete if line)
    if rest:
        yield rest
