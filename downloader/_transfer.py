"""HTTP: the shared session, one GET with redirects, errors translated at the edge."""

from __future__ import annotations

import base64
import contextlib
import netrc
import os
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TypeAlias
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._exceptions import ConnectionLost, HTTPStatusError, ReadTimeout, TransferError
from ._policy import (
    Answer,
    CallerHeaders,
    merge_headers,
    netrc_may_go,
    parse_complete_length,
    parse_content_range,
    parse_retry_after,
    unsupported_transfer_coding,
    url_parts,
)
from ._version import USER_AGENT

Session: TypeAlias = aiohttp.ClientSession  # so other modules need not import aiohttp

MAX_REDIRECTS = 10
READ_BUFFER = 256 * 1024  # measured: same speed as 4 MiB, 30 MB less peak RSS
# aiohttp reads header lines up to 8190 bytes; real servers send longer ones
# (cookies, CSP, presigned Link headers: an 18 KB line in curl's test 1205).
MAX_HEADER_LINE = 64 * 1024
_REDIRECTS = {301, 302, 303, 307, 308}
# On every request, whoever's session it is: byte ranges must be file bytes
# (CDNs ignore Range when gzip is advertised). A caller's -H may override it.
RAW_BODY = {"Accept-Encoding": "identity"}


def make_session(
    *,
    max_connections: int,
    per_host: int,
    timeout: float,
    connect_timeout: float,
    ssl_context: ssl.SSLContext | bool = True,
) -> aiohttp.ClientSession:
    """The one session of a run: connection limits, timeouts, raw bodies.

    ``auto_decompress=False`` and ``Accept-Encoding: identity`` keep byte ranges
    in file bytes: CDNs ignore Range when gzip is advertised.
    """
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=per_host,
        ssl=ssl_context,
        enable_cleanup_closed=False,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=connect_timeout, sock_read=timeout
        ),
        trust_env=False,  # the environment is read once per run: see Environment
        auto_decompress=False,
        read_bufsize=READ_BUFFER,
        max_line_size=MAX_HEADER_LINE,
        max_field_size=MAX_HEADER_LINE,
        headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
    )


class Environment:
    """Proxies (``http_proxy``, ``no_proxy`` ...) and ``.netrc``, read once per run.

    aiohttp's ``trust_env`` looks both up in a worker thread on every request:
    measured, two thread hops per small file. Here each host is looked up once.
    """

    def __init__(self) -> None:
        self._proxies = {
            scheme: url
            for scheme, url in urllib.request.getproxies().items()
            if scheme in ("http", "https")
        }
        self._netrc = _load_netrc()
        self._cache: dict[tuple[str, str], tuple[str | None, str | None, bool]] = {}

    def lookup(
        self, url: str, origin: str | None = None
    ) -> tuple[str | None, str | None]:
        """(proxy URL, ``Authorization`` value from .netrc) for ``url``'s host.

        ``origin`` is the URL the caller asked for. A redirect hop elsewhere
        gets only credentials its host is named for (``machine``, never the
        catch-all ``default``), and none on a step down from https to http.
        """
        scheme, hostname, _ = url_parts(url)
        key = (scheme, hostname)
        if key not in self._cache:
            scheme, host = key
            proxy = self._proxies.get(scheme)
            if proxy and urllib.request.proxy_bypass(host):
                proxy = None
            auth, named = None, False
            if self._netrc is not None:
                found = self._netrc.authenticators(host)
                if found and found[2] is not None:
                    pair = f"{found[0] or ''}:{found[2]}".encode()
                    auth = "Basic " + base64.b64encode(pair).decode("ascii")
                    named = host in self._netrc.hosts
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (proxy, auth, named)
        proxy, auth, named = self._cache[key]
        if (
            auth is not None
            and origin is not None
            and not netrc_may_go(url, origin, named=named)
        ):
            auth = None
        return proxy, auth


