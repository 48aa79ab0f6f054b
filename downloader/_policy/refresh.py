"""Refresh and lock-file rules: what a lock record holds, the conditional request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

LOCK_FIELDS = ("url", "mirrors", "path", "size", "sha256", "etag", "last_modified")


@dataclass(frozen=True, slots=True)
class Known:
    """What the last lock file said of one complete file."""

    size: int | None = None
    sha256: str | None = None
    etag: str | None = None
    last_modified: str | None = None


def conditional_headers(known: Known | None) -> dict[str, str]:
    """The headers that ask "only if it changed" of a refresh ({}: no validator).

    Both validators go when both are known: a server uses If-None-Match and
    ignores If-Modified-Since then (RFC 9110 13.2.2), and a server that
    knows only dates still answers the date. Weak ETags are fine here (weak
    comparison is what If-None-Match uses), unlike in If-Range.
    """
    if known is None:
        return {}
    headers = {}
    if known.etag:
        headers["If-None-Match"] = known.etag
    if known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    return headers


def lock_record(
    url: str,
    path: str,
    size: int | None,
    sha256: str | None,
    *,
    mirrors: tuple[str, ...] = (),
    etag: str | None = None,
    last_modified: str | None = None,
) -> dict[str, Any] | None:
    """One lock file line for a complete file (None: nothing complete to pin).

    The entry's URL, never a redirect target (presigned targets expire), and
    no headers: a lock file is shared, its readers give their own credentials.
    Fields without a value are left out, so the line reads as a manifest entry.
    """
    if sha256 is None or size is None:
        return None
    record: dict[str, Any] = {"url": url, "path": path, "size": size}
    if mirrors:
        record["mirrors"] = list(mirrors)
    record["sha256"] = sha256
    if etag is not None:
        record["etag"] = etag
    if last_modified is not None:
        record["last_modified"] = last_modified
    return record


def known_from_record(record: Mapping[str, Any]) -> tuple[str, Known]:
    """A lock file line (already parsed JSON) -> its path and what it pins.

    Raises
    ------
    ValueError
        Not an object with a string ``path``, or a field of the wrong type.
    """
    if not isinstance(record, Mapping):
        msg = f"a lock record must be an object, not {type(record).__name__}"
        raise ValueError(msg)
    path = record.get("path")
    if not isinstance(path, str) or not path:
        msg = "a lock record needs a path"
        raise ValueError(msg)
    size = record.get("size")
    if size is not None and (type(size) is not int or size < 0):
        msg = f"size must be a non-negative integer, not {size!r}"
        raise ValueError(msg)
    texts = {}
    for name in ("sha256", "etag", "last_modified"):
        value = record.get(name)
        if value is not None and not isinstance(value, str):
            msg = f"{name} must be a string, not {type(value).__name__}"
            raise ValueError(msg)
        texts[name] = value
    return path, Known(size, texts["sha256"], texts["etag"], texts["last_modified"])


def kept_note(error: str) -> str:
    """A failed refresh's error: the old copy stays, and the user is told so."""
    return f"{error}; the copy already there was kept (refresh failed)"
