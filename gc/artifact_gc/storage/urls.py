"""What a location is: local or remote, and the fsspec filesystem that reaches it.

Every module asks here instead of testing ``"://" in url`` itself, so that the rule
(and what a ``file://`` URL means) is written once.
"""

from __future__ import annotations

from typing import Any


def is_remote(url: str) -> bool:
    """True for a URL with a scheme other than ``file://`` (``s3://``, ``gs://``, ...)."""
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    """A local location as a plain path (``file://`` stripped)."""
    return url[len("file://"):] if url.startswith("file://") else url


def os_path(url: str) -> str | None:
    """For an absolute local path (or ``file://`` URL), the path fsspec's local
    filesystem would give for it (the trailing ``/`` stripped), so that the ``os``
    module can act on it without importing fsspec (a tenth of a second); None for
    anything else (remote, relative, ``~``), which fsspec's own rules resolve."""
    path = local_path(url)
    if is_remote(url) or not path.startswith("/"):
        return None
    return path.rstrip("/") or "/"


def options_for(url: str, storage_options: dict[str, Any] | None) -> dict[str, Any]:
    """The ``--storage-option`` values that apply to ``url``: all of them for a remote
    URL, none for a local path (the local filesystem takes no credentials)."""
    return dict(storage_options or {}) if is_remote(url) else {}


def url_to_fs(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and path of ``url``, through fsspec's registry.

    A missing backend raises fsspec's own ImportError, which names the package to
    install (``s3fs``, ``gcsfs``, ``adlfs``).
    """
    import fsspec

    fs, path = fsspec.url_to_fs(url, **options_for(url, storage_options))
    return fs, str(path)


def protocols(fs: Any) -> tuple[str, ...]:
    """The protocols an fsspec filesystem answers to, always as a tuple."""
    protocol = fs.protocol
    return tuple(protocol) if isinstance(protocol, tuple | list) else (str(protocol),)


def is_local_fs(fs: Any) -> bool:
    """True for a filesystem on this machine's disks."""
    return "file" in protocols(fs)
