"""The OS line: stat, room on the disk, folders, writes at offsets, syncs.

Everything here is a thin, blocking call; what fsspec-style targets would
replace. The rules of when each may run live in ``state.py``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .._exceptions import StorageError
from .._progress import format_bytes
from .paths import FilePaths


def stat_or_none(path: Path | str) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None


def part_size(path: Path | str) -> int:
    """Bytes in the part file; -1 when there is none."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


def datasync(path: Path) -> None:
    """Make a file's bytes durable: fdatasync where there is one (Linux), else fsync."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
    finally:
        os.close(fd)


def check_room(paths: FilePaths, needed: int, *, reclaimed: int = 0) -> None:
    """Refuse a length the part's filesystem cannot hold, before any byte is written.

    A length is a server's claim: a lying Content-Length must fail the file
    at once, not fill the disk (or a quota) or leave a giant part behind.
    ``reclaimed``: bytes about to be freed (an old part that will be emptied).

    Raises
    ------
    StorageError
        ``needed`` bytes are more than the filesystem has free.
    """
    folder = paths.final.parent
    try:
        make_folder(folder)
        free = _free_bytes(folder) + reclaimed
    except OSError:  # cannot tell: the writes will say if the disk fills
        return
    if needed > free:
        msg = (
            f"needs {format_bytes(needed)}, only {format_bytes(free)} free on {folder}"
        )
        raise StorageError(msg)


def _free_bytes(folder: Path) -> int:
    """Bytes this process may still write there (root may use ext4's reserve)."""
    if not hasattr(os, "statvfs"):  # Windows
        return shutil.disk_usage(folder).free
    st = os.statvfs(folder)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return blocks * st.f_frsize


def allocated(path: Path) -> int:
    """Bytes a file really takes on disk (a sparse file: less than its size)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return 0
    blocks = getattr(st, "st_blocks", None)  # not on Windows
    return st.st_size if blocks is None else min(st.st_size, blocks * 512)


def prepare_part(paths: FilePaths, offset: int) -> None:
    """Make sure the folder exists and the part file holds exactly ``offset`` bytes."""
    try:
        make_folder(paths.final.parent)
        with paths.part.open("ab") as f:
            f.truncate(offset)
    except OSError as exc:
        msg = f"cannot write {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc


def write_at(path: Path, chunks: list[bytes], offset: int) -> None:
    """Write ``chunks`` into an existing file at ``offset`` (blocking)."""
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            write_all(fd, chunks, offset)
        finally:
            os.close(fd)
    except OSError as exc:
        msg = f"cannot write {path}: {exc.strerror}"
        raise StorageError(msg) from exc


_made_folders: set[str] = set()  # folders known to exist (saves a mkdir per file)


def make_folder(folder: Path | str) -> None:
    name = os.fspath(folder)
    if name not in _made_folders:
        os.makedirs(name, exist_ok=True)
        if len(_made_folders) > 100_000:
            _made_folders.clear()
        _made_folders.add(name)


def write_all(fd: int, batch: list[bytes], offset: int) -> None:
    """Write every byte of ``batch`` at ``offset``, however the OS splits it."""
    if not hasattr(os, "pwritev"):  # Windows: one joined write
        os.lseek(fd, offset, os.SEEK_SET)
        data = memoryview(b"".join(batch))
        while data:
            data = data[os.write(fd, data) :]
        return
    views = [memoryview(c) for c in batch if c]
    while views:
        done = os.pwritev(fd, views[:1024], offset)  # IOV_MAX is 1024 on Linux
        offset += done
        while views and done >= len(views[0]):
            done -= len(views[0])
            views.pop(0)
        if done:
            views[0] = views[0][done:]
