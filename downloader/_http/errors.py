"""aiohttp's exceptions become ours here, and only here (one table, tested whole)."""

from __future__ import annotations

from collections.abc import Callable

import aiohttp

from .._exceptions import ConnectionLost, ReadTimeout, TransferError


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
