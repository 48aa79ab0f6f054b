"""Files on disk: the ``.part`` file, its ``.part.state`` sidecar, atomic publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiofiles
from aiofiles.threadpool.binary import AsyncBufferedIOBase

from ._exceptions import StorageError
from ._integrity import Checksum, hash_file

STATE_VERSION = 1


@dataclass(frozen=True, slots=True)
class FilePaths:
    """Where one entry's bytes live: the final name and what lives beside it."""

    final: Path
    part: Path
    state: Path

    @classmethod
    def under(cls, dest: Path, relative: str) -> FilePaths:
        """Paths for ``relative`` under ``dest``, refusing to leave ``dest``.

        Raises
        ------
        StorageError
            The path would resolve outside ``dest`` (for example via a symlink).
        """
        final = dest / relative
        root = dest.resolve()
        parent = final.parent.resolve()
        if parent != root and root not in parent.parents:
            msg = f"{relative}: resolves outside the destination {dest}"
            raise StorageError(msg)
        part = final.with_name(final.name + ".part")
        return cls(final, part, part.with_name(part.name + ".state"))


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What we must remember to resume safely: who sent the bytes, in which version."""

    url: str
    validator: str | None  # strong ETag or Last-Modified of the first answer
    size: int | None  # total size that answer announced
    version: int = STATE_VERSION


def load_state(path: Path) -> ResumeState | None:
    """The saved state, or None when absent or unreadable (then we restart)."""
    try:
        raw: Any = json.loads(path.read_text("utf-8"))
        if raw.get("version") != STATE_VERSION:
            return None
        return ResumeState(
            url=str(raw["url"]),
            validator=raw.get("validator"),
            size=raw.get("size"),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def save_state(path: Path, state: ResumeState) -> None:
    """Replace the state file atomically, so a crash never leaves half a state."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        json.dump(asdict(state), f)
    os.replace(tmp, path)


def part_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def discard(paths: FilePaths) -> None:
    """Forget a partial download: its bytes and its state."""
    for path in (
        paths.part,
        paths.state,
        paths.state.with_name(paths.state.name + ".tmp"),
    ):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def prepare_part(paths: FilePaths, offset: int) -> None:
    """Make sure the folder exists and the part file holds exactly ``offset`` bytes."""
    try:
        paths.final.parent.mkdir(parents=True, exist_ok=True)
        with paths.part.open("ab") as f:
            f.truncate(offset)
    except OSError as exc:
        msg = f"cannot write {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc


def matches(path: Path, size: int | None, checksum: Checksum | None) -> bool | None:
    """Does the file at ``path`` hold what is expected? None: nothing to check.

    Blocking (it may hash the whole file): run it in a thread.
    """
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return False
    if size is not None and actual != size:
        return False
    if checksum is not None:
        return hash_file(path, checksum).hexdigest() == checksum.hexdigest
    return True if size is not None else None


def publish(paths: FilePaths) -> None:
    """fsync the part, rename it over the final name, drop the state. Atomic."""
    try:
        with paths.part.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(paths.part, paths.final)
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()
        _fsync_dir(paths.final.parent)
    except OSError as exc:
        msg = f"cannot publish {paths.final}: {exc.strerror}"
        raise StorageError(msg) from exc


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class PartWriter:
    """Writes a stream of chunks into the part file starting at ``offset``.

    Segmented transfers open one writer per segment on the same file, each at its
    own offset, so no segment files need joining later.
    """

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self.position = offset
        self._file: AsyncBufferedIOBase | None = None

    async def __aenter__(self) -> PartWriter:
        try:
            self._file = await aiofiles.open(self.path, "r+b", buffering=0)
            await self._file.seek(self.position)
        except OSError as exc:
            msg = f"cannot open {self.path}: {exc.strerror}"
            raise StorageError(msg) from exc
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._file is not None:
            await self._file.close()

    async def write(self, chunk: bytes) -> None:
        assert self._file is not None
        try:
            await self._file.write(chunk)
        except OSError as exc:
            msg = f"cannot write {self.path}: {exc.strerror}"
            raise StorageError(msg) from exc
        self.position += len(chunk)


async def run_blocking(func: Any, *args: Any) -> Any:
    """Disk work off the event loop."""
    return await asyncio.to_thread(func, *args)
