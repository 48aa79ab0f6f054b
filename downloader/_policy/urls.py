"""Origins and host keys of URLs, cached per ``scheme://netloc``."""

from __future__ import annotations

import functools
import re
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
_SCHEME_AND_NETLOC = re.compile(r"[^:/?#]*://[^/?#]*")


def origin_of(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in."""
    scheme, host, port = url_parts(url)
    return scheme, host, port or _DEFAULT_PORTS.get(scheme)


def host_key(url: str) -> str:
    """The host and port as written (``host:`` without one): one budget each."""
    _, host, port = url_parts(url)
    return f"{host}:{port or ''}"


def url_parts(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port as written) of ``url``; port -1 when not a number.

    Asked several times per request (limits, caller headers, proxies), so
    the answer is kept per ``scheme://netloc``: the rest of the URL cannot
    change it, and a bulk run has few of them.
    """
    found = _SCHEME_AND_NETLOC.match(url)
    return _parts_of(found.group() if found is not None else url)


@functools.lru_cache(maxsize=1024)
def _parts_of(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: no origin matches it
        port = -1
    return parts.scheme.lower(), parts.hostname or "", port
