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
from functools import partial

from ._exceptions import StorageError
from ._integrity import Checksum
from ._storage import FilePaths, make_folder, publish_renamed, write_all


class GroupSync:
    """Makes files durable: the fsyncs waiting at one moment share a thread hop."""

    def __init__(self) -> None:
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.hops = 0  # thread hops so far: fewer than files when they pile up

    async def sync(self, fd: int) -> None:
        """Return once ``fd``'s bytes are durable. ``fd`` is closed in any case.

        Raises
        ------
        OSError
            From this file's fsync (the others in its group are unaffected).
        """
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
        await syncs.sync(fd)
    except OSError as exc:
        msg = f"cannot write {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc
    publish_renamed(paths, had_state=had_part)
    return digest
