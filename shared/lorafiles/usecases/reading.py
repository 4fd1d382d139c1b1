"""Reading: an owner's files, jobs and versions, and downloads of their artifacts."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..db.repository import Repository
from ..domain.rules import download_name
from ..errors import InvalidRequest, LorafilesError, NotFound
from .common import FORMATS, OUTPUT_BUCKET, UseCase


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
        if fmt not in FORMATS:
            raise InvalidRequest(f"format must be json or jsonl, not {fmt!r}")
        with self.db.connection() as conn:
            repo = Repository(conn)
            f = repo.file(file_id, owner_id)
            if f is None:
                raise NotFound(f"training file {file_id} not found")
            number = version if version is not None else f["current_version"]
            v = repo.version(file_id, number) if isinstance(number, int) and 1 <= number < 2**31 else None
        if v is None:
            raise NotFound(f"training file {file_id} has no version {number}")
        return {"bucket": OUTPUT_BUCKET, "key": v[f"{fmt}_path"], "version": number, "filename": download_name(f["name"], fmt),
                "size": v[f"{fmt}_size"], "sha256": v[f"{fmt}_sha256"]}

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
