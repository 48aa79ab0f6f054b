"""What is on disk for each entry, without touching the network: plan and verify."""

from __future__ import annotations

import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from . import _storage as storage
from ._exceptions import StorageError
from ._models import Entry
from ._policy import can_resume, segments_resumable
from ._storage import FilePaths, InsideCheck, ResumeState

Action = Literal["complete", "replace", "resume", "restart", "new", "blocked"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``get`` would do with one entry, and why."""

    entry: Entry
    action: Action
    detail: str = ""
    have: int = 0  # bytes on disk that a resume would keep
    size: int | None = None  # of a resume: the whole file's size, when known


def held_bytes(part_size: int, state: ResumeState | None) -> int:
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


def inspect(
    dest: Path,
    entry: Entry,
    *,
    overwrite: bool = False,
    inside: InsideCheck | None = None,
) -> Verdict:
    """Decide from the disk alone; may hash a final file (blocking)."""
    verdict = quick_look(dest, entry, overwrite=overwrite, inside=inside)
    return verdict if verdict is not None else hashed_look(dest, entry)


def quick_look(
    dest: Path,
    entry: Entry,
    *,
    overwrite: bool = False,
    inside: InsideCheck | None = None,
) -> Verdict | None:
    """Decide with a few ``stat`` calls; None when only hashing the file can tell."""
    try:
        paths = FilePaths.under(dest, entry.path, inside)
    except StorageError as exc:
        return Verdict(entry, "blocked", str(exc))
    found = storage.stat_or_none(paths.final)
    if found is not None:
        if stat.S_ISDIR(found.st_mode):
            return Verdict(entry, "blocked", "a directory is in the way")
        if entry.size is not None and found.st_size != entry.size:
            return Verdict(entry, "replace", "present but its size differs")
        if overwrite:
            return Verdict(entry, "replace", "present; --overwrite given")
        if entry.checksum is not None:
            return None
        detail = "size matches" if entry.size is not None else "present"
        return Verdict(entry, "complete", detail + " (no checksum to verify)")
    have = storage.part_size(paths.part)
    if have <= 0:  # -1: no part file at all
        return Verdict(entry, "new")
    state = storage.load_state(paths.state)
    held = held_bytes(have, state)
    if not can_resume(
        have,
        state.validator if state else None,
        saved_url=state.url if state else None,
        url=entry.url,
        has_checksum=entry.checksum is not None,
    ):
        return Verdict(entry, "restart", f"{held:,} bytes on disk cannot be trusted")
    size = state.size if state else None
    if state is None or state.segments is None:
        return Verdict(entry, "resume", f"from byte {have:,}", held, size)
    if not segments_resumable(have, size, state.segments):  # the rule get follows
        detail = f"the part ({have:,} bytes) lacks bytes its saved segments claim"
        return Verdict(entry, "restart", detail)
    count = len(state.segments)
    detail = (
        f"{count} segment{'s' if count != 1 else ''}, {held:,} of {size:,} bytes held"
    )
    return Verdict(entry, "resume", detail, held, size)


def hashed_look(dest: Path, entry: Entry) -> Verdict:
    """A present final file with a checksum: hash it (blocking)."""
    final = FilePaths.of(dest, entry.path).final
    if storage.matches(final, entry.size, entry.checksum):
        return Verdict(entry, "complete", "verified")
    return Verdict(entry, "replace", "present but its checksum differs")


def inspect_all(
    dest: Path, entries: Iterable[Entry], *, jobs: int
) -> Iterator[Verdict]:
    """Verdicts in input order; only files that must be hashed go to threads.

    At most ``4 * jobs`` verdicts wait at a time, so memory stays flat.
    """
    inside = InsideCheck(dest)
    waiting: deque[Verdict | Future[Verdict]] = deque()
    with ThreadPoolExecutor(jobs) as pool:
        for entry in entries:
            verdict = quick_look(dest, entry, inside=inside)
            waiting.append(
                verdict
                if verdict is not None
                else pool.submit(hashed_look, dest, entry)
            )
            while waiting and (
                len(waiting) > 4 * jobs or not isinstance(waiting[0], Future)
            ):
                head = waiting.popleft()
                yield head.result() if isinstance(head, Future) else head
        for head in waiting:
            yield head.result() if isinstance(head, Future) else head
