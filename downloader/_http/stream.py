"""One GET: redirects followed by us (the credential rule on every hop), the body."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from .._exceptions import DownloadError, HTTPStatusError, TransferError
from .._policy import (
    Answer,
    CallerHeaders,
    checksum_request,
    merge_headers,
    parse_complete_length,
    parse_content_range,
    parse_quota,
    parse_retry_after,
    server_digests,
    unsupported_transfer_coding,
)
from .errors import translated
from .session import Environment

MAX_REDIRECTS = 10
_REDIRECTS = {301, 302, 303, 307, 308}
# On every request, whoever's session it is: byte ranges must be file bytes
# (CDNs ignore Range when gzip is advertised). A caller's -H may override it.
RAW_BODY = {"Accept-Encoding": "identity"}


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
            quota=parse_quota(headers.get),
            content_type=headers.get("Content-Type"),
            digests=server_digests(lambda name: headers.getall(name, [])),
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
        request_headers |= checksum_request(current, request_headers)  # S3's sha256
        with translated(current):
            response = await session.get(
                current, headers=request_headers, allow_redirects=False, proxy=proxy
            )
        try:
            target = _redirect_target(response, current, url)
            if target is not None:
                current = target
                continue
            refused = _refusal(response, current)
            if refused is not None:
                raise refused
            yield Stream(response)
            return
        finally:
            response.release()
    msg = f"more than {MAX_REDIRECTS} redirects from {url}"
    raise TransferError(msg, url=url, retryable=False)


def _redirect_target(
    response: aiohttp.ClientResponse, current: str, url: str
) -> str | None:
    """Where a redirect points (None: not a redirect); only http(s) is followed."""
    if response.status not in _REDIRECTS or "Location" not in response.headers:
        return None
    target = urljoin(current, response.headers["Location"])
    if urlsplit(target).scheme not in ("http", "https"):
        msg = f"redirect from {current} to a non-http(s) URL {target}"
        raise TransferError(
            msg,
            url=url,
            retryable=False,
        )
    return target


def _refusal(response: aiohttp.ClientResponse, current: str) -> DownloadError | None:
    """Why this final answer cannot be saved as the file, if it cannot."""
    if not 200 <= response.status < 300:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is None and response.status in (429, 503):
            quota = parse_quota(response.headers.get)  # a spent quota says when
            retry_after = quota.reset if quota is not None else None
        complete_length = None
        if response.status == 416:
            complete_length = parse_complete_length(
                response.headers.get("Content-Range")
            )
        return HTTPStatusError(
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
        host = f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname
        msg = f"unsupported transfer coding {coding!r} from {host}"
        return TransferError(msg, url=current, retryable=False)
    return None
