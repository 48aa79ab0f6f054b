"""A real Range-capable HTTP file server that misbehaves on request (tests, demo).

``FileServer`` serves in-memory files over aiohttp on 127.0.0.1 with strong ETags,
Last-Modified, single byte ranges, ``If-Range``, and ``If-None-Match`` /
``If-Modified-Since`` (304 Not Modified), and injects the faults real
servers and CDNs produce: dropped connections, 5xx/429 bursts with ``Retry-After``,
ignored ``Range``, content that changes between requests, truncated bodies,
stalls, per-connection throttling and lies about ``Content-Length`` and
``Content-Range``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import ssl
import time
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime

from aiohttp import web

from ._raw_replies import RawReplyServer
from ._server_faults import Faults, RequestRecord
from ._server_quota import QuotaWindow

__all__ = [
    "Faults",
    "FileServer",
    "QuotaWindow",
    "RawReplyServer",
    "RequestRecord",
    "make_bytes",
]

_WRITE_BLOCK = 64 * 1024


def make_bytes(size: int, seed: int | str = 0) -> bytes:
    """Deterministic pseudo-random bytes, the same for the same size and seed."""
    return random.Random(seed).randbytes(size)


@dataclass
class _File:
    data: bytes
    etag: str
    mtime: float


@dataclass
class FileServer:
    """Serves ``files`` at ``/<name>``; ``faults[name]`` says how each misbehaves.

    Use ``app()`` with pytest-aiohttp's ``aiohttp_server``, or ``await start()``
    to listen on 127.0.0.1 by itself.
    """

    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Faults] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # name -> Location
    log: list[RequestRecord] = field(default_factory=list)
    base_url: str = ""
    in_flight: int = 0  # connections with a request in progress, not yet closed
    max_in_flight: int = 0
    quota: QuotaWindow | None = None  # a request quota over all files
    connection_limit: int | None = None  # more at once are answered 429...
    refused: int = 0  # ...counted here (nginx limit_conn with status 429)
    latency: float = 0.0  # seconds before each answer (a far-away server)
    _state: dict[str, _File] = field(default_factory=dict, repr=False)
    _live: set[object] = field(default_factory=set, repr=False)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        for name, data in list(self.files.items()):
            self.set_file(name, data)

    def set_file(self, name: str, data: bytes) -> None:
        """Add or change a file; a change gets a new ETag and Last-Modified."""
        self.files[name] = data
        old = self._state.get(name)
        mtime = time.time() if old is None else max(time.time(), old.mtime + 1)
        etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        self._state[name] = _File(data, etag, mtime)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def bytes_sent(self, name: str | None = None) -> int:
        return sum(r.sent for r in self.log if name is None or r.name == name)

    def requests_for(self, name: str) -> list[RequestRecord]:
        return [r for r in self.log if r.name == name]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("GET", "/{name:.+}", self._handle)
        app.router.add_route("HEAD", "/{name:.+}", self._handle)
        return app

    async def start(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> str:
        """Listen without a test fixture (HTTPS with ``ssl_context``); the base URL."""
        self._runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound = self._runner.addresses[0][1]
        scheme = "https" if ssl_context is not None else "http"
        self.base_url = f"{scheme}://{host}:{bound}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not self.base_url:
            self.base_url = f"{request.scheme}://{request.host}"
        name = request.match_info["name"]
        # Count connections, not handlers: one the client has closed stops
        # counting even if its handler has not noticed yet.
        self._live = {t for t in self._live if not t.is_closing()}  # type: ignore[attr-defined]
        self._live.add(request.transport)
        self.in_flight = len(self._live)
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        record = RequestRecord(request.method, name, dict(request.headers))
        self.log.append(record)
        try:
            response = await self._answer(request, name, record)
            record.status = response.status
            return response
        finally:
            self._live.discard(request.transport)
            self.in_flight = len(self._live)

    async def _answer(
        self, request: web.Request, name: str, record: RequestRecord
    ) -> web.StreamResponse:
        found = self._find(request, name)
        if isinstance(found, web.Response):
            return found
        state, faults = found
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.connection_limit is not None and self.in_flight > self.connection_limit:
            self.refused += 1
            return web.Response(status=429, text="too many connections")
        allowed, quota = self.quota.take() if self.quota else (True, {})
        if not allowed and self.quota is not None:
            return web.Response(status=self.quota.status, headers=quota)
        shaped = _shape(request, state, faults)
        if isinstance(shaped, web.Response):
            return shaped
        status, headers, body = shaped
        headers |= quota | _digest_headers(request, state.data, body, faults)
        response = web.StreamResponse(status=status, headers=headers)
        if faults.no_length:
            response.enable_chunked_encoding()
        else:
            length = len(body)
            if status == 200 and faults.lie_length is not None:
                length = faults.lie_length
            response.content_length = length
        record.status = status
        await response.prepare(request)
        if request.method != "HEAD":
            await self._send(request, response, body, faults, record)
        return response

    def _find(
        self, request: web.Request, name: str
    ) -> web.Response | tuple[_File, Faults]:
        """The file and its faults, or the answer that comes before any body."""
        if name in self.redirects:
            return web.Response(status=302, headers={"Location": self.redirects[name]})
        state = self._state.get(name)
        if state is None:
            return web.Response(status=404, text="not found")
        faults = self.faults.setdefault(name, Faults())
        if request.method == "GET":
            faults.requests_seen += 1
            if faults.change_after is not None and (
                faults.requests_seen == faults.change_after + 1
            ):
                old = self.files[name]
                self.set_file(name, make_bytes(len(old), f"{name}: changed"))
                state = self._state[name]
        if faults.fail_times > 0:
            faults.fail_times -= 1
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            return web.Response(status=faults.fail_status, headers=headers)
        return state, faults

    async def _send(
        self,
        request: web.Request,
        response: web.StreamResponse,
        body: bytes,
        faults: Faults,
        record: RequestRecord,
    ) -> None:
        limit = len(body)
        drop = faults.drop_after is not None and faults.drop_times > 0
        if drop:
            faults.drop_times -= 1
            limit = min(limit, faults.drop_after or 0)
        stall = faults.stall_after is not None and faults.stall_times > 0
        if stall:
            faults.stall_times -= 1
        sent = 0
        began = time.monotonic()
        rate = faults.rate
        if faults.range_rate is not None and "Range" in request.headers:
            rate = faults.range_rate
        # Throttled: about 1/20 s of data per write, paced smoothly like a real
        # rate-limiting server rather than in 64 KiB lumps.
        step = _WRITE_BLOCK if not rate else max(1024, int(rate / 20))
        step = min(step, _WRITE_BLOCK)
        while sent < limit:
            if stall and sent >= (faults.stall_after or 0):
                await asyncio.sleep(faults.stall_seconds)
                stall = False
            block = body[sent : min(limit, sent + step)]
            if stall:
                block = block[: max(1, (faults.stall_after or 0) - sent)]
            try:
                await response.write(block)
            except ConnectionResetError:  # the client hung up: nothing to finish
                return
            sent += len(block)
            record.sent = sent
            if rate and sent < limit:  # not after the last: done means done
                ahead = sent / rate - (time.monotonic() - began)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        announced = response.content_length
        if drop or sent < len(body) or (announced is not None and announced > sent):
            # Short of what was announced: a real server must close the
            # connection, since it cannot frame another response on it.
            if request.transport is not None:
                request.transport.close()
            return
        await response.write_eof()


def _shape(
    request: web.Request, state: _File, faults: Faults
) -> web.Response | tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the answer (a 416 is answered at once)."""
    data = state.data
    content_type = faults.content_type or "application/octet-stream"
    headers = {"Accept-Ranges": "bytes", "Content-Type": content_type}
    headers |= faults.headers
    if not faults.no_validators:
        headers["ETag"] = state.etag
        headers["Last-Modified"] = formatdate(state.mtime, usegmt=True)
        if _not_modified(request, state):
            return web.Response(status=304, headers=headers)
    start, end = _wanted_range(request, state, faults, len(data))
    if start is None or end is None:
        return 200, headers, data
    if start >= len(data):
        headers["Content-Range"] = f"bytes */{len(data)}"
        return web.Response(status=416, headers=headers)
    if faults.wrong_range_start is not None and _range_fault_due(faults):
        start = faults.wrong_range_start
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    body = data[start : end + 1]
    if faults.content_range is not None and _range_fault_due(faults):
        lie = faults.content_range.format(start=start, end=end, size=len(data))
        if lie:
            headers["Content-Range"] = lie
        else:
            del headers["Content-Range"]
    return 206, headers, body


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _digest_headers(
    request: web.Request, data: bytes, body: bytes, faults: Faults
) -> dict[str, str]:
    """The digest headers ``faults.digests`` names, right or (while due) wrong."""
    if not faults.digests or request.method != "GET":
        return {}
    if faults.wrong_digests > 0:
        faults.wrong_digests -= 1
        data = body = b"not these bytes" + data
    headers = {}
    for name in faults.digests:
        if name == "Repr-Digest":
            headers[name] = f"sha-256=:{_b64(hashlib.sha256(data).digest())}:"
        elif name == "Content-Digest":
            headers[name] = f"sha-512=:{_b64(hashlib.sha512(body).digest())}:"
        elif name == "x-goog-hash":
            md5 = _b64(hashlib.md5(data).digest())
            headers[name] = f"crc32c=AAAAAA==,md5={md5}"
        elif name == "x-amz-checksum-sha256":
            if request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
                headers[name] = _b64(hashlib.sha256(data).digest())
        else:
            msg = f"unknown digest header {name!r}"
            raise ValueError(msg)
    return headers


