"""Small files in groups: written on the event loop, synced many per thread hop.

A thread hop per small file cost more than its HTTP request: every system
call the thread makes hands the GIL back and forth with the loop (about 40
futex calls per file, measured with ``strace -c``). Writing 1 MiB or less into
the page cache is quick enough for the loop itself; only ``fsync`` may wait on
a disk, so the fsyncs of every file waiting at that moment go to one thread
together. A file is renamed into place only after its own fsync returned, so
a final name never holds bytes that are not durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from functools import partial

from ._exceptions import StorageError
from ._integrity import Checksum
from ._storage import FilePaths, make_folder, publish_renamed, write_all

_OCTAL = re.compile(r"\\([0-7]{3})")  # mountinfo writes a space as \040
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})  # fsync there does nothing


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    """(mount point, filesystem type) of each line of ``/proc/self/mountinfo``."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, kinds = left.split(), right.split()
        if sep and len(fields) >= 5 and kinds:
            point = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
            mounts.append((point, kinds[0]))
    return mounts


def filesystem_at(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the filesystem holding absolute ``path``: its last, deepest mount."""
    best, kind = -1, None
    for point, fstype in mounts:
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= best:  # later lines are mounted over earlier
            best, kind = len(point), fstype
    return kind


def sync_is_noop(fstype: str | None) -> bool:
    """fsync on a filesystem kept only in memory (tmpfs) has nothing to flush."""
    return fstype in MEMORY_FILESYSTEMS


def _mounts() -> list[tuple[str, str]] | None:
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            return parse_mountinfo(f.read())
    except OSError:  # not Linux: assume every folder needs its fsyncs
        return None


class GroupSync:
    """Makes files durable: the fsyncs waiting at one moment share a thread hop.

    On a filesystem kept in memory (tmpfs) an fsync flushes nothing, so the
    file is only closed: no hop at all (measured: 5% of a small file's
    instructions).
    """

    def __init__(self, mounts: list[tuple[str, str]] | None = None) -> None:
        """``mounts``: (mount point, type) pairs; None reads the system's."""
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.hops = 0  # thread hops so far: fewer than files when they pile up
        self._noop: dict[str, bool] = {}  # folder -> its fsyncs do nothing
        self._mount_table = mounts

    def _needless(self, folder: str) -> bool:
        known = self._noop.get(folder)
        if known is None:
            if self._mount_table is None:
                self._mount_table = _mounts() or []
            kind = filesystem_at(os.path.realpath(folder), self._mount_table)
            known = sync_is_noop(kind)
            if len(self._noop) > 10_000:
                self._noop.clear()
            self._noop[folder] = known
        return known

    async def sync(self, fd: int, folder: str | None = None) -> None:
        """Return once ``fd``'s bytes are durable. ``fd`` is closed in any case.

        ``folder``: where the file is, so a memory filesystem skips the fsync.

        Raises
        ------
        OSError
            From this file's fsync (the others in its group are unaffected).
        """
        if folder is not None and self._needless(folder):
            os.close(fd)
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_quiet)  # a waiter cancelled meanwhile never looks
        self._waiting.append((fd, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="group sync")
        await asyncio.shield(done)  # cancelled, the fd is still closed after its sync

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[int, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                fds = [fd for fd, _ in batch]
                self.hops += 1
                job = loop.run_in_executor(None, _sync_each, fds)
                try:
                    errors = await asyncio.shield(job)
                except asyncio.CancelledError:
                    job.add_done_callback(partial(_close_after, fds))
                    raise
                for (fd, done), error in zip(batch, errors, strict=True):
                    os.close(fd)
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
                batch = []
        finally:
            self._runner = None
            # Only reached with futures open when cancelled: the run is stopping.
            # The batch's fds close when its fsyncs return, the rest's now.
            left, self._waiting = self._waiting, []
            for _, done in batch + left:
                done.cancel()
            _close_all([fd for fd, _ in left])


def _sync_each(fds: list[int]) -> list[OSError | None]:
    """Runs in a worker thread: fsync each file, noting each one's error."""
    errors: list[OSError | None] = []
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def _close_after(fds: list[int], _job: object) -> None:
    _close_all(fds)


def _quiet(done: asyncio.Future[None]) -> None:
    if not done.cancelled():
        done.exception()  # marks it retrieved: no "never retrieved" warning


def digest_of(chunks: list[bytes], checksum: Checksum | None) -> str | None:
    """The hex digest of a body held in memory (None without a checksum)."""
    if checksum is None:
        return None
    hasher = checksum.hasher()
    for chunk in chunks:
        hasher.update(chunk)
    return hasher.hexdigest()


async def publish_small(
    paths: FilePaths,
    chunks: list[bytes],
    checksum: Checksum | None,
    syncs: GroupSync,
    *,
    had_part: bool = True,
) -> str | None:
    """A body held in memory: hash, and only if it matches write, sync, rename.

    No state file: an interrupted small file is simply fetched again. Returns
    the hex digest (None without a checksum); a digest that does not match
    ``checksum`` is returned without writing anything.

    Raises
    ------
    StorageError
        The part could not be written or synced, or the rename failed.
    """
    digest = digest_of(chunks, checksum)
    if checksum is not None and digest != checksum.hexdigest:
        return digest
    try:
        make_folder(paths.folder_name)
        fd = os.open(paths.part_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            write_all(fd, chunks, 0)
        except BaseException:
            os.close(fd)
            raise
        await syncs.sync(fd, paths.folder_name)
    except OSError as exc:
        msg = f"cannot write {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc
    publish_renamed(paths, had_state=had_part)
    return digest
