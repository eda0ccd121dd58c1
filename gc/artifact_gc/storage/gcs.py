"""The GCS backend (gcsfs): ranged listings and JSON-API batch deletes of 100 calls.

The requests go out on the gcsfs filesystem's own aiohttp session with its own
credentials (Google's standard chain: ``token=None`` finds application default
credentials; ``token="anon"`` for an emulator) and its endpoint (``endpoint_url``
or ``STORAGE_EMULATOR_HOST``), but we build them ourselves, because gcsfs

- matches the answers of a batch to its paths by position and retries 429/5xx with
  its own schedule (up to 32 s a sleep) that knows nothing of our rate limit,
- deletes one object per request when the endpoint is not Google's own,
- sends a HEAD-like listing per path to expand it before it deletes.

A batch request (``POST /batch/storage/v1``) carries at most 100 ``DELETE`` calls;
the answer is a 200 whose parts each carry their own status: 204 deleted, 404 gone,
429 and 5xx to send again, anything else a failure of that object only. The loop
around it (finding keys by ranged listing, retries, proof) is storage/buckets.py.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from artifact_gc.storage.buckets import KeyAnswer, ObjectClient, ObjectStoreBackend, TransientError
from artifact_gc.storage.flat_listing import FlatPage, rfc3339_us

#: A batch request holds at most 100 calls (the JSON API's limit).
MAX_BATCH_CALLS = 100
#: ``objects.list`` returns at most 1,000 items a page.
MAX_LIST_ITEMS = 1000

_THROTTLE = frozenset({429, 503})
_TRANSIENT = _THROTTLE | frozenset({408, 500, 502, 504})
_STATUS = re.compile(r"^HTTP/\d(?:\.\d)?\s+(\d{3})", re.M)
_CONTENT_ID = re.compile(r"^Content-ID:\s*<?response-([^>\s]+)>?", re.I | re.M)


def is_gcs(fs: Any) -> bool:
    """True for a gcsfs filesystem."""
    protocol = fs.protocol
    protocols = tuple(protocol) if isinstance(protocol, tuple | list) else (str(protocol),)
    return bool({"gs", "gcs"} & set(protocols)) and hasattr(fs, "batch_url_base")


def split_path(path: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` or ``bucket/a/b`` -> (``bucket``, ``a/b``). The key is taken
    as written: ``?``, ``#`` and ``%`` are characters of an object name here."""
    bare = path.split("://", 1)[-1]
    bucket, _, key = bare.partition("/")
    return bucket, key.rstrip("/")


def _transient_network(exc: BaseException) -> bool:
    name = type(exc).__name__
    if name in ("ClientConnectorError", "ServerDisconnectedError", "ClientPayloadError",
                "ClientOSError", "ServerTimeoutError", "ClientConnectionError",
                "RefreshError", "TransportError"):
        return True
    return isinstance(exc, ConnectionError | TimeoutError)


