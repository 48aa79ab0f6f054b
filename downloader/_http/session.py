"""The one session of a run, and the environment (proxies, .netrc) read once."""

from __future__ import annotations

import base64
import netrc
import os
import ssl
import urllib.request
from pathlib import Path
from typing import TypeAlias

import aiohttp

from .._policy import netrc_may_go, url_parts
from .._version import USER_AGENT

Session: TypeAlias = aiohttp.ClientSession  # so other modules need not import aiohttp

READ_BUFFER = 256 * 1024  # measured: same speed as 4 MiB, 30 MB less peak RSS
# aiohttp reads header lines up to 8190 bytes; real servers send longer ones
# (cookies, CSP, presigned Link headers: an 18 KB line in curl's test 1205).
MAX_HEADER_LINE = 64 * 1024


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
