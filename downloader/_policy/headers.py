"""The one credential rule: which of the caller's headers may go to a URL."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .urls import origin_of, url_parts


def headers_for(
    url: str,
    origin: str,
    global_headers: Mapping[str, str],
    entry_headers: Mapping[str, str],
) -> dict[str, str]:
    """The caller's headers that may be sent to ``url``: all or none.

    Caller headers (``-H`` and the entry's own) may carry credentials, so they
    go only to the origin (scheme, host, port) of the URL the caller named.
    Every request of a file asks this: each redirect hop, every segment and
    every resume. An https -> http downgrade on the same host is another
    origin too.
    """
    if origin_of(url) != origin_of(origin):
        return {}
    return merge_headers(global_headers, entry_headers)


def netrc_may_go(url: str, origin: str, *, named: bool) -> bool:
    """May ``url``'s .netrc credentials go with a request the caller began at
    ``origin``? At the caller's origin, yes. On a redirect elsewhere, only an
    entry that names the host (``machine``, not ``default``), and never over
    http after https.
    """
    if origin_of(url) == origin_of(origin):
        return True
    if url_parts(origin)[0] == "https" != url_parts(url)[0]:
        return False
    return named


def merge_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Layers of headers, a later one winning; names compared without case.

    A plain dict merge would send both ``Authorization`` and ``authorization``
    (or a caller's ``range`` beside ours): HTTP names are case-insensitive.
    """
    merged: dict[str, str] = {}
    spelled: dict[str, str] = {}  # lower-case name -> the spelling kept
    for layer in layers:
        for name, value in layer.items():
            old = spelled.get(name.lower())
            if old is not None:
                del merged[old]
            spelled[name.lower()] = name
            merged[name] = value
    return merged


@dataclass(frozen=True, slots=True)
class CallerHeaders:
    """The headers a caller gave for one file, and the URL whose origin gets them."""

    origin: str
    global_headers: Mapping[str, str] = field(default_factory=dict)
    entry_headers: Mapping[str, str] = field(default_factory=dict)

    def for_url(self, url: str) -> dict[str, str]:
        return headers_for(url, self.origin, self.global_headers, self.entry_headers)
