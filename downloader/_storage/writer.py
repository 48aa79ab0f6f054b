"""A stream into a ``.part``: batched writes off the loop, background flushes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

from .._exceptions import StorageError
from .._integrity import Hasher
from .fs import datasync, write_all

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
        datasync(path)


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
