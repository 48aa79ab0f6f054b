"""What is on disk for each entry, without touching the network: plan and verify."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal, TypeVar

from . import _storage as storage
from ._exceptions import StorageError
from ._models import Entry
from ._policy import can_resume
from ._storage import FilePaths

Action = Literal["complete", "replace", "resume", "restart", "new", "blocked"]
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``get`` would do with one entry, and why."""

    entry: Entry
    action: Action
    detail: str = ""
    have: int = 0  # bytes on disk that a resume would keep


def inspect(dest: Path, entry: Entry, *, overwrite: bool = False) -> Verdict:
    """Decide from the disk alone; may hash a final file (blocking)."""
    try:
        paths = FilePaths.under(dest, entry.path)
    except StorageError as exc:
        return Verdict(entry, "blocked", str(exc))
    if paths.final.is_dir():
        return Verdict(entry, "blocked", "a directory is in the way")
    if paths.final.exists():
        complete = storage.matches(paths.final, entry.size, entry.checksum)
        if complete is False:
            return Verdict(entry, "replace", "present but size or checksum differs")
        if overwrite:
            return Verdict(entry, "replace", "present; --overwrite given")
        detail = "verified" if complete else "present (nothing to verify against)"
        return Verdict(entry, "complete", detail)
    have = storage.part_size(paths.part)
    if have <= 0:  # -1: no part file at all
        return Verdict(entry, "new")
    state = storage.load_state(paths.state)
    if can_resume(
        have,
        state.validator if state else None,
        saved_url=state.url if state else None,
        url=entry.url,
        has_checksum=entry.checksum is not None,
    ):
        return Verdict(entry, "resume", f"from byte {have:,}", have)
    return Verdict(entry, "restart", f"{have:,} bytes on disk cannot be trusted")


def bounded_map(
    func: Callable[[T], R], items: Iterable[T], *, workers: int
) -> Iterator[R]:
    """``map`` over a thread pool, in order, holding only a few items at a time."""
    with ThreadPoolExecutor(workers) as pool:
        it = iter(items)
        pending: list[Future[R]] = [
            pool.submit(func, x) for x in islice(it, workers * 4)
        ]
        while pending:
            head = pending.pop(0)
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(func, nxt))
            yield head.result()
