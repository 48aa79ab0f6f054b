"""Resume, restart or skip: every decision about the bytes already on disk.

``plan_entry`` is the one answer to "what is to be done with this entry?",
asked by ``get`` (before a file's first try), ``plan`` and ``verify``;
``plan_part`` is its half about a ``.part``, asked again by every try of
``get`` once it holds the file's lock. The rest check answers against what
a resume asked for, and the bytes against the manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from .._exceptions import IntegrityError, ResumeRejected, TransferError
from .._models import Entry
from .answers import Answer, ContentRange, pick_validator

Action = Literal["complete", "hash", "replace", "resume", "restart", "new", "blocked"]
# How a "resume" goes on: one stream from ``have``; the missing segments of a
# split part; or a part already whole (killed before its rename): no transfer.
ResumeKind = Literal["stream", "split", "whole"]


class SavedState(Protocol):
    """What the ``.part``'s state file recorded (storage's ``ResumeState``)."""

    @property
    def url(self) -> str | None: ...
    @property
    def validator(self) -> str | None: ...
    @property
    def size(self) -> int | None: ...
    @property
    def segments(self) -> tuple[tuple[int, int, int], ...] | None: ...


@dataclass(frozen=True, slots=True)
class FinalFacts:
    """The final file as ``stat`` found it; ``verified`` once it was hashed."""

    size: int
    is_dir: bool = False
    verified: bool | None = None  # its checksum matched; None: not hashed


@dataclass(frozen=True, slots=True)
class DiskFacts:
    """What the disk holds for one entry: the facts every plan is made from.

    ``part_size`` is -1 when there is no ``.part``; ``state`` is None when there
    is no state file, or it was not read (``get`` reads it under the lock).
    """

    final: FinalFacts | None = None
    part_size: int = -1
    state: SavedState | None = None
    blocked: str | None = None  # the path cannot be used: why


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one entry, and why (``detail`` is for people)."""

    action: Action
    detail: str = ""
    have: int = 0  # bytes on disk that a resume keeps
    size: int | None = None  # of a resume: the whole file's size, when known
    kind: ResumeKind = "stream"  # of a resume: how it goes on


def plan_entry(facts: DiskFacts, entry: Entry, *, overwrite: bool = False) -> Plan:
    """What to do with ``entry``, given what the disk holds for it.

    A present final file decides first: in the way (a folder), to replace
    (its size differs, or ``overwrite``), complete, or ``hash`` when only its
    checksum can tell (the caller hashes it, then asks again with
    ``verified`` set). Without one, the ``.part`` decides (``plan_part``).
    """
    if facts.blocked is not None:
        return Plan("blocked", facts.blocked)
    final = facts.final
    if final is None:
        return plan_part(
            facts.part_size, facts.state, checksum=entry.checksum is not None
        )
    if final.is_dir:
        return Plan("blocked", "a directory is in the way")
    if entry.size is not None and final.size != entry.size:
        return Plan("replace", "present but its size differs")
    if overwrite:
        return Plan("replace", "present; --overwrite given")
    if entry.checksum is not None:
        if final.verified is None:
            return Plan("hash", "present; only its checksum can tell")
        if not final.verified:
            source = entry.checksum.source
            where = f" (expected from {source})" if source else ""
            return Plan("replace", f"present but its checksum differs{where}")
        return Plan("complete", "verified")
    detail = "size matches" if entry.size is not None else "present"
    return Plan("complete", detail + " (no checksum to verify)")


