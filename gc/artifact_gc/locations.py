"""Where manifests, journals and reports live when the user does not say."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

MANIFEST_SUFFIX = ".parquet"


def default_manifest_dir() -> str:
    """``$ARTIFACT_GC_HOME``, else ``$XDG_DATA_HOME/artifact-gc/manifests``."""
    configured = os.environ.get("ARTIFACT_GC_HOME")
    if configured:
        return configured.rstrip("/")
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "artifact-gc" / "manifests")


def manifest_name(mark_id: str, started: datetime) -> str:
    return f"mark-{started.strftime('%Y%m%dT%H%M%SZ')}-{mark_id[:8]}{MANIFEST_SUFFIX}"


def resolve_output(out: str | None, mark_id: str, started: datetime) -> str:
    """A file URL for a new manifest: ``--out`` as a file, or a new name in a directory."""
    import fsspec

    directory = out if out is not None else default_manifest_dir()
    if out is not None and not out.endswith("/") and out.endswith(MANIFEST_SUFFIX):
        return out
    if out is not None and not out.endswith("/"):
        fs, path = fsspec.url_to_fs(out)
        if not fs.isdir(path):
            return out
    return directory.rstrip("/") + "/" + manifest_name(mark_id, started)
