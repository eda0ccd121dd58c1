"""GCS and Azure Blob emulators on loopback, and an HTTP proxy that counts and faults.

- :class:`GCSEmulator`: ``gcp-storage-emulator`` (PyPI) in a subprocess of its own,
  in memory, on 127.0.0.1 with a free port. In memory the emulator still rewrites a
  JSON of every object's metadata after each write (its persistence to disk, which
  an in-memory store does not have): the launcher turns that rewrite off, or
  uploading a thousand objects would take a minute. Everything else is the
  emulator's own code (with a listen backlog of 256 instead of 5, so that a burst of
  connections waits instead of being reset). It serves one request at a time and
  answers a listing in one page, whatever ``maxResults`` says.
- :class:`Azurite`: Azurite's blob service (npm ``azurite``, installed by ``npm ci``
  from the project's package-lock.json into ``node_modules/``), in memory, on
  127.0.0.1 with a free port.
- :class:`StorageProxy`: a reverse proxy in front of either (or of moto's S3). It records every HTTP
  request (LIST, batch delete with its number of calls, other), so that request
  counts are measured on the wire, SDK retries included; and on demand it injects
  faults: a request answered 503/500/429 before it reaches the store, or carried
  out and its answer lost (answered 503 after the store did the work), and single
  calls of a batch answered 429/503 (GCS: not passed on, so not done; Azure: done,
  but the subresponse says 503, since a batch is signed as a whole and cannot be
  cut). Calls on a ``denied`` prefix are answered 403 for good (GCS).

``gc`` reaches either through ``--storage-option`` (the endpoint), so the proxy works
for a ``gc`` subprocess as well as for the library.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: gcsfs's switch for its zonal/hierarchical bucket support (a gRPC probe per bucket).
GCSFS_LAYOUT_PROBE = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"
AZURITE_BIN = ROOT / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's well-known development account (public, in Azure's documentation).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")

_GCS_LAUNCHER = """
import sys, time
from http import server as http_server
http_server.HTTPServer.request_queue_size = 256
from gcp_storage_emulator import storage
from gcp_storage_emulator.server import create_server
storage.Storage._write_config_to_file = lambda self: None
server = create_server("127.0.0.1", 0, in_memory=True)
server.start()
print(server._api._httpd.server_address[1], flush=True)
while True:
    time.sleep(3600)
