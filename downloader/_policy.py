"""Pure decisions: which headers go where, resume or restart, retry, and waits."""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

from ._exceptions import ResumeRejected, TransferError
from ._settings import BACKOFF_BASE

BACKOFF_CAP = 60.0  # no single wait is longer than this...
RETRY_AFTER_CAP = 600.0  # ...unless the server asked for it (up to 10 minutes)

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


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


def unsupported_transfer_coding(values: list[str]) -> str | None:
    """The first transfer coding we cannot undo, or None when there is none.

    Only a final ``chunked`` is read (aiohttp undoes it). We send no ``TE``,
    so any other coding (``gzip, chunked``, ``chunked, another``) makes the
    body unreadable as file bytes (RFC 9112 6.1): saving it would publish
    compressed or chunk-framed bytes as the file.
    """
    codings = [c.strip().lower() for v in values for c in v.split(",")]
    codings = [c for c in codings if c and c != "identity"]  # old servers: a no-op
    unknown = [c for c in codings if c != "chunked"]
    if unknown:
        return unknown[0]
    return "chunked" if len(codings) > 1 else None  # chunked twice


def ask_entry_again(status: int) -> bool:
    """Should a 4xx from a learned redirect target send us back to the entry URL?

    Presigned targets (S3, GCS, CDN links) expire and then answer 400, 401,
    403, 404 or 410; the entry URL redirects to a fresh one. 416 and 429 are
    about the request or the pace, not about the link.
    """
    return 400 <= status < 500 and status not in (416, 429)


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int
    end: int  # inclusive
    total: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def parse_content_range(value: str | None) -> ContentRange | None:
    """``bytes 10-99/100`` -> ContentRange(10, 99, 100); anything malformed -> None."""
    if not value:
        return None
    match = _CONTENT_RANGE.match(value.strip())
    if not match:
        return None
    start, end = int(match[1]), int(match[2])
    total = None if match[3] == "*" else int(match[3])
    if end < start or (total is not None and end >= total):
        return None
    return ContentRange(start, end, total)


def parse_complete_length(value: str | None) -> int | None:
    """A 416's ``Content-Range: bytes */1000`` -> 1000 (the size); else None."""
    match = _UNSATISFIED_RANGE.match(value.strip()) if value else None
    return int(match[1]) if match else None


def pick_validator(etag: str | None, last_modified: str | None) -> str | None:
    """The If-Range validator: a strong ETag, else Last-Modified, else none.

    Weak ETags (``W/"..."``) are not allowed in If-Range (RFC 9110 13.1.5).
    """
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None


def resume_headers(have: int, validator: str | None) -> dict[str, str]:
    """Request the rest of a file of which ``have`` bytes are on disk."""
    if have == 0:
        return {}
    headers = {"Range": f"bytes={have}-"}
    if validator:
        headers["If-Range"] = validator
    return headers


def can_resume(
    have: int,
    saved_validator: str | None,
    *,
    saved_url: str | None,
    url: str,
    has_checksum: bool,
) -> bool:
    """Whether ``have`` bytes on disk may be continued rather than thrown away.

    Without a validator the server cannot tell us that the file changed, so only
    a checksum (verified at the end) makes appending safe.
    """
    if have <= 0:
        return False
    if saved_validator:
        return True
    return has_checksum and saved_url is not None


def segments_resumable(
    part_size: int, size: int | None, segments: tuple[tuple[int, int, int], ...]
) -> bool:
    """May a split part be resumed? Every byte its state claims must be in it.

    The part grows only as bytes arrive, so it may be shorter than the file
    (or, written by older versions, exactly its size), never longer, and never
    shorter than the end of a segment's saved bytes.
    """
    if size is None or part_size > size:
        return False
    return all(saved == start or saved <= part_size for start, saved, _ in segments)


def resume_offset(
    have: int,
    status: int,
    content_range: ContentRange | None,
    *,
    size: int | None = None,
) -> int:
    """Where the body of this answer starts in the file: ``have`` or 0.

    ``size`` is the file's size as announced when the download began, if known.

    Raises
    ------
    ResumeRejected
        A 206 that does not start at ``have`` (or cannot be read), or that is
        a range of a file of another size: its bytes must not be written
        anywhere, so the file restarts from zero.
    """
    if status == 200:
        return 0  # whole body: the server ignored Range or If-Range failed
    if status == 206:
        if content_range is None:
            msg = "206 answer without a usable Content-Range"
            raise ResumeRejected(msg)
        if content_range.start != have:
            msg = f"asked for bytes from {have}, got a range from {content_range.start}"
            raise ResumeRejected(msg)
        total = content_range.total
        if size is not None and total is not None and total != size:
            msg = (
                f"the server's sizes disagree: it announced {size:,} bytes, and "
                f"now sends bytes from {have:,} of a {total:,}-byte file"
            )
            raise ResumeRejected(msg)
        return have
    msg = f"unexpected status {status} for a download"
    raise ResumeRejected(msg)


def unsatisfiable_resume(
    have: int, announced: int | None, actual: int | None, *, url: str
) -> TransferError:
    """Why asking for the bytes after ``have`` got 416, in words for the user.

    ``announced`` is the size the server gave when the download began,
    ``actual`` the size its 416 gives (``bytes */N``), if it gives one. When
    the body stopped at ``have`` and the server now says that is the whole
    file, its first length was wrong: trying again would only fetch the same
    bytes to hit the same wall, so the error is final for this URL.
    """
    if actual is not None and actual == have and (announced or 0) > have:
        msg = (
            f"body cut short at byte {have:,}: the server announced "
            f"{announced:,} bytes, but asked for the rest it says the file is "
            f"{actual:,} bytes long (its Content-Length is wrong)"
        )
        return TransferError(msg, url=url, retryable=False)
    if actual is not None and actual < have:
        msg = (
            f"the file on the server is now {actual:,} bytes, shorter than "
            f"the {have:,} downloaded before"
        )
    elif announced is not None and announced > have:
        msg = (
            f"the server announced {announced:,} bytes but refuses any past "
            f"byte {have:,} (416 Range Not Satisfiable): its length is wrong "
            "or the file shrank"
        )
    else:
        msg = f"server answered 416 to a resume from byte {have:,}"
    return ResumeRejected(msg, url=url)


def expected_total(
    offset: int, content_length: int | None, content_range: ContentRange | None
) -> int | None:
    """The full size of the file as this answer announces it, if it does."""
    if content_range is not None and content_range.total is not None:
        return content_range.total
    if content_length is not None:
        return offset + content_length
    return None


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), RETRY_AFTER_CAP)


def backoff_delay(
    failures: int,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
    base: float = BACKOFF_BASE,
) -> float:
    """Exponential backoff with full jitter, never shorter than ``Retry-After``."""
    rng = rng or random.Random()
    doublings = min(max(failures - 1, 0), 32)  # 2**32 * base is past any cap
    ceiling = min(BACKOFF_CAP, base * 2**doublings)
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def should_retry(*, retryable: bool, failures: int, retries: int) -> bool:
    """Another try after ``failures`` tries that made no progress?"""
    return retryable and failures <= retries
