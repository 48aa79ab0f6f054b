"""The ``.part.state`` file and every transition of a part: h11's rule 1 for disk.

Every change to what a part and its state say together happens here: start
fresh, start split, keep a broken-off small body, checkpoint, forget, and
publish. The order of the steps in each is what makes a crash at any
moment safe; each function says why its order is the safe one.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .._exceptions import StorageError
from .._policy import Answer, pick_validator
from .fs import allocated, check_room, datasync, prepare_part, write_at
from .paths import FilePaths

STATE_VERSION = 2


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What we must remember to resume safely: who sent the bytes, in which version."""

    url: str
    validator: str | None  # strong ETag or Last-Modified of the first answer
    size: int | None  # total size that answer announced
    # Segmented transfers: (start, saved, end) per segment, bytes [start, saved)
    # written at their offsets. The part grows only as bytes arrive (it is
    # never sized ahead), so it may be shorter than ``size``, and holey.
    segments: tuple[tuple[int, int, int], ...] | None = None
    version: int = STATE_VERSION


def load_state(path: Path) -> ResumeState | None:
    """The saved state, or None when absent or unreadable (then we restart)."""
    try:
        raw: Any = json.loads(path.read_text("utf-8"))
        if raw.get("version") != STATE_VERSION:
            return None
        size = raw.get("size")
        segments = raw.get("segments")
        if segments is not None:
            segments = tuple((int(a), int(b), int(c)) for a, b, c in segments)
            if size is None or not segments_cover(segments, int(size)):
                return None
        return ResumeState(
            url=str(raw["url"]),
            validator=raw.get("validator"),
            size=size,
            segments=segments,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def segments_cover(segments: tuple[tuple[int, int, int], ...], size: int) -> bool:
    """Do the segments tile [0, size) in order, each with start <= saved <= end?"""
    at = 0
    for start, saved, end in sorted(segments):
        if start != at or not start <= saved <= end:
            return False
        at = end
    return at == size


def save_state(path: Path, state: ResumeState) -> None:
    """Replace the state file atomically, so a crash never leaves half a state."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(asdict(state), f)
    os.replace(tmp, path)


def start_fresh(paths: FilePaths, url: str, answer: Answer, total: int | None) -> None:
    """Start from zero: empty the part first, then record who sends the bytes.

    The state names ``url``, the URL asked (not where it redirected): a resume
    starts there again.

    In this order a crash in between leaves an empty part, never old bytes
    under a new validator.
    """
    if total is not None:
        check_room(paths, total, reclaimed=allocated(paths.part))
    prepare_part(paths, 0)
    validator = pick_validator(answer.etag, answer.last_modified)
    save_state(paths.state, ResumeState(url, validator, total))


def start_split(paths: FilePaths, url: str, answer: Answer, total: int) -> ResumeState:
    """A fresh segmented file: forget old state first, then start an empty part.

    In this order a crash never leaves old bytes beside a state that claims
    some of them were downloaded. The part is not sized to ``total``: the
    length is only the server's claim, and the segments extend the file as
    their bytes arrive.
    """
    check_room(paths, total, reclaimed=allocated(paths.part))
    with contextlib.suppress(FileNotFoundError):
        paths.state.unlink()
    prepare_part(paths, 0)
    validator = pick_validator(answer.etag, answer.last_modified)
    state = ResumeState(url, validator, total, ((0, 0, total),))
    save_state(paths.state, state)
    return state


def keep_partial(
    paths: FilePaths, url: str, answer: Answer, total: int, chunks: list[bytes]
) -> None:
    """A small body that broke off: keep what arrived as an ordinary part."""
    start_fresh(paths, url, answer, total)
    write_at(paths.part, chunks, 0)


def checkpoint(paths: FilePaths, state: ResumeState) -> None:
    """Checkpoint: make the part's bytes durable, then record how far they go."""
    try:
        datasync(paths.part)
        save_state(paths.state, state)
    except OSError as exc:
        msg = f"cannot save progress of {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc


def forget(paths: FilePaths) -> None:
    """Forget a partial download: its state first, then its bytes.

    In this order a state file never outlives its part, so "no part" means
    "no state" and the small-file path need not look for one.
    """
    for path in (
        paths.state,
        paths.state.with_name(paths.state.name + ".tmp"),
        paths.part,
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(paths: FilePaths) -> None:
    """fsync the part, rename it over the final name, drop the state. Atomic."""
    try:
        with paths.part.open("rb+") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        msg = f"cannot publish {paths.final}: {exc.strerror}"
        raise StorageError(msg) from exc
    rename_into_place(paths)


def rename_into_place(paths: FilePaths, *, had_state: bool = True) -> None:
    """Rename a synced part into place and drop any stale state beside it.

    No fsync of the folder: after a power cut the rename may be lost (the file
    is fetched again), but a final name never holds unsynced bytes.
    """
    try:
        os.replace(paths.part_name, paths.final_name)
        if had_state:
            with contextlib.suppress(FileNotFoundError):
                paths.state.unlink()
    except OSError as exc:
        msg = f"cannot publish {paths.final}: {exc.strerror}"
        raise StorageError(msg) from exc
