"""HTTP: the shared session, one GET with redirects, errors translated at the edge."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from ._exceptions import ConnectionLost, HTTPStatusError, ReadTimeout, TransferError
from ._policy import ContentRange, parse_content_range, parse_retry_after
from ._version import USER_AGENT

MAX_REDIRECTS = 10
READ_BUFFER = 256 * 1024  # measured: same speed as 4 MiB, 30 MB less peak RSS
_REDIRECTS = {301, 302, 303, 307, 308}


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
        trust_env=True,
        auto_decompress=False,
        read_bufsize=READ_BUFFER,
        headers={"Accept-Encoding": "identity", "User-Agent": USER_AGENT},
    )


def make_ssl_context(ca_bundle: str | None, insecure: bool) -> ssl.SSLContext | bool:
    if insecure:
        return False
    if ca_bundle:
        return ssl.create_default_context(cafile=ca_bundle)
    return True


@dataclass(frozen=True, slots=True)
class Answer:
    """What a response said about its body, as plain data for the decisions."""

    url: str  # after redirects
    status: int
    content_length: int | None
    content_range: ContentRange | None
    etag: str | None
    last_modified: str | None


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
        )

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


@contextlib.contextmanager
def translated(url: str) -> Iterator[None]:
    """Foreign exceptions become ours here, and only here."""
    try:
        yield
    except TimeoutError as exc:  # first: aiohttp's timeouts are ClientErrors too
        msg = f"no data for too long from {url}"
        raise ReadTimeout(msg, url=url) from exc
    except aiohttp.ClientPayloadError as exc:
        msg = f"body cut short from {url}"
        raise ConnectionLost(msg, url=url) from exc
    except aiohttp.ClientConnectorCertificateError as exc:
        err = TransferError(f"TLS certificate rejected for {url}: {exc}", url=url)
        err.retryable = False
        raise err from exc
    except aiohttp.ClientSSLError as exc:
        err = TransferError(f"TLS failed for {url}: {exc}", url=url)
        err.retryable = False
        raise err from exc
    except aiohttp.ClientConnectorError as exc:  # before ClientOSError, its base
        msg = f"cannot connect to {url}: {exc.os_error.strerror or exc.os_error}"
        raise ConnectionLost(msg, url=url) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
        msg = f"connection lost to {url}: {exc}"
        raise ConnectionLost(msg, url=url) from exc
    except aiohttp.InvalidURL as exc:
        err = TransferError(f"invalid URL {url}", url=url)
        err.retryable = False
        raise err from exc
    except aiohttp.ClientError as exc:
        msg = f"{type(exc).__name__} from {url}: {exc}"
        raise TransferError(msg, url=url) from exc


def _same_origin(a: str, b: str) -> bool:
    sa, sb = urlsplit(a), urlsplit(b)
    return (sa.scheme, sa.hostname, sa.port) == (sb.scheme, sb.hostname, sb.port)


@contextlib.asynccontextmanager
async def open_stream(
    session: aiohttp.ClientSession, url: str, headers: Mapping[str, str]
) -> AsyncIterator[Stream]:
    """GET ``url``, following redirects ourselves, and yield the 2xx response.

    Following redirects here (not in aiohttp) lets us drop every caller-supplied
    header, credentials included, when a redirect leaves the original origin, and
    refuse schemes other than http(s).

    Raises
    ------
    HTTPStatusError
        A non-2xx final answer (``retry_after`` parsed from the header).
    TransferError
        Connection, TLS or redirect trouble, translated.
    """
    current, sent = url, dict(headers)
    for _ in range(MAX_REDIRECTS + 1):
        with translated(current):
            response = await session.get(current, headers=sent, allow_redirects=False)
        try:
            if response.status in _REDIRECTS and "Location" in response.headers:
                target = urljoin(current, response.headers["Location"])
                if urlsplit(target).scheme not in ("http", "https"):
                    err = TransferError(
                        f"redirect from {current} to a non-http(s) URL {target}",
                        url=url,
                    )
                    err.retryable = False
                    raise err
                if not _same_origin(url, target):
                    sent = {}  # credentials never follow to another host
                current = target
                continue
            if not 200 <= response.status < 300:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise HTTPStatusError(
                    response.status, url=current, retry_after=retry_after
                )
            yield Stream(response)
            return
        finally:
            response.release()
    err = TransferError(f"more than {MAX_REDIRECTS} redirects from {url}", url=url)
    err.retryable = False
    raise err
