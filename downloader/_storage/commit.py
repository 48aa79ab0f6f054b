"""Small files in groups: written on the event loop, synced many per thread hop.

A thread hop per small file cost more than its HTTP request: every system
call the thread makes hands the GIL back and forth with the loop (about 40
futex calls per file, measured with ``strace -c``). Writing 1 MiB or less into
the page cache is quick enough for the loop itself; only ``fsync`` may wait on
a disk, so the fsyncs of every file waiting at that moment go to one thread
together. A file gets its final name (rename, or linkat for a new one) only
after its own fsync returned, so a final name never holds bytes that are not
durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os

from .._exceptions import StorageError
from .._integrity import Checksum
from .filesystems import Filesystems
from .fs import make_folder, write_all
from .paths import FilePaths
from .state import rename_into_place


class GroupSync:
    """Makes files durable: the fsyncs waiting at one moment share a thread hop.

    On a filesystem kept in memory (tmpfs) an fsync flushes nothing, so there
    is none and no hop at all (measured: 5% of a small file's instructions).
    """

    def __init__(self, mounts: list[tuple[str, str]] | None = None) -> None:
        """``mounts``: (mount point, type) pairs; None reads the system's."""
        self._waiting: list[tuple[int, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.hops = 0  # thread hops so far: fewer than files when they pile up
        self.filesystems = Filesystems(mounts)

    async def sync(self, fd: int, folder: str | None = None) -> None:
        """Return once ``fd``'s bytes are durable; the caller closes ``fd`` after.

        ``folder``: where the file is, so a memory filesystem skips the fsync.
        Cancelled, it still waits for an fsync under way on ``fd`` before it
        lets the caller close it (the number could be reused meanwhile).

        Raises
        ------
        OSError
            From this file's fsync (the others in its group are unaffected).
        """
        if folder is not None and self.filesystems.in_memory(folder):
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_quiet)  # a waiter cancelled meanwhile never looks
        self._waiting.append((fd, done))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="group sync")
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await done
            raise

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[int, asyncio.Future[None]]] = []
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                self.hops += 1
                job = loop.run_in_executor(None, _sync_each, [fd for fd, _ in batch])
                errors = await asyncio.shield(job)
                for (_, done), error in zip(batch, errors, strict=True):
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
            left, self._waiting = self._waiting, []
            for _, done in batch + left:
                done.cancel()


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
            await syncs.sync(fd, paths.folder_name)
        finally:
            os.close(fd)
    except OSError as exc:
        msg = f"cannot write {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc
    rename_into_place(paths, had_state=had_part)
    return digest


class NoTmpfile(Exception):
    """``publish_fresh`` cannot work here: publish through a locked part instead."""


_TMPFILE_UNSUPPORTED = frozenset(
    {errno.EISDIR, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOENT, errno.ENOSYS}
)
_LINK_UNSUPPORTED = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOENT}
)
_no_tmpfile: set[str] = set()  # folders whose filesystem cannot do it
_root_fd: list[int] = []  # "/" opened once: os.link calls linkat only given a dir fd


async def publish_fresh(
    paths: FilePaths,
    chunks: list[bytes],
    checksum: Checksum | None,
    syncs: GroupSync,
) -> str | None:
    """A new small file without a lock: an unnamed file, named once durable.

    The body goes into an ``O_TMPFILE`` (no name, so no other process can
    see or share it, and a crash leaves nothing behind), is synced, then
    ``linkat`` gives it the final name: atomic, and refused if that name
    exists. Returns the digest as ``publish_small`` does.

    Raises
    ------
    NoTmpfile
        Not possible here (no ``O_TMPFILE``, no ``/proc``, or the final name
        exists): the caller takes the lock and publishes through the part.
    StorageError
        The disk failed.
    """
    digest = digest_of(chunks, checksum)
    if checksum is not None and digest != checksum.hexdigest:
        return digest
    folder = paths.folder_name
    flag = getattr(os, "O_TMPFILE", None)
    if flag is None or folder in _no_tmpfile:
        raise NoTmpfile
    try:
        make_folder(folder)
        fd = os.open(folder, flag | os.O_WRONLY, 0o666)
    except OSError as exc:
        if exc.errno in _TMPFILE_UNSUPPORTED:
            _unsupported(folder)
            raise NoTmpfile from exc
        msg = f"cannot write in {folder}: {exc.strerror}"
        raise StorageError(msg) from exc
    try:
        try:
            write_all(fd, chunks, 0)
            await syncs.sync(fd, folder)
        except OSError as exc:
            msg = f"cannot write {paths.final_name}: {exc.strerror}"
            raise StorageError(msg) from exc
        _link(fd, paths)
    finally:
        os.close(fd)
    return digest


def _link(fd: int, paths: FilePaths) -> None:
    if not _root_fd:
        _root_fd.append(os.open("/", os.O_RDONLY))
    try:
        # linkat(AT_SYMLINK_FOLLOW) through /proc names the open file itself;
        # Python uses linkat only when given a directory fd (link() would try
        # to link the /proc symlink, and fail).
        os.link(
            f"/proc/self/fd/{fd}",
            paths.final_name,
            src_dir_fd=_root_fd[0],
            follow_symlinks=True,
        )
    except FileExistsError:
        raise NoTmpfile from None  # published meanwhile, or a name in the way
    except OSError as exc:
        if exc.errno in _LINK_UNSUPPORTED:
            _unsupported(paths.folder_name)
            raise NoTmpfile from exc
        msg = f"cannot publish {paths.final_name}: {exc.strerror}"
        raise StorageError(msg) from exc


def _unsupported(folder: str) -> None:
    if len(_no_tmpfile) > 10_000:
        _no_tmpfile.clear()
    _no_tmpfile.add(folder)
