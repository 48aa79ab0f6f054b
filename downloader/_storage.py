"""Files on disk: the ``.part`` file, its ``.part.state`` sidecar, atomic publish."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ._exceptions import StorageError

try:
    import fcntl
except ImportError:  # Windows: no flock; parts are not locked there
    fcntl = None  # type: ignore[assignment]
from ._integrity import Hasher
from ._progress import format_bytes

STATE_VERSION = 2


class FilePaths:
    """Where one entry's bytes live: the final name and what lives beside it.

    The hot path uses the names as strings (``final_name``, ``part_name``);
    the ``Path`` objects are made on first use: a bulk run would otherwise
    build three per file, about as costly as the file's own system calls.
    """

    __slots__ = ("_final", "_part", "_state", "final_name", "part_name")

    def __init__(self, final: Path | str) -> None:
        # The longest name beside a file, FINAL.part.state.tmp, is what
        # _portable.SIDECAR reserves room for: a longer one must update it.
        self.final_name = os.fspath(final)
        self.part_name = self.final_name + ".part"
        self._final = final if isinstance(final, Path) else None
        self._part: Path | None = None
        self._state: Path | None = None

    @property
    def final(self) -> Path:
        if self._final is None:
            self._final = Path(self.final_name)
        return self._final

    @property
    def part(self) -> Path:
        if self._part is None:
            self._part = Path(self.part_name)
        return self._part

    @property
    def state(self) -> Path:
        if self._state is None:
            self._state = Path(self.final_name + ".part.state")
        return self._state

    @property
    def folder_name(self) -> str:
        return os.path.dirname(self.final_name) or "."

    def __repr__(self) -> str:
        return f"FilePaths({self.final_name!r})"

    @classmethod
    def of(cls, dest: Path, relative: str) -> FilePaths:
        """The paths for ``relative`` (normalised) under ``dest``; no system calls."""
        base = os.fspath(dest)
        return cls(relative if base == "." else os.path.join(base, relative))

    @classmethod
    def under(
        cls, dest: Path, relative: str, inside: InsideCheck | None = None
    ) -> FilePaths:
        """Paths for ``relative`` under ``dest``, refusing to leave ``dest``.

        Raises
        ------
        StorageError
            The path would resolve outside ``dest`` (for example via a symlink).
        """
        try:
            (inside or InsideCheck(dest))(relative)
        except ValueError as exc:
            raise StorageError(str(exc)) from None
        return cls.of(dest, relative)


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


class InsideCheck:
    """Rejects paths that would land outside ``dest`` through a symlink.

    Remembers the folders it has seen (up to ``limit``), so millions of entries
    in a few folders cost a few ``resolve`` calls.
    """

    def __init__(self, dest: Path, limit: int = 100_000) -> None:
        self.root = dest.resolve()
        self.dest = dest
        self.limit = limit
        self._ok: set[str] = set()

    def __call__(self, relative: str) -> None:
        parent = relative.rpartition("/")[0]
        if parent in self._ok:
            return
        resolved = (self.dest / parent).resolve()
        if resolved != self.root and self.root not in resolved.parents:
            msg = f"path {relative!r} would land outside {self.dest} (via a symlink)"
            raise ValueError(msg)
        if len(self._ok) >= self.limit:
            self._ok.clear()
        self._ok.add(parent)


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


def discard(paths: FilePaths) -> None:
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


def _datasync(path: Path) -> None:
    """Make a file's bytes durable: fdatasync where there is one (Linux), else fsync."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fdatasync(fd) if hasattr(os, "fdatasync") else os.fsync(fd)
    finally:
        os.close(fd)


def sync_and_save(paths: FilePaths, state: ResumeState) -> None:
    """Checkpoint: make the part's bytes durable, then record how far they go."""
    try:
        _datasync(paths.part)
        save_state(paths.state, state)
    except OSError as exc:
        msg = f"cannot save progress of {paths.part}: {exc.strerror}"
        raise StorageError(msg) from exc


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


def publish(paths: FilePaths) -> None:
    """fsync the part, rename it over the final name, drop the state. Atomic."""
    try:
        with paths.part.open("rb+") as f:
            os.fsync(f.fileno())
    except OSError as exc:
        msg = f"cannot publish {paths.final}: {exc.strerror}"
        raise StorageError(msg) from exc
    publish_renamed(paths)


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


def publish_renamed(paths: FilePaths, *, had_state: bool = True) -> None:
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


BATCH_BYTES = 1024 * 1024  # measured: see README "Performance"
# A file's ranges each hold up to two batches: 16 of them at 1 MiB took S3L's
# peak RSS past 64 MiB. Ranges are throttled (that is why they exist), so
# smaller batches cost nothing (bench/README, "Memory of split files").
SEGMENT_BATCH_BYTES = 256 * 1024
BATCH_SECONDS = 0.2  # ...or this old, so slow connections still checkpoint often
SLOW_GAP = 0.02  # chunks further apart than this are written as they arrive
_closing: set[asyncio.Future[None]] = set()  # final writes under way (kept from GC)


FLUSH_EVERY = 64 * 1024 * 1024  # measured: 32-128 MiB all alike (README)


