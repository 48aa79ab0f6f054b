"""What a response says, as plain data, and the rules read from it alone."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._exceptions import ConnectionLost, ResumeRejected
from .digests import ServerDigest
from .quota import Quota

_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int
    end: int  # inclusive
    total: int | None

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class Answer:
    """What a response said about its body, as plain data for the decisions."""

    url: str  # after redirects
    status: int
    content_length: int | None
    content_range: ContentRange | None
    etag: str | None
    last_modified: str | None
    accepts_ranges: bool = False  # "Accept-Ranges: bytes" was sent
    quota: Quota | None = None  # the RateLimit headers, if it sent any
    content_type: str | None = None
    digests: tuple[ServerDigest, ...] = ()  # Repr-Digest, x-goog-hash...


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


def is_etag(validator: str | None) -> bool:
    """Is a saved If-Range validator an ETag (quoted), not a Last-Modified date?"""
    return validator is not None and validator.startswith('"')


def expected_total(
    offset: int, content_length: int | None, content_range: ContentRange | None
) -> int | None:
    """The full size of the file as this answer announces it, if it does."""
    if content_range is not None and content_range.total is not None:
        return content_range.total
    if content_length is not None:
        return offset + content_length
    return None


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


def check_range_answer(
    answer: Answer, start: int, end: int, size: int, etag: str | None
) -> None:
    """Refuse any answer to ``bytes=start-end`` but exactly that range of this file.

    Raises
    ------
    ResumeRejected
        Wrong status, range, total, or a changed ETag: nothing may be written.
    """
    cr: ContentRange | None = answer.content_range
    if answer.status != 206 or cr is None:
        msg = f"asked for bytes {start}-{end}, got status {answer.status}"
        raise ResumeRejected(msg, url=answer.url)
    if (cr.start, cr.end, cr.total) != (start, end, size):
        msg = (
            f"asked for bytes {start}-{end}/{size}, "
            f"got {cr.start}-{cr.end}/{cr.total if cr.total is not None else '*'}"
        )
        raise ResumeRejected(msg, url=answer.url)
    if etag and answer.etag and answer.etag != etag:
        msg = f"the file changed on the server (ETag {etag} -> {answer.etag})"
        raise ResumeRejected(msg, url=answer.url)


def cut_short(at: int, total: int | None, url: str) -> ConnectionLost:
    """The body stopped early: say where, so the user sees how far it got."""
    of = f" of {total:,}" if total is not None else ""
    return ConnectionLost(f"body cut short at byte {at:,}{of} from {url}", url=url)
