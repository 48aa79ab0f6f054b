"""Manifest fields -> a checked Entry: entry_from_fields and its validators."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from .._exceptions import ManifestError
from .._integrity import Checksum
from .._models import Entry, default_path
from .paths import _CONTROL, _SURROGATE, check_path
from .relative import BASE_HINT

_CHECKSUM_FIELDS = ("checksum", "sha256", "md5", "sha1", "sha512")
FIELDS: tuple[str, ...] = (
    "url",
    "mirrors",
    "path",
    "size",
    *_CHECKSUM_FIELDS,
    "headers",
)
# Lock file fields a manifest reads past: a refresh reads them (_lockfile.py).
LOCK_ONLY: tuple[str, ...] = ("etag", "last_modified")
_STRENGTH = ("md5", "sha1", "sha256", "blake2b", "sha512")  # kept when several given
_URL_BAD = re.compile(r"[\s\x00-\x1f\x7f]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 header name
_DIGITS = re.compile(r"[0-9]+")


def entry_from_fields(
    fields: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
) -> Entry:
    """Build an :class:`Entry` from manifest fields (SPEC section 2).

    Parameters
    ----------
    fields:
        ``url``, ``mirrors``, ``path``, ``size``, ``checksum``, ``sha256``,
        ``md5``, ``sha1``, ``sha512``, ``headers``. ``None`` or a blank string
        means "not set"; ``mirrors`` may be a space-separated string and
        ``headers`` a JSON object string (as in CSV cells).
    defaults:
        Values for the fields the entry does not set. A checksum field in the
        entry replaces every checksum default.

    Raises
    ------
    ValueError
        With the reason: missing or non-http(s) URL, bad path, size,
        checksum or headers, conflicting checksums, or an unknown field.
    """
    if not isinstance(fields, Mapping):
        msg = f"an entry must be an object, not {type(fields).__name__}"
        raise ValueError(msg)
    given = _set_fields(fields)
    if defaults:
        has_checksum = any(name in given for name in _CHECKSUM_FIELDS)
        for name, value in _set_fields(defaults).items():
            if name not in given and not (has_checksum and name in _CHECKSUM_FIELDS):
                given[name] = value
    if "url" not in given:
        msg = "missing url"
        raise ValueError(msg)
    url = _check_url(given["url"], "url")
    mirrors = given.get("mirrors", ())
    if isinstance(mirrors, str):
        mirrors = mirrors.split()
    if not isinstance(mirrors, list | tuple):
        msg = f"mirrors must be a list of URLs, not {type(mirrors).__name__}"
        raise ValueError(msg)
    return Entry(
        url=url,
        path=_entry_path(given.get("path"), url),
        mirrors=tuple(_check_url(mirror, "mirror") for mirror in mirrors),
        size=_size(given.get("size")),
        checksum=_checksum(given),
        headers=_headers(given.get("headers", {})),
    )


def quick_path(item: Any, defaults: Mapping[str, Any] | None = None) -> str | None:
    """The output path a raw manifest item will have, without the full checks.

    None when only those checks can tell (or will refuse the item). Whenever
    it returns a path, the full check gives the same path or an error: a
    shard must never skip an entry it owns (tests hold it to that).
    """
    path: Any
    url: Any
    if isinstance(item, str):
        item = {"url": item}
    if type(item) is dict or isinstance(item, Mapping):  # (the ABC check is slow)
        path, url = item.get("path"), item.get("url")
        if defaults and path in (None, ""):
            path = defaults.get("path")
        if defaults and url in (None, ""):
            url = defaults.get("url")
    else:
        return None
    try:
        if path in (None, ""):
            path = default_path(_check_url(url, "url"))  # the URL as the check keeps it
        return check_path(path) if isinstance(path, str) and path else None
    except ValueError:
        return None


def coerce_entries(
    items: Iterable[str | Mapping[str, Any] | Entry], *, source: str = "<entries>"
) -> Iterator[Entry]:
    """Turn URL strings, field mappings and entries into checked entries.

    Raises
    ------
    ManifestError
        An item is unusable; ``line`` is its 1-based index.
    """
    for index, item in enumerate(items, 1):
        if isinstance(item, Entry):
            item = {
                "url": item.url,
                "mirrors": item.mirrors,
                "path": item.path,
                "size": item.size,
                "checksum": None if item.checksum is None else str(item.checksum),
                "headers": item.headers,
            }
        yield _to_entry(item, None, source, index)


def _to_entry(
    item: Any, defaults: Mapping[str, Any] | None, source: str, line: int, at: str = ""
) -> Entry:
    try:
        if isinstance(item, str):
            item = {"url": item}
        elif not isinstance(item, Mapping):
            msg = f"an entry must be an object or a URL string, not {_kind(item)}"
            raise ValueError(msg)
        return entry_from_fields(item, defaults=defaults)
    except ValueError as exc:
        msg = f"{at}{exc}"
        raise ManifestError(msg, source=source, line=line) from None


def _set_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    for name in fields:
        if name not in FIELDS and name not in LOCK_ONLY:
            raise ValueError(_unknown_field(name))
    return {
        k: v
        for k, v in fields.items()
        if v is not None and v != "" and k not in LOCK_ONLY
    }


def _unknown_field(name: object) -> str:
    close = difflib.get_close_matches(str(name).lower(), FIELDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {name!r} ({hint}known fields: {', '.join(FIELDS)})"


# The common, plainly valid URL: scheme, a DNS name or IPv4 host, optional port,
# then no whitespace, control characters or lone surrogates. Anything else takes
# the full check.
_PLAIN_URL = re.compile(
    r"(?i:https?)://[A-Za-z0-9][A-Za-z0-9.-]*(?::(\d{1,5}))?"
    r"(?:[/?][^\x00-\x20\x7f\ud800-\udfff]*)?"
)


def _check_url(value: Any, what: str) -> str:
    if isinstance(value, str):
        plain = _PLAIN_URL.fullmatch(value)
        if plain and (plain[1] is None or int(plain[1]) <= 65535):
            return value
    if not isinstance(value, str):
        msg = f"{what} must be a string, not {_kind(value)}"
        raise ValueError(msg)
    url = value.strip()
    if not url:
        msg = f"empty {what}"
        raise ValueError(msg)
    if _URL_BAD.search(url):
        msg = f"{what} {url!r} contains whitespace or a control character"
        raise ValueError(msg)
    if _SURROGATE.search(url):
        msg = f"{what} {url!r} is not valid Unicode (a lone surrogate escape)"
        raise ValueError(msg)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        msg = f"malformed {what} {url!r}: {exc}"
        raise ValueError(msg) from None
    if not parts.scheme:
        msg = f"{what} {url!r} has no scheme (want http:// or https://); {BASE_HINT}"
    elif parts.scheme.lower() not in ("http", "https"):
        msg = f"unsupported scheme {parts.scheme!r} in {what} {url!r}"
        msg += " (only http and https)"
    elif not parts.hostname:
        msg = f"{what} {url!r} has no host"
    else:
        return url
    raise ValueError(msg)


def _entry_path(path: Any, url: str) -> str:
    if path is not None:
        return check_path(path)
    name = default_path(url)
    if not name:
        ends = "ends in '/'" if urlsplit(url).path else "has no path"
        msg = f"no path given and the URL {ends}"
        raise ValueError(msg)
    try:
        return check_path(name)
    except ValueError as exc:
        msg = f"no path given and the URL's file name is unusable: {exc}"
        raise ValueError(msg) from None


def _size(value: Any) -> int | None:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    if value is None or (type(value) is int and value >= 0):
        return value
    msg = f"size must be a non-negative integer, not {value!r}"
    raise ValueError(msg)


def _checksum(fields: Mapping[str, Any]) -> Checksum | None:
    found: list[tuple[str, Checksum]] = []
    for name in _CHECKSUM_FIELDS:
        if name not in fields:
            continue
        if not isinstance(fields[name], str):
            msg = f"{name} must be a string, not {_kind(fields[name])}"
            raise ValueError(msg)
        algorithm = None if name == "checksum" else name
        checksum = Checksum.parse(fields[name], algorithm=algorithm)
        for other_name, other in found:
            if other.algorithm == checksum.algorithm and other != checksum:
                msg = f"conflicting checksums: {other_name} {other}, {name} {checksum}"
                raise ValueError(msg)
        found.append((name, checksum))
    if not found:
        return None
    return max((c for _, c in found), key=lambda c: _STRENGTH.index(c.algorithm))


def _headers(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            msg = f"headers {value!r} is not a JSON object"
            raise ValueError(msg) from None
    if not isinstance(value, Mapping):
        msg = f"headers must be an object of names to values, not {_kind(value)}"
        raise ValueError(msg)
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            msg = f"header {name!r}: {text!r}: names and values must be strings"
        elif any(c in name + text for c in "\r\n"):
            msg = f"header {name!r} contains CR or LF (header injection)"
        elif not _TOKEN.fullmatch(name):
            msg = f"invalid header name {name!r}"
        elif _CONTROL.search(text.replace("\t", " ")):
            msg = f"header {name!r} value contains a control character"
        elif _SURROGATE.search(name + text):
            msg = f"header {name!r} is not valid Unicode (a lone surrogate escape)"
        else:
            continue
        raise ValueError(msg)
    return dict(value)


def _kind(value: object) -> str:
    return type(value).__name__
