"""Plan and verify: what is on disk for each entry, per ``plan_entry``; no network."""

from __future__ import annotations

import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import _storage as storage
from ._exceptions import StorageError
from ._models import Entry
from ._policy import DiskFacts, FinalFacts, Plan, plan_entry
from ._policy.resume import Action
from ._settings import JOBS_START
from ._storage import FilePaths, InsideCheck


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``get`` would do with one entry, and why."""

    entry: Entry
    action: Action
    detail: str = ""
    have: int = 0  # bytes on disk that a resume would keep
    size: int | None = None  # of a resume: the whole file's size, when known

    @classmethod
    def of(cls, entry: Entry, plan: Plan) -> Verdict:
        return cls(entry, plan.action, plan.detail, plan.have, plan.size)


def look(dest: Path, entry: Entry, inside: InsideCheck | None = None) -> DiskFacts:
    """What the disk holds for ``entry``: a few ``stat`` calls and the state file."""
    try:
        paths = FilePaths.under(dest, entry.path, inside)
    except StorageError as exc:
        return DiskFacts(blocked=str(exc))
    found = storage.stat_or_none(paths.final)
    if found is not None:
        return DiskFacts(FinalFacts(found.st_size, stat.S_ISDIR(found.st_mode)))
    part_size = storage.part_size(paths.part)
    state = storage.load_state(paths.state) if part_size > 0 else None
    return DiskFacts(part_size=part_size, state=state)


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
    plan = plan_entry(look(dest, entry, inside), entry, overwrite=overwrite)
    return None if plan.action == "hash" else Verdict.of(entry, plan)


def hashed_look(dest: Path, entry: Entry) -> Verdict:
    """A present final file with a checksum: hash it (blocking)."""
    assert entry.checksum is not None
    final = FilePaths.of(dest, entry.path).final
    try:
        found = final.stat()
    except FileNotFoundError:  # gone since the quick look
        return Verdict.of(entry, plan_entry(DiskFacts(), entry))
    verified = entry.checksum.matches_file(final)
    facts = DiskFacts(FinalFacts(found.st_size, stat.S_ISDIR(found.st_mode), verified))
    return Verdict.of(entry, plan_entry(facts, entry))


def inspect_all(
    dest: Path, entries: Iterable[Entry], *, jobs: int | None
) -> Iterator[Verdict]:
    """Verdicts in input order; only files that must be hashed go to threads.

    ``jobs`` files are hashed at once (None: ``JOBS_START``; more would only
    queue at the disk). At most ``4 * jobs`` verdicts wait at a time, so
    memory stays flat.
    """
    jobs = jobs or JOBS_START
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