def plan_part(part_size: int, state: SavedState | None, *, checksum: bool) -> Plan:
    """Resume the ``.part`` (how), restart it, or start new.

    ``part_size`` -1: no part. Its bytes are kept only when the server can
    tell us they still belong to the file (``can_resume``); a split part only
    when it holds every byte its state claims (``segments_resumable``).
    """
    if part_size <= 0:  # -1: no part file at all
        return Plan("new")
    held = held_bytes(part_size, state)
    if state is None or not can_resume(
        part_size, state.validator, saved_url=state.url, has_checksum=checksum
    ):
        return Plan("restart", f"{held:,} bytes on disk cannot be trusted")
    if state.segments is None:
        if state.size == part_size:  # killed between the last byte and the rename
            detail = f"all {part_size:,} bytes on disk; published without a transfer"
            return Plan("resume", detail, part_size, state.size, "whole")
        return Plan("resume", f"from byte {part_size:,}", part_size, state.size)
    if not segments_resumable(part_size, state.size, state.segments):
        detail = f"the part ({part_size:,} bytes) lacks bytes its saved segments claim"
        return Plan("restart", detail)
    count, size = len(state.segments), state.size
    detail = (
        f"{count} segment{'s' if count != 1 else ''}, {held:,} of {size:,} bytes held"
    )
    return Plan("resume", detail, held, size, "split")


def can_resume(
    have: int,
    saved_validator: str | None,
    *,
    saved_url: str | None,
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


def held_bytes(part_size: int, state: SavedState | None) -> int:
    """Bytes a part really holds, so plan and verify never count holes.

    A one-stream part is written from its start: it holds its size. A split
    part is a sparse file of the whole length from the outset, so only each
    segment's saved range ``[start, saved)`` counts (clipped to the part, in
    case it was cut short).
    """
    if part_size <= 0:
        return 0
    if state is None or state.segments is None:
        return part_size
    return sum(
        max(0, min(saved, part_size) - start) for start, saved, _ in state.segments
    )


def resume_headers(have: int, validator: str | None) -> dict[str, str]:
    """Request the rest of a file of which ``have`` bytes are on disk."""
    if have == 0:
        return {}
    headers = {"Range": f"bytes={have}-"}
    if validator:
        headers["If-Range"] = validator
    return headers


def range_headers(start: int, end: int, validator: str | None) -> dict[str, str]:
    """Ask for bytes ``start``-``end`` (inclusive) of the version ``validator``."""
    headers = {"Range": f"bytes={start}-{end}"}
    if validator:
        headers["If-Range"] = validator
    return headers


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


def integrity_error(
    entry: Entry, size: int, digest: str | None, url: str
) -> IntegrityError | None:
    """The mismatch between the bytes and the manifest, if any (size first)."""
    if entry.size is not None and size != entry.size:
        what = "size"
        return IntegrityError(what, expected=str(entry.size), actual=str(size), url=url)
    checksum = entry.checksum
    if checksum is not None and digest is not None and digest != checksum.hexdigest:
        what = "checksum"
        actual = f"{checksum.algorithm}:{digest}"
        expected = checksum.described()
        return IntegrityError(what, expected=expected, actual=actual, url=url)
    return None


def splittable(
    answer: Answer,
    offset: int,
    total: int,
    *,
    allowed: bool,
    min_split_size: int,
    checksum: bool,
) -> bool:
    """Split a fresh file of known size that the server can serve in ranges.

    A 206, or a 200 saying ``Accept-Ranges: bytes``; every extra segment's
    answer is then checked strictly, so a server that claims ranges but
    cannot serve them only costs a restart on one stream. As for resuming,
    a validator or a checksum is required: without either, a file that
    changes on the server would be spliced from two versions. ``allowed``
    is off after a server botched a ranged answer, or with ``split=1``.
    """
    validator = pick_validator(answer.etag, answer.last_modified)
    return (
        allowed
        and offset == 0
        and (answer.status == 206 or answer.accepts_ranges)
        and total >= 2 * min_split_size
        and (validator is not None or checksum)
    )


def announced_mismatch(
    entry: Entry, total: int | None, url: str
) -> TransferError | None:
    """The server announces another size than the manifest: a final error."""
    expected = entry.size
    if expected is not None and total is not None and total != expected:
        msg = f"server announces {total} bytes, the manifest says {expected}"
        return TransferError(msg, url=url, retryable=False)
    return None
