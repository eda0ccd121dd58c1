"""The Azure Blob backend (adlfs): prefix listings and blob batch deletes of 256.

The requests go out on the adlfs filesystem's own ``BlobServiceClient`` (so its
credentials are the ones adlfs found: a connection string, an account key, a SAS
token, a service principal, or ``DefaultAzureCredential``, the SDK's standard
chain), but we call ``list_blobs`` and ``delete_blobs`` ourselves, because adlfs's
``rm(list)`` asks ``exists`` of every path, one request each, and reports no
per-blob outcome.

A blob batch (``POST ?comp=batch``) carries at most 256 ``DELETE`` subrequests; the
answer is a 202 whose subresponses each carry their own status: 202 deleted, 404
gone, 429 and 5xx to send again, anything else a failure of that blob only.
Snapshots go with their blob (``delete_snapshots="include"``): a blob that has them
cannot be deleted otherwise.

Azure's ``List Blobs`` cannot start at a key: a run's range is listed from its
common prefix, 5,000 names a page, and stops as soon as a page passes the range's
end. The loop around it (runs, retries, proof) is storage/buckets.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from artifact_gc.storage.buckets import KeyAnswer, ObjectClient, ObjectStoreBackend, TransientError
from artifact_gc.storage.flat_listing import FlatPage, datetimes_us

#: A blob batch holds at most 256 subrequests.
MAX_BATCH_SUBREQUESTS = 256
#: ``List Blobs`` returns at most 5,000 names a page.
MAX_LIST_ITEMS = 5000

#: The SDK's own retries are off for our calls (``retry_total=0``): ours wait for the
#: rate limiter and back off on throttling, and the SDK's would multiply with them (an
#: unreachable endpoint then took minutes to report).
NO_SDK_RETRIES = 0

_THROTTLE = frozenset({429, 503})
_TRANSIENT = _THROTTLE | frozenset({408, 500, 502, 504})
_SCHEMES = ("az://", "abfs://", "abfss://")


def is_azure(fs: Any) -> bool:
    """True for an adlfs filesystem."""
    protocol = fs.protocol
    protocols = tuple(protocol) if isinstance(protocol, tuple | list) else (str(protocol),)
    return bool({"az", "abfs", "abfss"} & set(protocols)) and hasattr(fs, "service_client")


def split_path(path: str) -> tuple[str, str]:
    """``az://container/a/b`` (or ``abfs://container@account.dfs.core.windows.net/a/b``)
    -> (``container``, ``a/b``). The key is taken as written."""
    bare = path
    for scheme in _SCHEMES:
        if path.startswith(scheme):
            bare = path[len(scheme):]
            break
    container, _, key = bare.partition("/")
    container = container.split("@", 1)[0]
    return container, key.rstrip("/")


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


class AzureClient:
    """``List Blobs`` pages and blob batch deletes of one container, through adlfs."""

    max_delete = MAX_BATCH_SUBREQUESTS

    def __init__(self, fs: Any, container: str) -> None:
        self.fs = fs
        self.container = container

    def is_transient(self, exc: BaseException) -> bool:
        name = type(exc).__name__
        if name in ("ServiceRequestError", "ServiceResponseError", "ServiceRequestTimeoutError",
                    "ServiceResponseTimeoutError", "IncompleteReadError",
                    "ClientConnectorError", "ServerDisconnectedError", "ClientOSError"):
            return True
        status = _status(exc)
        if status is not None:
            return status in _TRANSIENT
        return isinstance(exc, ConnectionError | TimeoutError)

    def _run(self, coroutine: Any) -> Any:
        from fsspec.asyn import sync

        async def run() -> Any:
            try:
                return await coroutine()
            except Exception as exc:
                status = _status(exc)
                if status in _TRANSIENT:
                    raise TransientError(f"HTTP {status} from Azure Blob Storage "
                                         f"({type(exc).__name__})",
                                         throttle=status in _THROTTLE) from None
                raise

        return sync(self.fs.loop, run)

    def list_page(self, prefix: str, start: str, stop: str, token: str | None
                  ) -> tuple[list[str], list[int], str | None]:
        async def page() -> tuple[list[str], list[int], str | None]:
            container = self.fs.service_client.get_container_client(self.container)
            pages = container.list_blobs(name_starts_with=prefix or None,
                                         results_per_page=MAX_LIST_ITEMS,
                                         retry_total=NO_SDK_RETRIES
                                         ).by_page(continuation_token=token)
            names: list[str] = []
            sizes: list[int] = []
            async for blob in await pages.__anext__():
                names.append(str(blob.name))
                sizes.append(int(blob.size or 0))
            return names, sizes, pages.continuation_token or None

        names, sizes, next_token = self._run(page)
        ordered = sorted(zip(names, sizes, strict=True))
        return [n for n, _ in ordered], [s for _, s in ordered], next_token

    def list_flat_page(self, prefix: str, token: str | None) -> FlatPage:
        """One page of the flat listing of ``prefix`` (``List Blobs`` without a
        delimiter), with sizes, last-modified times and metadata: a blob whose metadata
        says it is a folder (``hdi_isfolder``, as ADLS tools write them) is a directory,
        as adlfs takes it."""
        async def page() -> tuple[list[tuple[str, int, Any, bool]], str | None]:
            container = self.fs.service_client.get_container_client(self.container)
            pages = container.list_blobs(name_starts_with=prefix or None,
                                         include=["metadata"],
                                         results_per_page=MAX_LIST_ITEMS,
                                         retry_total=NO_SDK_RETRIES
                                         ).by_page(continuation_token=token)
            rows: list[tuple[str, int, Any, bool]] = []
            async for blob in await pages.__anext__():
                metadata = {str(k).lower(): str(v).lower()
                            for k, v in (blob.metadata or {}).items()}
                folder = metadata.get("hdi_isfolder") == "true" \
                    or metadata.get("is_directory") == "true"
                rows.append((str(blob.name), int(blob.size or 0), blob.last_modified, folder))
            return rows, pages.continuation_token or None

        rows, next_token = self._run(page)
        rows.sort(key=lambda row: row[0])
        return FlatPage([r[0] for r in rows], [r[1] for r in rows],
                        datetimes_us([r[2] for r in rows]), [r[3] for r in rows], next_token)

    def delete_batch(self, keys: Sequence[str]) -> list[KeyAnswer]:
        if len(keys) > MAX_BATCH_SUBREQUESTS:
            raise ValueError(f"a blob batch holds at most {MAX_BATCH_SUBREQUESTS} subrequests")

        async def delete() -> list[tuple[int, str]]:
            container = self.fs.service_client.get_container_client(self.container)
            responses = await container.delete_blobs(
                *keys, delete_snapshots="include", raise_on_any_failure=False,
                retry_total=NO_SDK_RETRIES)
            out: list[tuple[int, str]] = []
            async for response in responses:
                code = str(response.headers.get("x-ms-error-code") or "")
                out.append((int(response.status_code), code))
            return out

        answers: list[KeyAnswer] = []
        # Subresponses come back in the order of the subrequests (the SDK sorts them
        # by Content-ID); a short answer leaves the rest unanswered, to send again.
        for key, (status, code) in zip(keys, self._run(delete), strict=False):
            if status in (200, 202):
                answers.append(KeyAnswer(key, "deleted"))
            elif status == 404:
                answers.append(KeyAnswer(key, "gone"))
            elif status in _TRANSIENT:
                answers.append(KeyAnswer(key, "throttled" if status in _THROTTLE else "transient",
                                         f"HTTP {status} {code}".strip()))
            else:
                answers.append(KeyAnswer(key, "failed", f"HTTP {status} {code}".strip()))
        return answers


class AzureBackend(ObjectStoreBackend):
    """Deletes whole paths of one Azure Blob container, fenced to the store root."""

    @classmethod
    def accepts(cls, fs: Any) -> bool:
        """adlfs only: another implementation of the protocol gets the generic backend."""
        return is_azure(fs)

    @staticmethod
    def split(path: str) -> tuple[str, str]:
        return split_path(path)

    def make_client(self, fs: Any, bucket: str) -> ObjectClient:
        return AzureClient(fs, bucket)
