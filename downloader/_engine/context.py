"""What the tries of a run share (RunContext), and what one file's tries keep."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import _storage as storage
from .._http.session import Environment, Session
from .._policy import Known
from .._progress import ProgressSink
from .._settings import Settings
from .._storage import FilePaths, InsideCheck
from .._storage.commit import GroupSync
from .budget import ConnectionBudget
from .ratelimit import RateLimiter


@dataclass(frozen=True)
class RunContext:
    """What every try needs from its run: the session, limits and settings."""

    session: Session
    env: Environment | None
    budget: ConnectionBudget
    progress: ProgressSink
    limiter: RateLimiter | None
    syncs: GroupSync
    settings: Settings  # split, min_split_size, headers... of the run
    dest: Path
    inside: InsideCheck
    # A lock file is written: pin every complete file (sha256, validators).
    want_sha256: bool = False
    # What the previous lock file pinned, by path: a refresh's validators.
    known: Mapping[str, Known] = field(default_factory=dict)


@dataclass
class Tally:
    """Bytes received for one file this run, kept across its tries.

    ``reached`` is how far into the file the try under way has got (bytes
    held); ``furthest`` the most any earlier try held. A try that only
    fetches again bytes already had made no progress, whatever it received.
    """

    bytes: int = 0
    reached: int = 0
    furthest: int = 0

    def start(self, held: int) -> None:
        """A try's body begins with ``held`` bytes of the file in place."""
        self.reached = held

    def forget(self) -> None:
        """The bytes on disk were thrown away (a bad range, a wrong checksum)."""
        self.reached = self.furthest = 0

    def progressed(self) -> bool:
        """Did the try just ended get past the furthest byte reached before?"""
        moved = self.reached > self.furthest
        self.furthest = max(self.furthest, self.reached)
        return moved


class NotModified(Exception):
    """A refresh's conditional request was answered 304: the copy is current."""


class LookAgain(Exception):
    """The final file appeared while this try took the file's lock: is it done?"""


class FileClaim:
    """The file's lock, held from the moment a part is about to be touched."""

    __slots__ = ("lock", "paths")

    def __init__(self, lock: storage.LazyLock, paths: FilePaths) -> None:
        self.lock = lock
        self.paths = paths

    @property
    def held(self) -> bool:
        return self.lock.held

    def take(self) -> None:
        """Hold the file's lock from here on: a part is about to be touched.

        Raises
        ------
        PartBusy
            Another live process holds it.
        LookAgain
            Taken just now, but meanwhile another process published the file.
        """
        taken = self.lock.take()
        if taken and storage.stat_or_none(self.paths.final_name) is not None:
            raise LookAgain

    def take_if_free(self) -> bool:
        """Take the lock if it is free (to keep a broken-off body as a part)."""
        try:
            self.take()
        except (storage.PartBusy, LookAgain):
            return False
        return True
