"""One process per file: the ``.part`` lock, which dies with its holder."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .._exceptions import StorageError
from .fs import make_folder
from .paths import FilePaths

try:
    import fcntl
except ImportError:  # Windows: no flock; parts are not locked there
    fcntl = None  # type: ignore[assignment]


class PartBusy(StorageError):
    """Another live process holds this file's part lock (``holder``: its pid)."""

    def __init__(self, message: str, *, holder: int | None, final: Path) -> None:
        super().__init__(message)
        self.holder = holder
        self.final = final

    @property
    def waiting(self) -> str:
        """The line a run that waits for the holder shows."""
        who = f" (pid {self.holder})" if self.holder is not None else ""
        return f"waiting: another downloader process{who} is working on {self.final}"


class PartLock:
    """An exclusive OS lock on ``FINAL.part.lock`` while this process works on it.

    ``flock`` dies with its process, so no stale lock ever blocks a later run.
    Taking it does not wait: ``PartBusy`` says another process holds it (the
    caller decides whether to wait). The holder writes its pid into the file,
    so whoever waits can say for whom.
    """

    def __init__(self, paths: FilePaths) -> None:
        self.name = paths.part_name + ".lock"
        self._fd = -1
        for _ in range(3):  # a holder may unlink the file between open and flock
            fd = self._open_and_lock(paths)
            # Still linked: it is the file at our path (nobody renames a lock
            # file). Unlinked: its holder let go between our open and flock.
            if os.fstat(fd).st_nlink > 0:
                self._fd = fd
                _write_pid(fd)
                return
            os.close(fd)
        msg = f"cannot lock {self.name}: it keeps being replaced"
        raise StorageError(msg)

    def _open_and_lock(self, paths: FilePaths) -> int:
        try:
            make_folder(paths.folder_name)
            fd = os.open(self.name, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            msg = f"cannot create {self.name}: {exc.strerror}"
            raise StorageError(msg) from exc
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f" (pid {holder})" if holder is not None else ""
            msg = (
                f"another downloader process{who} is working on {paths.final} "
                f"(it holds {os.path.basename(self.name)})"
            )
            raise PartBusy(msg, holder=holder, final=paths.final) from None
        return fd

    def __enter__(self) -> PartLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Unlink while still holding the lock, so nobody locks a file in limbo."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.name)
        os.close(self._fd)


class LazyLock:
    """A file's ``PartLock``, taken only once its part is to be touched.

    A new small body held in memory is published without a part (see
    ``_commit.publish_fresh``), so most files of a dataset never take one.
    """

    __slots__ = ("_lock", "paths")

    def __init__(self, paths: FilePaths) -> None:
        self.paths = paths
        self._lock: PartLock | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None

    def take(self) -> bool:
        """Take it unless held already (True: taken just now). ``PartBusy`` if
        another live process holds it."""
        if self._lock is not None:
            return False
        self._lock = PartLock(self.paths)
        return True

    def release(self) -> None:
        if self._lock is not None:
            lock, self._lock = self._lock, None
            lock.__exit__()


_pid_line = [b"%10d\n" % os.getpid()]  # this process's, written into each lock


def _new_pid_line() -> None:
    _pid_line[0] = b"%10d\n" % os.getpid()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_pid_line)


def _write_pid(fd: int) -> None:
    if fcntl is None:  # no locks on this system, so nobody waits to read it
        return
    with contextlib.suppress(OSError):  # only a courtesy to whoever waits
        # Fixed width, so it always covers an older holder's pid: no truncate.
        os.pwrite(fd, _pid_line[0], 0)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
