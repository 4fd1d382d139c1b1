"""Version diff (issue 12, item 5): what changed between two published versions of one of the
owner's files. Reads each version's `manifest.json` (the complete record of that version), checks
it against the size and sha256 the database recorded when the version was published and against
the file and version it must describe, then hands both to `domain.quality.diff.version_diff`."""
from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ..domain.quality.diff import ManifestInvalid, version_diff
from ..errors import StoredDataInvalid
from .common import UseCase
from .reading import Reading

MAX_MANIFEST_BYTES = 256 << 20  # ~1 million members; a larger "manifest" is not one the builder wrote


class VersionDiffing(UseCase):
    def diff(self, owner_id: str, file_id: str, from_version: int, to_version: int) -> dict[str, Any]:
        old = self._manifest(owner_id, file_id, from_version)
        new = self._manifest(owner_id, file_id, to_version)
        try:
            result = version_diff(old, new, old_label=_label(file_id, from_version),
                                  new_label=_label(file_id, to_version))
        except ManifestInvalid as exc:
            raise StoredDataInvalid(str(exc)) from None
        return {"file_id": file_id, **result}

    def _manifest(self, owner_id: str, file_id: str, version: int) -> dict[str, Any]:
        # Reading.artifact: 404 for another owner's file, a missing version, or a version published
        # before manifests existed (its message says to regenerate)
        a = Reading(self.ctx).artifact(owner_id, file_id, "manifest", version)
        label = _label(file_id, version)
        if not isinstance(a["size"], int) or a["size"] > MAX_MANIFEST_BYTES:
            raise StoredDataInvalid(f"{label}: its recorded size {a['size']!r} is not that of a manifest")
        data = self.store.get(a["bucket"], a["key"])
        if len(data) != a["size"] or hashlib.sha256(data).hexdigest() != a["sha256"]:
            raise StoredDataInvalid(f"{label}: the stored object {a['key']} does not match the size and sha256 "
                                    "recorded when the version was published")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise StoredDataInvalid(f"{label}: not JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise StoredDataInvalid(f"{label}: the manifest is not a JSON object")
        described = doc["file"] if isinstance(doc.get("file"), dict) else {}
        if described.get("id") != file_id or described.get("version") != version:
            raise StoredDataInvalid(f"{label}: the manifest describes file {described.get('id')!r} version "
                                    f"{described.get('version')!r}")
        return doc


def _label(file_id: str, version: int) -> str:
    return f"manifest.json of version {version} of training file {file_id}"