"""


def _read_port(process: subprocess.Popen[str], pattern: str, timeout: float = 60) -> int:
    """The port a server prints on its standard output (``pattern``'s first group)."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return int(found.group(1))
    process.kill()
    raise RuntimeError("emulator did not start: " + "".join(seen)[-2000:])


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------------------
# GCS
# ---------------------------------------------------------------------------


@dataclass
class GCSEmulator:
    process: subprocess.Popen[str]
    endpoint_url: str

    scheme = "gs"

    @classmethod
    def start(cls) -> GCSEmulator:
        process = subprocess.Popen([sys.executable, "-c", _GCS_LAUNCHER],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                   text=True)
        port = _read_port(process, r"^(\d+)$")
        return cls(process, f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        _stop(self.process)

    def env(self) -> dict[str, str]:
        """A ``gc`` process's environment: no real credentials can be found, and gcsfs's
        bucket-layout probe (gRPC storage control, which the emulator does not serve:
        it hangs on a TLS handshake) is off."""
        return {"GOOGLE_APPLICATION_CREDENTIALS": os.devnull, "GCE_METADATA_HOST": "127.0.0.1:9",
                "GCE_METADATA_IP": "127.0.0.1:9", "NO_GCE_CHECK": "true",
                GCSFS_LAYOUT_PROBE: "false"}

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"token": "anon", "project": "gc-test",
                "endpoint_url": endpoint or self.endpoint_url}

    def storage_args(self, endpoint: str | None = None) -> list[str]:
        return [a for k, v in self.options(endpoint).items()
                for a in ("--storage-option", f"{k}={v}")]

    def filesystem(self, endpoint: str | None = None) -> Any:
        import gcsfs

        return gcsfs.GCSFileSystem(skip_instance_cache=True, **self.options(endpoint))

    def _request(self, method: str, path: str, body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> bytes:
        request = urllib.request.Request(self.endpoint_url + path, data=body, method=method,
                                         headers=headers or {})
        with urllib.request.urlopen(request, timeout=60) as answer:
            data: bytes = answer.read()
            return data

    def create_bucket(self, bucket: str) -> None:
        self._request("POST", "/storage/v1/b?project=gc-test",
                      json.dumps({"name": bucket}).encode(), {"Content-Type": "application/json"})

    def upload(self, bucket: str, objects: Iterable[tuple[str, bytes]], threads: int = 8) -> int:
        items = list(objects)

        def put(item: tuple[str, bytes]) -> None:
            name = urllib.parse.quote(item[0], safe="")
            self._request("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
                          item[1], {"Content-Type": "application/octet-stream"})

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(put, items))
        return len(items)

    def listing(self, bucket: str) -> dict[str, int]:
        page = json.loads(self._request("GET", f"/storage/v1/b/{bucket}/o"))
        return {str(i["name"]): int(i["size"]) for i in page.get("items") or []}

    def remove(self, bucket: str, keys: Iterable[str]) -> None:
        for key in keys:
            self._request("DELETE", f"/storage/v1/b/{bucket}/o/{urllib.parse.quote(key, safe='')}")


# ---------------------------------------------------------------------------
# Azure
# ---------------------------------------------------------------------------


@dataclass
class Azurite:
    process: subprocess.Popen[str]
    endpoint_url: str

    scheme = "az"

    @classmethod
    def start(cls) -> Azurite:
        if not AZURITE_BIN.exists():
            raise FileNotFoundError(f"Azurite is not installed at {AZURITE_BIN} (run `npm ci`)")
        process = subprocess.Popen(
            [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", "0",
             "--inMemoryPersistence", "--skipApiVersionCheck", "--loose",
             "--disableTelemetry"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
        port = _read_port(process, r"listens on http://127\.0\.0\.1:(\d+)")
        # Nobody reads its output from here on: send it nowhere so it never blocks.
        threading.Thread(target=lambda: [None for _ in process.stdout or []],
                         daemon=True).start()
        return cls(process, f"http://127.0.0.1:{port}")

    def stop(self) -> None:
        _stop(self.process)

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": "", "AZURE_STORAGE_ACCOUNT_KEY": ""}

    def connection_string(self, endpoint: str | None = None) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
                f"AccountKey={AZURITE_KEY};"
                f"BlobEndpoint={endpoint or self.endpoint_url}/{AZURITE_ACCOUNT};")

    def options(self, endpoint: str | None = None) -> dict[str, Any]:
        return {"connection_string": self.connection_string(endpoint)}

    def storage_args(self, endpoint: str | None = None) -> list[str]:
        return ["--storage-option", f"connection_string={self.connection_string(endpoint)}"]

    def filesystem(self, endpoint: str | None = None) -> Any:
        import adlfs

        return adlfs.AzureBlobFileSystem(skip_instance_cache=True, **self.options(endpoint))

    def _container(self, container: str) -> Any:
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(self.connection_string(), container)

    def create_bucket(self, container: str) -> None:
        self._container(container).create_container()

    def upload(self, container: str, objects: Iterable[tuple[str, bytes]], threads: int = 8
               ) -> int:
        items = list(objects)
        client = self._container(container)

        def put(item: tuple[str, bytes]) -> None:
            client.upload_blob(item[0], item[1], overwrite=True)

        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(put, items))
        return len(items)

    def listing(self, container: str) -> dict[str, int]:
        return {str(b.name): int(b.size) for b in self._container(container).list_blobs()}

    def remove(self, container: str, keys: Iterable[str]) -> None:
        client = self._container(container)
        for key in keys:
            client.delete_blob(key)


Emulator = GCSEmulator | Azurite


def restore_objects(emulator: Emulator, bucket: str, pristine: dict[str, bytes],
                    known: dict[str, int] | None = None) -> int:
    """Put back every pristine object that is missing or changed, remove the others."""
    now = dict(known) if known is not None else emulator.listing(bucket)
    missing = [(k, b) for k, b in pristine.items() if now.get(k) != len(b)]
    extra = [k for k in now if k not in pristine]
    if missing:
        emulator.upload(bucket, missing)
    emulator.remove(bucket, extra)
    return len(missing) + len(extra)


# ---------------------------------------------------------------------------
# The proxy
# ---------------------------------------------------------------------------


@dataclass
class Recorded:
    kind: str  # "list", "batch" or "other"
    method: str
    calls: int = 0  # calls in a batch
    pages: int = 1  # LIST: pages the real service would have needed
    at: float = field(default_factory=time.monotonic)


@dataclass
class HttpFaults:
    """What the proxy injects. Draws are seeded per request signature and attempt."""

    rate: float = 0.0  # per request
    item_rate: float = 0.0  # per call of a batch
    seed: int = 0
    denied: tuple[str, ...] = ()  # GCS object-name prefixes answered 403
    #: Kinds of request ("list", "batch") whose first request fails (503) whatever the
    #: draws: a test that must see a fault of that kind does not depend on the draws.
    first_of: tuple[str, ...] = ()
    raised: Counter[str] = field(default_factory=Counter)
    _attempts: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def draw(self, signature: str) -> float:
        with self._lock:
            self._attempts[signature] += 1
            n = self._attempts[signature]
        return random.Random(f"{self.seed}|{signature}|{n}").random()

    def first(self, kind: str) -> bool:
        """Whether this is the first request of ``kind`` that ``first_of`` fails."""
        with self._lock:
            if kind not in self.first_of or self._attempts["first " + kind]:
                return False
            self._attempts["first " + kind] += 1
            return True

    def count(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.raised[kind] += n

    def total(self) -> int:
        return sum(self.raised.values())


_GCS_CALL = re.compile(r"^(DELETE|GET|PATCH|POST)\s+\S*/b/[^/\s]+/o/([^\s?]+)", re.M)
_AZ_CALL = re.compile(r"^DELETE\s+(\S+)\s+HTTP", re.M)
_S3_KEY = re.compile(r"<Key>")


class StorageProxy:
    """A reverse proxy on 127.0.0.1 in front of one emulator (see the module doc)."""

    def __init__(self, upstream: str, faults: HttpFaults | None = None,
                 list_page: int = 1000) -> None:
        self.upstream = upstream.rstrip("/")
        self.faults = faults or HttpFaults()
        self.list_page = list_page
        self.records: list[Recorded] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.endpoint_url = ""

    # -- life cycle --------------------------------------------------------------

    def start(self) -> StorageProxy:
        self._thread.start()
        self._ready.wait(30)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            await self._runner.cleanup()
            await self._session.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def _serve(self) -> None:
        from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

        asyncio.set_event_loop(self._loop)

        async def setup() -> None:
            # A fresh upstream connection per request: Node closes idle keep-alive
            # connections after 5 s, and a request sent on one that is being closed
            # would come back as a reset the client never caused.
            self._session = ClientSession(timeout=ClientTimeout(total=120),
                                          auto_decompress=False,
                                          connector=TCPConnector(force_close=True))
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            port = self._runner.addresses[0][1]
            self.endpoint_url = f"http://127.0.0.1:{port}"

        self._loop.run_until_complete(setup())
        self._ready.set()
        self._loop.run_forever()

    # -- counts --------------------------------------------------------------------

    def reset(self) -> None:
        with self._lock:
            self.records = []

    def counts(self) -> dict[str, int]:
        """Requests by kind: ``list`` (pages the real service would serve), ``batch``,
        ``other``, and ``calls`` (the calls the batches carried)."""
        with self._lock:
            records = list(self.records)
        return {"list": sum(r.pages for r in records if r.kind == "list"),
                "batch": sum(1 for r in records if r.kind == "batch"),
                "other": sum(1 for r in records if r.kind == "other"),
                "calls": sum(r.calls for r in records if r.kind == "batch"),
                "max_calls": max((r.calls for r in records if r.kind == "batch"), default=0)}

    # -- handling ------------------------------------------------------------------

    async def _handle(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.read()
        query = request.rel_url.query
        path = request.rel_url.path
        if request.method == "POST" and (path.endswith("/batch/storage/v1")
                                         or query.get("comp") == "batch" or "delete" in query):
            kind = "batch"
        elif request.method == "GET" and (re.search(r"/b/[^/]+/o$", path)
                                          or query.get("comp") == "list"
                                          or "list-type" in query):
            kind = "list"
        else:
            kind = "other"
        text = body.decode("utf-8", errors="replace") if kind == "batch" else ""
        pattern = _GCS_CALL if path.endswith("/batch/storage/v1") else \
            _S3_KEY if "delete" in query else _AZ_CALL
        calls = len(pattern.findall(text)) if kind == "batch" else 0
        record = Recorded(kind, request.method, calls)
        with self._lock:
            self.records.append(record)
        faults = self.faults
        signature = f"{request.method} {request.rel_url} {len(body)}"
        after = False
        if faults.first(kind):
            faults.count(f"{kind} HTTP 503")
            return web.Response(status=503, text=json.dumps(
                {"error": {"code": 503, "message": "injected"}}))
        if faults.rate and kind != "other":
            draw = faults.draw(signature)
            if draw < faults.rate:
                after = kind == "batch" and draw >= faults.rate / 2
                if not after:
                    status = (503, 500, 429)[int(draw / faults.rate * 6) % 3]
                    faults.count(f"{kind} HTTP {status}")
                    return web.Response(status=status, text=json.dumps(
                        {"error": {"code": status, "message": "injected"}}))
        if kind == "batch" and path.endswith("/batch/storage/v1"):
            status, headers, answer = await self._gcs_batch(request, body)
        else:
            status, headers, answer = await self._forward(request, body)
            if kind == "batch" and faults.item_rate and status == 202:
                answer = self._azure_items(answer, headers)
        if kind == "list" and status == 200:
            record.pages = self._pages(answer, headers, query.get("startOffset"),
                                       query.get("endOffset"))
        if after:
            faults.count(f"{kind} answer lost after the store did it (HTTP 503)")
            return web.Response(status=503, text="injected: answer lost")
        return web.Response(status=status, headers=headers, body=answer)

    def _pages(self, answer: bytes, headers: dict[str, str], start: str | None,
               end: str | None) -> int:
        """The GCS emulator answers a listing in one page and ignores ``startOffset`` and
        ``endOffset``: count the pages GCS itself would have served for the request
        (the items in the range, 1,000 a page). Azurite pages by itself."""
        if "json" not in headers.get("Content-Type", ""):
            return 1
        try:
            names = [str(i.get("name")) for i in json.loads(answer).get("items") or []]
        except ValueError:
            return 1
        items = sum(1 for n in names if (start is None or n >= start)
                    and (end is None or n < end))
        return max(1, math.ceil(items / self.list_page))

    async def _forward(self, request: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("host", "content-length", "transfer-encoding")}
        from yarl import URL

        # The URL goes on exactly as it came (already encoded): a signed request's
        # canonical resource must not change on the way.
        url = URL(self.upstream + request.raw_path, encoded=True)
        async with self._session.request(request.method, url, headers=headers,
                                         data=body if body else None,
                                         skip_auto_headers=("Content-Type",)) as answer:
            data = await answer.read()
            out = {k: v for k, v in answer.headers.items()
                   if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                        "content-encoding")}
            return answer.status, out, data

    async def _gcs_batch(self, request: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Pass a GCS batch on without the calls drawn to fail, and answer those
        (429/503, or 403 on a denied prefix) in their place."""
        faults = self.faults
        content_type = request.headers.get("Content-Type", "")
        boundary = re.search(r"boundary=\"?([^\";]+)\"?", content_type)
        if boundary is None or not (faults.item_rate or faults.denied):
            return await self._forward(request, body)
        marker = "--" + boundary.group(1)
        text = body.decode()
        parts = [p for p in text.split(marker)[1:] if not p.startswith("--")]
        injected: dict[int, int] = {}
        for i, part in enumerate(parts):
            call = _GCS_CALL.search(part)
            name = urllib.parse.unquote(call.group(2)) if call else ""
            if name and any(name.startswith(prefix) for prefix in faults.denied):
                injected[i] = 403
                faults.count("batch call HTTP 403 (denied)")
            elif faults.item_rate and (draw := faults.draw("item " + name)) < faults.item_rate:
                injected[i] = 429 if draw < faults.item_rate / 2 else 503
                faults.count(f"batch call HTTP {injected[i]}")
        kept = [p for i, p in enumerate(parts) if i not in injected]
        answers: list[str] = []
        headers: dict[str, str] = {}
        status = 200
        if kept:
            forwarded = "".join(marker + p for p in kept) + marker + "--\r\n"
            status, headers, data = await self._forward(request, forwarded.encode())
            if status != 200:
                return status, headers, data
            reply = re.search(r"boundary=\"?([^\";]+)\"?", headers.get("Content-Type", ""))
            assert reply is not None
            answers = [p for p in data.decode().split("--" + reply.group(1))[1:]
                       if not p.startswith("--")]
        out_boundary = "gc_proxy_batch"
        built = []
        got = iter(answers)
        for i in range(len(parts)):
            if i in injected:
                code = injected[i]
                reason = {403: "Forbidden", 429: "Too Many Requests",
                          503: "Service Unavailable"}[code]
                built.append("\r\nContent-Type: application/http\r\n\r\n"
                             f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\n\r\n"
                             + json.dumps({"error": {"code": code, "message": "injected"}})
                             + "\r\n")
            else:
                built.append(next(got, "\r\n"))
        data = ("".join(f"--{out_boundary}" + b for b in built) + f"--{out_boundary}--"
                ).encode()
        headers = {"Content-Type": f"multipart/mixed; boundary={out_boundary}"}
        return status, headers, data

    def _azure_items(self, answer: bytes, headers: dict[str, str]) -> bytes:
        """Turn some subresponses of an Azure batch (carried out) into 503s: the blob
        is gone, the client is told to try again and must take the 404 as gone."""
        reply = re.search(r"boundary=\"?([^\";]+)\"?", headers.get("Content-Type", ""))
        if reply is None:
            return answer
        marker = "--" + reply.group(1)
        text = answer.decode()
        pieces = text.split(marker)
        for i in range(1, len(pieces)):
            piece = pieces[i]
            if piece.startswith("--") or " 202 " not in piece:
                continue
            if self.faults.draw(f"azure item {i} {len(self.records)}") < self.faults.item_rate:
                pieces[i] = piece.replace("HTTP/1.1 202 Accepted",
                                          "HTTP/1.1 503 Service Unavailable", 1)
                self.faults.count("batch subresponse HTTP 503 (after delete)")
        return marker.join(pieces).encode()
