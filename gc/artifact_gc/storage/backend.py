"""The storage seam: one :class:`Backend` protocol, found by fsspec protocol name.

The sweep deletes a store's files through the backend :func:`open_backend` picks for
the store's fsspec filesystem, and never asks which one it got. As in fsspec's own
``registry.py``, backends are known by dotted name and imported on first use:

- ``file``/``local``: :class:`artifact_gc.storage.local.LocalBackend`;
- ``s3``/``s3a``: :class:`artifact_gc.storage.s3.S3Backend` (s3fs: ranged listings and
  our own ``DeleteObjects``);
- ``gs``/``gcs``: :class:`artifact_gc.storage.gcs.GCSBackend` (gcsfs: ranged listings
  and our own batch deletes of 100 calls);
- ``az``/``abfs``/``abfss``: :class:`artifact_gc.storage.azure.AzureBackend` (adlfs:
  listings and our own blob batch deletes of 256 subrequests);
- any other protocol: :class:`artifact_gc.storage.generic.GenericBackend` (fsspec's
  ``rm``).

Every backend keeps the same guarantees: the root fence right before it deletes
(storage/fence.py), retries of transient errors only (storage/retry.py), a path that
is already gone counts as deleted, every path is checked to be gone before it is
reported deleted, per-path failures are reported, and ``limits`` is honoured.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from artifact_gc.storage.limits import RequestLimits
from artifact_gc.storage.retry import RetryCounter, RetryPolicy
from artifact_gc.storage.urls import protocols
from artifact_gc.zenml.stores import ArtifactStore


@dataclass
class DeleteOutcome:
    """What happened to the paths of one call to :meth:`Backend.delete`."""

    deleted: set[str] = field(default_factory=set)
    failed: dict[str, str] = field(default_factory=dict)


class Backend(Protocol):
    """The files of one artifact store, as the sweep deletes them."""

    def delete(self, paths: Sequence[str], on_chunk: Callable[[int], None] | None = None
               ) -> DeleteOutcome:
        """Delete every path (recursively); report which are gone and which failed.

        ``on_chunk(n)`` is called as work completes (``n`` paths deleted, 0 for a
        request that deleted none yet).

        A backend that finds a path's objects by listing may also take ``known``: path
        -> the object URLs recorded under it at mark time (``object_keys``). It deletes
        those without listing first, and still lists the paths afterwards to prove
        them empty. The sweep passes ``known`` only when a manifest recorded keys,
        which ``gc mark --sizes`` does for S3 stores only."""
        ...

    def close(self) -> None:
        """Release threads and connections; the backend is not used again."""
        ...

    def list_objects(self) -> Iterator[Any]:
        """Every object under the root, as Arrow record batches of
        :data:`artifact_gc.storage.listing.LISTING_SCHEMA`; raises ``StorageError``
        rather than end a listing that is not complete."""
        ...

    def remove_empty_dirs(self, dirs: Sequence[str]) -> int:
        """Remove each of ``dirs`` (inside the root, deepest first) that is empty; a
        store without directories has none to remove. Returns how many went."""
        ...


class BackendType(Protocol):
    """A backend class, as the registry holds it."""

    def accepts(self, fs: Any) -> bool:
        """Whether this backend can drive ``fs`` (one of whose protocols it is known by)."""
        ...

    def __call__(self, store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits, retry: RetryPolicy) -> Backend:
        ...


#: fsspec protocol name -> ``module:Class`` of its backend, imported on first use.
known_backends: dict[str, str] = {
    "file": "artifact_gc.storage.local:LocalBackend",
    "local": "artifact_gc.storage.local:LocalBackend",
    "s3": "artifact_gc.storage.s3:S3Backend",
    "s3a": "artifact_gc.storage.s3:S3Backend",
    "gs": "artifact_gc.storage.gcs:GCSBackend",
    "gcs": "artifact_gc.storage.gcs:GCSBackend",
    "az": "artifact_gc.storage.azure:AzureBackend",
    "abfs": "artifact_gc.storage.azure:AzureBackend",
    "abfss": "artifact_gc.storage.azure:AzureBackend",
}
#: The backend of a filesystem none of whose protocols is known.
GENERIC_BACKEND = "artifact_gc.storage.generic:GenericBackend"

_registry: dict[str, BackendType] = {}


def register_backend(protocol: str, backend: BackendType | str, *,
                     clobber: bool = False) -> None:
    """Make ``backend`` (a class, or its ``module:Class`` name) the backend of ``protocol``."""
    if not clobber and (protocol in _registry or protocol in known_backends):
        raise ValueError(f"a storage backend is already registered for {protocol!r}")
    _registry.pop(protocol, None)
    if isinstance(backend, str):
        known_backends[protocol] = backend
    else:
        _registry[protocol] = backend


def backend_class(protocol: str) -> BackendType | None:
    """The backend registered for ``protocol``, imported now if need be; None if none is."""
    if protocol not in _registry:
        if protocol not in known_backends:
            return None
        _registry[protocol] = _import(known_backends[protocol])
    return _registry[protocol]


def _import(name: str) -> BackendType:
    module, _, attribute = name.partition(":")
    try:
        found: BackendType = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"storage backend {name} could not be imported: {exc}") from exc
    return found


def open_backend(store: ArtifactStore, root: str, fs: Any, *, workers: int,
                 retries: RetryCounter, limits: RequestLimits,
                 retry: RetryPolicy | None = None) -> Backend:
    """The backend that deletes the files of ``store`` (whose root is ``root``) on ``fs``.

    The first of ``fs``'s protocols with a registered backend that accepts ``fs``
    decides; a filesystem none of whose protocols is known gets the generic one.
    """
    chosen: BackendType | None = None
    for protocol in protocols(fs):
        candidate = backend_class(protocol)
        if candidate is not None and candidate.accepts(fs):
            chosen = candidate
            break
    if chosen is None:
        chosen = _import(GENERIC_BACKEND)
    return chosen(store, root, fs, workers=max(1, workers), retries=retries, limits=limits,
                  retry=retry or RetryPolicy())


def default_filesystem(store: ArtifactStore) -> Any:
    """The fsspec filesystem of ``store``, through fsspec's registry."""
    import fsspec

    if store.root is None:
        raise ValueError(f"artifact store {store.id} has no root")
    fs, _ = fsspec.url_to_fs(store.root, **store.storage_options)
    return fs