class BackgroundFlush:
    """Flushes a growing part to disk from a thread of its own, every FLUSH_EVERY.

    Without it one stream leaves the whole file dirty in memory for the fsync
    before the rename; on a disk that last fsync was the slowest part of a
    1 GiB download. Writes never wait for a flush: one runs at a time, beside.
    """

    def __init__(self, path: Path, offset: int) -> None:
        self.path = path
        self._flushed = offset
        self._running: asyncio.Future[None] | None = None

    def wrote_up_to(self, end: int) -> None:
        if end - self._flushed < FLUSH_EVERY:
            return
        if self._running is not None and not self._running.done():
            return
        self._flushed = end
        self._running = asyncio.ensure_future(
            asyncio.to_thread(_datasync_quietly, self.path)
        )

    async def close(self) -> None:
        """Wait for a flush still running (its errors only cost speed)."""
        if self._running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._running)


def _datasync_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):  # the fsync before the rename still checks
        _datasync(path)


class PartWriter:
    """Writes a stream of chunks into the part file from ``offset`` on, off the loop.

    Chunks are gathered into batches of about ``BATCH_BYTES`` and each batch is
    written (and hashed) by one call in a worker thread, with ``os.pwritev`` so the
    chunks are never joined into a copy. One batch is written while the next is
    received, so at most two batches are held in memory. Segmented transfers can
    open one writer per segment on the same file, each at its own offset.

    On a memory filesystem (tmpfs) with nothing to hash, the loop writes each
    batch itself: 1 GiB took 1.62 s against 2.17 s with a hop per batch, and
    a third less CPU (bench/README, "Large files on tmpfs").
    """

    def __init__(
        self,
        path: Path,
        offset: int,
        hasher: Hasher | None = None,
        *,
        inline: bool = False,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        """``inline``: write on the event loop (a memory filesystem, no hashing).
        ``batch_bytes``: write once this much has gathered."""
        self.path = path
        self._inline = inline
        self._batch_limit = batch_bytes
        self.position = offset  # bytes handed to write() so far, as a file offset
        self._hasher = hasher
        self._fd = -1
        self._batch: list[bytes] = []
        self._batch_bytes = 0
        self._batch_began = 0.0
        self._last_chunk = 0.0
        self._written = offset
        self.saved = offset  # end of the bytes whose write has completed
        self._pending: asyncio.Future[None] | None = None

    async def __aenter__(self) -> PartWriter:
        try:
            self._fd = await asyncio.to_thread(os.open, self.path, os.O_WRONLY)
        except OSError as exc:
            msg = f"cannot open {self.path}: {exc.strerror}"
            raise StorageError(msg) from exc
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, *exc_info: object
    ) -> None:
        """Write what was received (even on error or cancel), then close the file.

        The bytes received before a dropped connection are good bytes: keeping
        them makes the resume shorter. The last write and the close run as one
        shielded job, so a second cancel cannot close the file under a write.
        """
        if exc_type is None:
            await self.flush()
        keep = exc_type is None or not issubclass(exc_type, StorageError)
        batch, offset = (self._batch if keep else []), self._written
        self._batch, self._batch_bytes = [], 0
        pending, self._pending = self._pending, None
        loop = asyncio.get_running_loop()

        def finish() -> None:
            try:
                if batch:
                    self._write_batch(batch, offset)
            finally:
                os.close(self._fd)

        if self._inline:  # no write runs beside this one: finish right here
            try:
                finish()
            except Exception:
                if exc_type is None:
                    raise
            return

        async def close_after_writes() -> None:
            if pending is not None:
                with contextlib.suppress(Exception):
                    await pending
            await loop.run_in_executor(None, finish)

        job = asyncio.ensure_future(close_after_writes())
        _closing.add(job)
        job.add_done_callback(_closing.discard)
        if exc_type is None:
            await job
        else:
            with contextlib.suppress(Exception):
                await asyncio.shield(job)

    async def write(self, chunk: bytes) -> None:
        if not self._batch:
            self._batch_began = time.monotonic()
        self._batch.append(chunk)
        self._batch_bytes += len(chunk)
        self.position += len(chunk)
        now = time.monotonic()
        slow = now - self._last_chunk > SLOW_GAP  # a trickle: write it as it comes
        self._last_chunk = now
        idle = self._pending is None or self._pending.done()
        if (
            (slow and idle)
            or self._batch_bytes >= self._batch_limit
            or time.monotonic() - self._batch_began >= BATCH_SECONDS
        ):
            await self._submit()

    async def flush(self) -> None:
        """Write out everything received so far."""
        await self._submit()
        await self._wait()

    async def _submit(self) -> None:
        await self._wait()
        if not self._batch:
            return
        batch, offset = self._batch, self._written
        self._batch, self._batch_bytes = [], 0
        self._written += sum(len(c) for c in batch)
        if self._inline:  # tmpfs: a copy into memory, cheaper than a thread hop
            self._write_batch(batch, offset)
            return
        loop = asyncio.get_running_loop()
        self._pending = loop.run_in_executor(None, self._write_batch, batch, offset)

    async def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            await pending

    def _write_batch(self, batch: list[bytes], offset: int) -> None:
        """Runs in a worker thread: write the batch at ``offset``, then hash it."""
        try:
            write_all(self._fd, batch, offset)
        except OSError as exc:
            msg = f"cannot write {self.path}: {exc.strerror}"
            raise StorageError(msg) from exc
        self.saved = offset + sum(len(c) for c in batch)
        if self._hasher is not None:
            for chunk in batch:
                self._hasher.update(chunk)


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
