"""Every aiohttp client exception becomes one of ours, with the right ``retryable``.

httpx's ``test_httpcore_all_exceptions_mapped`` is the model: when aiohttp
grows an exception, the first test here fails until it is mapped on purpose.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp.client_reqrep import ConnectionKey
from multidict import CIMultiDict, CIMultiDictProxy

from downloader._exceptions import (
    ConnectionLost,
    DownloadError,
    ReadTimeout,
    TransferError,
)
from downloader._http.errors import TRANSLATIONS, _translate, translated

URL = "http://127.0.0.1:1/f.bin"
KEY = ConnectionKey("127.0.0.1", 1, False, True, None, None, None, None)
REFUSED = ConnectionRefusedError(111, "Connection refused")
REQUEST = aiohttp.RequestInfo(
    yarl.URL(URL), "GET", CIMultiDictProxy(CIMultiDict()), yarl.URL(URL)
)


def _subclasses(cls: type[BaseException]) -> Iterator[type[BaseException]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def _aiohttp_errors() -> set[type[BaseException]]:
    found: set[type[BaseException]] = {aiohttp.ClientError}
    found.update(_subclasses(aiohttp.ClientError))
    return {c for c in found if c.__module__.startswith("aiohttp")}


def test_every_aiohttp_client_exception_is_mapped() -> None:
    unmapped = sorted(c.__name__ for c in _aiohttp_errors() - set(TRANSLATIONS))
    assert unmapped == [], "map these in _http/errors.py TRANSLATIONS"


def _instance(cls: type[BaseException]) -> BaseException:
    """One of ``cls``, built as aiohttp itself builds it."""
    if issubclass(cls, aiohttp.ClientConnectorCertificateError):
        return cls(KEY, ssl.SSLCertVerificationError("self-signed"))
    if issubclass(cls, aiohttp.client_exceptions.UnixClientConnectorError):
        return cls("/run/x.sock", KEY, REFUSED)
    if issubclass(cls, aiohttp.ClientConnectorError):
        return cls(KEY, REFUSED)
    if issubclass(cls, aiohttp.ClientResponseError):
        return cls(REQUEST, (), status=502, message="bad")
    if issubclass(cls, aiohttp.ServerFingerprintMismatch):
        return cls(b"a", b"b", "127.0.0.1", 1)
    if issubclass(cls, aiohttp.InvalidURL):
        return cls(URL)
    if issubclass(cls, aiohttp.NonHttpUrlClientError):
        return cls("ftp://x/")
    return cls("boom")


# (class, our class, retryable): what a user sees for each, and whether it is
# worth trying again. Anything not listed must still map to some TransferError.
EXPECTED: list[tuple[type[BaseException], type[DownloadError], bool]] = [
    (TimeoutError, ReadTimeout, True),
    (aiohttp.ServerTimeoutError, ReadTimeout, True),
    (aiohttp.ConnectionTimeoutError, ReadTimeout, True),
    (aiohttp.SocketTimeoutError, ReadTimeout, True),
    (aiohttp.ClientPayloadError, ConnectionLost, True),
    (aiohttp.ClientConnectorError, ConnectionLost, True),
    (aiohttp.ClientConnectorDNSError, ConnectionLost, True),
    (aiohttp.ClientProxyConnectionError, ConnectionLost, True),
    (aiohttp.ServerDisconnectedError, ConnectionLost, True),
    (aiohttp.ClientOSError, ConnectionLost, True),
    (aiohttp.ClientConnectionResetError, ConnectionLost, True),
    (aiohttp.ClientConnectionError, ConnectionLost, True),
    (aiohttp.ClientConnectorCertificateError, TransferError, False),
    (aiohttp.ClientConnectorSSLError, TransferError, False),
    (aiohttp.ServerFingerprintMismatch, TransferError, False),
    (aiohttp.InvalidURL, TransferError, False),
    (aiohttp.InvalidUrlRedirectClientError, TransferError, False),
    (aiohttp.NonHttpUrlClientError, TransferError, False),
    (aiohttp.ClientResponseError, TransferError, True),
    (aiohttp.ClientHttpProxyError, TransferError, True),
    (aiohttp.ClientError, TransferError, True),
]


@pytest.mark.parametrize(
    ("cls", "ours", "retryable"),
    [pytest.param(*case, id=case[0].__name__) for case in EXPECTED],
)
def test_each_translation(
    cls: type[BaseException], ours: type[DownloadError], retryable: bool
) -> None:
    error = _translate(_instance(cls), URL)
    assert type(error) is ours
    assert error.retryable is retryable
    assert error.url == URL
    assert URL in str(error)


@pytest.mark.parametrize("cls", sorted(_aiohttp_errors(), key=str))
def test_every_one_translates_without_error(cls: type[BaseException]) -> None:
    error = _translate(_instance(cls), URL)
    assert isinstance(error, TransferError)
    assert URL in str(error)


def test_translated_raises_ours_from_theirs() -> None:
    cause: Any = aiohttp.ServerDisconnectedError()
    with pytest.raises(ConnectionLost) as caught, translated(URL):
        raise cause
    assert caught.value.__cause__ is cause
    with pytest.raises(KeyError), translated(URL):  # not theirs: untouched
        raise KeyError(URL)