class GCSClient:
    """``objects.list`` pages and batch deletes of one bucket, through gcsfs's session."""

    max_delete = MAX_BATCH_CALLS

    def __init__(self, fs: Any, bucket: str) -> None:
        self.fs = fs
        self.bucket = bucket

    def is_transient(self, exc: BaseException) -> bool:
        return _transient_network(exc)

    def _send(self, method: str, url: str, *, params: dict[str, Any] | None = None,
              headers: dict[str, str] | None = None, data: str | None = None
              ) -> tuple[int, dict[str, str], bytes]:
        from fsspec.asyn import sync

        async def send() -> tuple[int, dict[str, str], bytes]:
            session = await self.fs._set_session()
            async with session.request(
                method=method, url=url, params=self.fs._get_params(params or {}),
                headers=self.fs._get_headers(headers), data=data,
                timeout=self.fs.requests_timeout,
            ) as response:
                body = await response.read()
                return response.status, dict(response.headers), body

        status, answer_headers, body = sync(self.fs.loop, send)
        if status in _TRANSIENT:
            raise TransientError(f"HTTP {status} from GCS ({method})",
                                 throttle=status in _THROTTLE)
        if status >= 400:
            raise OSError(f"GCS answered HTTP {status} to {method}: {_message(body)}")
        return status, answer_headers, body

    def list_page(self, prefix: str, start: str, stop: str, token: str | None
                  ) -> tuple[list[str], list[int], str | None]:
        params: dict[str, Any] = {"prefix": prefix, "startOffset": start, "endOffset": stop,
                                  "maxResults": MAX_LIST_ITEMS,
                                  "fields": "items(name,size),nextPageToken"}
        page = self._objects_page(params, token)
        items = sorted(((str(i["name"]), int(i.get("size") or 0))
                        for i in page.get("items") or []), key=lambda item: item[0])
        return [n for n, _ in items], [s for _, s in items], page.get("nextPageToken") or None

    def _objects_page(self, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        """One ``objects.list`` request of the JSON API with ``params``, from ``token``
        on: the page's decoded body."""
        if token:
            params = {**params, "pageToken": token}
        url = f"{self.fs._location}/storage/v1/b/{quote(self.bucket, safe='')}/o"
        _, _, body = self._send("GET", url, params=params)
        page: dict[str, Any] = json.loads(body or b"{}")
        return page

    def list_flat_page(self, prefix: str, token: str | None) -> FlatPage:
        """One page of the flat listing of ``prefix`` (no delimiter: every key under it,
        whatever its depth), with sizes and last-modified times."""
        params: dict[str, Any] = {"prefix": prefix, "maxResults": MAX_LIST_ITEMS,
                                  "fields": "items(name,size,updated),nextPageToken"}
        page = self._objects_page(params, token)
        # Sorted: GCS lists in name order; an emulator that answers in one page may not.
        items = sorted((str(i["name"]), int(i.get("size") or 0), i.get("updated"))
                       for i in page.get("items") or [])
        return FlatPage([n for n, _, _ in items], [s for _, s, _ in items],
                        rfc3339_us([u for _, _, u in items]), None,
                        page.get("nextPageToken") or None)

    def delete_batch(self, keys: Sequence[str]) -> list[KeyAnswer]:
        if len(keys) > MAX_BATCH_CALLS:
            raise ValueError(f"a GCS batch holds at most {MAX_BATCH_CALLS} calls")
        boundary = f"gc_batch_{uuid.uuid4().hex}"
        bucket = quote(self.bucket, safe="")
        parts = []
        for i, key in enumerate(keys):
            parts.append(
                f"--{boundary}\r\nContent-Type: application/http\r\n"
                f"Content-Transfer-Encoding: binary\r\nContent-ID: <{i}>\r\n\r\n"
                f"DELETE /storage/v1/b/{bucket}/o/{quote(key, safe='')} HTTP/1.1\r\n"
                "Content-Length: 0\r\n\r\n")
        body = "".join(parts) + f"--{boundary}--\r\n"
        _, headers, content = self._send(
            "POST", self.fs.batch_url_base, data=body,
            headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
        return parse_batch_answer(keys, headers, content)


def parse_batch_answer(keys: Sequence[str], headers: dict[str, str], content: bytes
                       ) -> list[KeyAnswer]:
    """One answer per key of a batch response. Parts are matched by ``Content-ID``
    (``response-<n>``) where the server names them, else by position; a key whose
    part is missing gets no answer (the caller sends it again)."""
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    match = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
    if match is None:
        raise TransientError("GCS batch answer without a multipart boundary")
    boundary = match.group(1)
    text = content.decode("utf-8", errors="replace")
    parts = [p for p in text.split(f"--{boundary}")[1:] if not p.startswith("--")]
    answers: list[KeyAnswer] = []
    for position, part in enumerate(parts):
        named = _CONTENT_ID.search(part)
        index = int(named.group(1)) if named and named.group(1).isdigit() else position
        status_match = _STATUS.search(part)
        if index >= len(keys) or status_match is None:
            continue
        status = int(status_match.group(1))
        key = keys[index]
        if status in (200, 204):
            answers.append(KeyAnswer(key, "deleted"))
        elif status == 404:
            answers.append(KeyAnswer(key, "gone"))
        elif status in _TRANSIENT:
            answers.append(KeyAnswer(key, "throttled" if status in _THROTTLE else "transient",
                                     f"HTTP {status}"))
        else:
            answers.append(KeyAnswer(key, "failed", f"HTTP {status}: {_message(part)}"))
    return answers


def _message(body: bytes | str) -> str:
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    found = re.search(r'"message"\s*:\s*"([^"]*)"', text)
    return found.group(1) if found else text.strip()[:200]


class GCSBackend(ObjectStoreBackend):
    """Deletes whole paths of one GCS bucket, fenced to the store root."""

    @classmethod
    def accepts(cls, fs: Any) -> bool:
        """gcsfs only: another implementation of the protocol gets the generic backend."""
        return is_gcs(fs)

    @staticmethod
    def split(path: str) -> tuple[str, str]:
        return split_path(path)

    def make_client(self, fs: Any, bucket: str) -> ObjectClient:
        return GCSClient(fs, bucket)
