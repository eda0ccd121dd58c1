"""Where manifests, journals and reports live when the user does not say."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from artifact_gc.errors import GCError, StorageError
from artifact_gc.storage.urls import is_remote, local_path, os_path, url_to_fs

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


def resolve_output(out: str | None, mark_id: str, started: datetime,
                   storage_options: dict[str, Any] | None = None) -> str:
    """A file URL for a new manifest: ``--out`` as a file, or a new name in a directory.

    ``storage_options`` reach a remote ``--out`` (an endpoint, credentials) when it is
    probed for being a directory."""
    directory = out if out is not None else default_manifest_dir()
    if out is not None and not out.endswith("/") and out.endswith(MANIFEST_SUFFIX):
        return out
    if out is not None and not out.endswith("/"):
        on_disk = os_path(out)
        if on_disk is not None:
            if not os.path.isdir(on_disk):
                return out
        else:
            fs, path = url_to_fs(out, storage_options)
            if not fs.isdir(path):
                return out
    return directory.rstrip("/") + "/" + manifest_name(mark_id, started)


def check_writable(url: str, what: str = "manifest", *,
                   storage_options: dict[str, Any] | None = None) -> None:
    """Fail early, before a long mark, when ``url`` (a local file to be) cannot be written.

    Permission bits do not stop root, so the parent directory is created and a probe
    file is written and removed: the one test that every kind of refusal (a regular
    file in the way, a read-only mount, /proc) fails. A remote location gets the same
    probe object, written and removed with ``storage_options``.
    """
    if is_remote(url):
        with writing(url, what):
            fs, remote = url_to_fs(url, storage_options)
            marker = f"{remote.rsplit('/', 1)[0]}/.probe-{uuid.uuid4().hex[:8]}"
            fs.pipe_file(marker, b"")
            fs.rm_file(marker)
        return
    path = Path(local_path(url))
    with writing(url, what):
        for ancestor in path.parents:
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise NotADirectoryError(f"{ancestor} is a file, not a directory")
                break
        if path.is_dir():
            raise IsADirectoryError(f"{path} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()


@contextlib.contextmanager
def writing(url: str, what: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn a failure to write ``url`` (OSError, or any of ``errors``) into a
    :class:`StorageError` that names the output, exit code 9."""
    caught: tuple[type[BaseException], ...] = (OSError, *errors)
    try:
        yield
    except GCError:
        raise
    except caught as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in reason:
            reason = f"{reason}: {exc.filename}"
        raise StorageError(f"cannot write the {what} to {url}: {reason}", path=url) from exc