def _not_modified(request: web.Request, state: _File) -> bool:
    """RFC 9110 13.1.2-3: If-None-Match decides when sent, else If-Modified-Since."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or state.etag in tags
    since = request.headers.get("If-Modified-Since")
    if since is None:
        return False
    try:
        return int(state.mtime) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False  # an unreadable date is ignored, as servers do


def _range_fault_due(faults: Faults) -> bool:
    return faults.ranges_seen > faults.range_faults_after


def _wanted_range(
    request: web.Request, state: _File, faults: Faults, size: int
) -> tuple[int | None, int | None]:
    """The single byte range to answer, or (None, None) for the whole body."""
    header = request.headers.get("Range", "")
    if header:
        faults.ranges_seen += 1
    if not header.startswith("bytes=") or "," in header:
        return None, None
    if faults.ignore_range and _range_fault_due(faults):
        return None, None
    if_range = request.headers.get("If-Range")
    if if_range and not faults.ignore_if_range:
        valid = {state.etag, formatdate(state.mtime, usegmt=True)}
        if faults.no_validators or if_range not in valid:
            return None, None
    first, _, last = header[len("bytes=") :].partition("-")
    try:
        if not first:  # suffix range: the last N bytes
            n = int(last)
            return max(0, size - n), size - 1
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None, None
    if end < start and start < size:
        return None, None
    return start, end