def _load_netrc() -> netrc.netrc | None:
    """The user's netrc (``$NETRC`` or ``~/.netrc``), or None when absent or bad."""
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return netrc.netrc(path)
    except (OSError, netrc.NetrcParseError):
        return None


class Stream:
    """An open response: its ``answer`` and its body as chunks."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        headers = response.headers
        self.answer = Answer(
            url=str(response.url),
            status=response.status,
            content_length=response.content_length,
            content_range=parse_content_range(headers.get("Content-Range")),
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
            accepts_ranges=headers.get("Accept-Ranges", "").lower() == "bytes",
        )

    def close(self) -> None:
        """Drop the connection now (its body is not wanted any further)."""
        self._response.close()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece aiohttp received, never re-joined.

        ``iter_chunked(n)`` joins buffered pieces into n-byte copies; measured on
        loopback that copy costs more CPU than it saves in write calls, and
        ``PartWriter`` batches the pieces anyway.
        """
        url = self.answer.url
        with translated(url):
            async for chunk in self._response.content.iter_any():
                yield chunk


class translated:
    """Foreign exceptions become ours here, and only here.

    A class, not a ``contextmanager`` generator: it is entered twice per file.
    """

    __slots__ = ("url",)

    def __init__(self, url: str) -> None:
        self.url = url

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: object,
    ) -> None:
        if exc is not None and isinstance(exc, (TimeoutError, aiohttp.ClientError)):
            raise _translate(exc, self.url) from exc


def _timed_out(exc: BaseException, url: str) -> TransferError:
    return ReadTimeout(f"no data for too long from {url}", url=url)


def _cut_short(exc: BaseException, url: str) -> TransferError:
    return ConnectionLost(f"body cut short from {url}", url=url)


def _certificate(exc: BaseException, url: str) -> TransferError:
    msg = f"TLS certificate rejected for {url}: {exc}"
    return TransferError(msg, url=url, retryable=False)


def _tls(exc: BaseException, url: str) -> TransferError:
    return TransferError(f"TLS failed for {url}: {exc}", url=url, retryable=False)


def _no_connection(exc: BaseException, url: str) -> TransferError:
    assert isinstance(exc, aiohttp.ClientConnectorError)
    why = exc.os_error.strerror or exc.os_error
    return ConnectionLost(f"cannot connect to {url}: {why}", url=url)


def _lost(exc: BaseException, url: str) -> TransferError:
    return ConnectionLost(f"connection lost to {url}: {exc}", url=url)


def _bad_url(exc: BaseException, url: str) -> TransferError:
    return TransferError(f"invalid URL {url}", url=url, retryable=False)


def _other(exc: BaseException, url: str) -> TransferError:
    msg = f"{type(exc).__name__} from {url}: {exc}"
    return TransferError(msg, url=url)


