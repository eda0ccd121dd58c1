"""Collection records: one JSON file per ``gc collect`` run, beside its manifests.

A collection may write several manifests (one per rule), which ``gc history`` lists
one by one; the record says which of them belong together, what the brakes decided and
what the sweep did. The next collection of the same store reads the newest record to
judge a jump in candidates, and to carry the counters of the metrics forward.
"""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from artifact_gc.manifest.locations import writing
from artifact_gc.metadb.fingerprint import DatabaseFingerprint
from artifact_gc.storage.urls import is_remote, local_path, url_to_fs

RECORD_PREFIX = "collection-"
RECORD_SUFFIX = ".json"


def record_name(collection_id: str, started: datetime) -> str:
    return f"{RECORD_PREFIX}{started.strftime('%Y%m%dT%H%M%SZ')}-{collection_id[:8]}" \
           f"{RECORD_SUFFIX}"


def write_record(location: str, name: str, record: dict[str, Any],
                 storage_options: dict[str, Any] | None = None) -> str:
    """Publish ``record`` as ``location/name`` in one step (a reader never sees half of
    it); return its URL."""
    url = location.rstrip("/") + "/" + name
    data = json.dumps(record, indent=2, sort_keys=True).encode()
    with writing(url, "collection record"):
        if is_remote(url):
            fs, path = url_to_fs(url, storage_options)
            fs.pipe_file(path, data)  # an object store's PUT is atomic
        else:
            write_atomically(Path(local_path(url)), data)
    return url


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file in its directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def previous_record(location: str, database: dict[str, Any],
                    storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The newest record in ``location`` of a collection of the same store that got as
    far as counting its candidates; None when there is none. A record that cannot be
    read is skipped: it was not written by a finished collection."""
    fs, path = url_to_fs(location, storage_options)
    if not fs.exists(path):
        return None
    found = sorted(fs.glob(path.rstrip("/") + f"/{RECORD_PREFIX}*{RECORD_SUFFIX}"),
                   reverse=True)
    this = DatabaseFingerprint.from_dict(database)
    for candidate in found:
        try:
            record = json.loads(fs.cat_file(candidate))
            other = DatabaseFingerprint.from_dict(record["database_fingerprint"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        totals = record.get("totals") or {}
        if other.same_store(this) and totals.get("candidates") is not None:
            record["record"] = fs.unstrip_protocol(candidate) if is_remote(location) \
                else str(candidate)
            return dict(record)
    return None