_ce = aiohttp.client_exceptions
# Every exception aiohttp's client raises, each mapped on purpose (httpx's
# test_httpcore_all_exceptions_mapped is the model: tests/test_errors.py fails
# when aiohttp grows one that is not here). Looked up along the class's MRO, so
# a subclass aiohttp adds later still gets its base's translation meanwhile.
TRANSLATIONS: dict[
    type[BaseException], Callable[[BaseException, str], TransferError]
] = {
    TimeoutError: _timed_out,  # aiohttp's timeouts are also ClientErrors: first
    _ce.ServerTimeoutError: _timed_out,
    _ce.ConnectionTimeoutError: _timed_out,
    _ce.SocketTimeoutError: _timed_out,
    _ce.ClientPayloadError: _cut_short,
    _ce.ClientConnectorCertificateError: _certificate,
    _ce.ClientSSLError: _tls,
    _ce.ClientConnectorSSLError: _tls,
    _ce.ServerFingerprintMismatch: _tls,  # a pinned certificate differs: final
    _ce.ClientConnectorError: _no_connection,
    _ce.ClientConnectorDNSError: _no_connection,
    _ce.ClientProxyConnectionError: _no_connection,
    _ce.UnixClientConnectorError: _no_connection,
    _ce.ServerDisconnectedError: _lost,
    _ce.ClientOSError: _lost,
    _ce.ClientConnectionResetError: _lost,
    _ce.ClientConnectionError: _lost,
    _ce.ServerConnectionError: _lost,
    _ce.InvalidURL: _bad_url,
    _ce.InvalidUrlClientError: _bad_url,
    _ce.InvalidUrlRedirectClientError: _bad_url,
    _ce.NonHttpUrlClientError: _bad_url,
    _ce.NonHttpUrlRedirectClientError: _bad_url,
    _ce.RedirectClientError: _other,  # we follow redirects ourselves: not expected
    _ce.ClientResponseError: _other,  # never raise_for_status: not expected
    _ce.TooManyRedirects: _other,  # likewise
    _ce.ClientHttpProxyError: _other,  # the proxy refused CONNECT: may pass
    _ce.ContentTypeError: _other,
    _ce.WSServerHandshakeError: _other,
    _ce.UploadAbortedError: _other,
    _ce.ClientError: _other,
}


def _translate(exc: BaseException, url: str) -> TransferError:
    """Our error for one of aiohttp's (or a timeout): the nearest mapped class."""
    for kind in type(exc).__mro__:
        translate = TRANSLATIONS.get(kind)
        if translate is not None:
            return translate(exc, url)
    return _other(exc, url)


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession,
    url: str,
    caller: CallerHeaders,
    extra: Mapping[str, str] | None = None,
    env: Environment | None = None,
) -> AsyncIterator[Stream]:
    """GET ``url``, following redirects ourselves, and yield the 2xx response.

    Following redirects here (not in aiohttp) lets every hop ask
    ``caller.for_url`` which caller headers it may carry (none off the
    caller's origin), and refuse schemes other than http(s). ``extra`` (Range,
    If-Range) goes to every hop. ``env`` adds proxies and each host's own
    ``.netrc`` credentials (never another host's).

    Raises
    ------
    HTTPStatusError
        A non-2xx final answer (``retry_after`` parsed from the header).
    TransferError
        Connection, TLS or redirect trouble, translated.
    """
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        proxy, auth = env.lookup(current, url) if env is not None else (None, None)
        request_headers = merge_headers(RAW_BODY, caller.for_url(current), extra or {})
        if auth is not None and not any(
            k.lower() == "authorization" for k in request_headers
        ):
            request_headers["Authorization"] = auth  # this host's own
        with translated(current):
            response = await session.get(
                current, headers=request_headers, allow_redirects=False, proxy=proxy
            )
        try:
            if response.status in _REDIRECTS and "Location" in response.headers:
                target = urljoin(current, response.headers["Location"])
                if urlsplit(target).scheme not in ("http", "https"):
                    msg = f"redirect from {current} to a non-http(s) URL {target}"
                    raise TransferError(
                        msg,
                        url=url,
                        retryable=False,
                    )
                current = target
                continue
            if not 200 <= response.status < 300:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                complete_length = None
                if response.status == 416:
                    complete_length = parse_complete_length(
                        response.headers.get("Content-Range")
                    )
                raise HTTPStatusError(
                    response.status,
                    url=current,
                    retry_after=retry_after,
                    complete_length=complete_length,
                )
            coding = unsupported_transfer_coding(
                response.headers.getall("Transfer-Encoding", [])
            )
            if coding is not None:
                parts = urlsplit(current)
                host = (
                    f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
                )
                msg = f"unsupported transfer coding {coding!r} from {host}"
                raise TransferError(msg, url=current, retryable=False)
            yield Stream(response)
            return
        finally:
            response.release()
    msg = f"more than {MAX_REDIRECTS} redirects from {url}"
    raise TransferError(msg, url=url, retryable=False)
