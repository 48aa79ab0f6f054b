"""One large file over several ranged connections: split, steal, checkpoint, hash.

Segments tile the file and all write into the one ``.part`` at their offsets. A new
connection always takes half of the segment with the most bytes left (never below
``min_size``), so the first split and the end-game rebalancing are the same move.
Progress is checkpointed to the state file a few times a second; a failure of any
segment stops the others and is raised to the caller, whose retry resumes them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

from .. import _storage as storage
from .._exceptions import ConnectionLost, HTTPStatusError, ResumeRejected, StorageError
from .._http.stream import Stream
from .._integrity import Checksum, Hasher, hash_range
from .._policy import check_range_answer, is_etag
from .._settings import FAST_ENOUGH
from .._storage import FilePaths, ResumeState
from .._storage.writer import SEGMENT_BATCH_BYTES, BackgroundFlush, PartWriter
from .budget import ConnectionBudget
from .ranges import Segment, contiguous_prefix, split_point

CHECKPOINT_EVERY = 0.25  # seconds: a kill loses at most this much per connection
# A connection at least FAST_ENOUGH is left alone (see _policy), judged first on
# the first connection's first MiB: a throttled one is found out within
# JUDGE_BYTES / FAST_ENOUGH (8 ms), a fast one in about a millisecond.
JUDGE_BYTES = 1024 * 1024
HASH_STEP = 8 * 1024 * 1024  # hash the contiguous prefix once it grew this much

OpenRange = Callable[[int, int], AbstractAsyncContextManager[Stream]]
OnChunk = Callable[[int], Awaitable[None]]


class SegmentedDownload:
    """Drives the segments of one file until all are on disk; returns the digest."""

    def __init__(
        self,
        paths: FilePaths,
        segments: list[Segment],
        *,
        url: str,
        size: int,
        validator: str | None,
        split: int,
        min_size: int,
        budget: ConnectionBudget,
        open_range: OpenRange,
        on_chunk: OnChunk,
        checksum: Checksum | None,
        inline: bool = False,
    ) -> None:
        self.paths = paths
        self.segments = segments
        self.url = url
        self.size = size
        self.validator = validator
        self.etag = validator if is_etag(validator) else None
        self.split = split
        self.min_size = min_size
        self.budget = budget
        self.open_range = open_range
        self.on_chunk = on_chunk
        self._hasher: Hasher | None = checksum.hasher() if checksum else None
        self._inline = inline  # segments write on the loop (a memory filesystem)
        self._hashed = 0
        self._hashing: asyncio.Task[None] | None = None
        self._workers: set[asyncio.Task[None]] = set()
        self._saved_snapshot: tuple[tuple[int, int, int], ...] = ()
        self._received = 0  # body bytes written by every connection, this run
        self._flusher = BackgroundFlush(paths.part, 0)  # counts _received
        self._judged = asyncio.Event()  # set once the first MiB is in

    async def run(self, first: Stream | None) -> str | None:
        """Download every missing byte; the first segment may come already open."""
        if first is not None:
            self.segments[0].busy = True
            self._spawn(self._worker(self.segments[0], first, extra=False))
        else:
            seg = self._next_segment()
            if seg is not None:
                self._spawn(self._worker(seg, None, extra=False))
        ticker = asyncio.create_task(self._tick())
        try:
            if await self._first_is_slow():
                await self._grow()
            while self._workers:
                done, _ = await asyncio.wait(
                    set(self._workers), return_when=asyncio.FIRST_EXCEPTION
                )
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if not self._workers:
                    # An extra connection may have handed its range back after
                    # every other worker left: finish it on the file's own slot.
                    seg = self._next_segment()
                    if seg is not None:
                        self._spawn(self._worker(seg, None, extra=False))
            missing = [s for s in self.segments if s.saved < s.end]
            if missing:  # never publish a file with a hole: the retry resumes it
                gap = min(s.saved for s in missing)
                msg = f"segments ended with bytes missing from {gap:,}"
                raise ConnectionLost(msg, url=self.url)
        finally:
            ticker.cancel()
            for task in self._workers:
                task.cancel()
            await asyncio.gather(ticker, *self._workers, return_exceptions=True)
            await self._flusher.close()
            if contiguous_prefix(self.segments) < self.size:
                await asyncio.shield(self._checkpoint())
        if self._hashing is not None:
            await self._hashing
        if self._hasher is None:
            return None
        await asyncio.to_thread(
            hash_range, self.paths.part, self._hasher, self._hashed, self.size
        )
        return self._hasher.hexdigest()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._workers.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            self._workers.discard(task)

    async def _worker(
        self, seg: Segment | None, first: Stream | None, *, extra: bool
    ) -> None:
        """Work on segments until none is left. An extra connection gives its slot
        back as soon as another file waits for one; its range returns to the pool."""
        try:
            while seg is not None:
                await self._fetch(seg, first, yield_when_wanted=extra)
                first = None
                if extra and self.budget.someone_waiting(self.url):
                    return
                seg = self._next_segment()
        finally:
            if extra:
                self.budget.release(self.url)

    def _next_segment(self) -> Segment | None:
        """An idle unfinished segment, else half of the busiest one."""
        for seg in self.segments:
            if not seg.busy and seg.pos < seg.end:
                seg.busy = True
                return seg
        cut = split_point(self.segments, self.min_size)
        if cut is None:
            return None
        victim, at = cut
        new = Segment(at, at, victim.end, at, busy=True)
        victim.end = at  # the victim stops there; no await in between
        self.segments.append(new)
        return new

    async def _fetch(
        self, seg: Segment, first: Stream | None, *, yield_when_wanted: bool
    ) -> None:
        try:
            if first is not None:
                await self._pump(seg, first, yield_when_wanted)
                first.close()  # its answer runs to the end of the file: drop it
                return
            if seg.pos >= seg.end:
                return
            async with self._open_checked(seg.pos, seg.end - 1) as stream:
                await self._pump(seg, stream, yield_when_wanted)
        finally:
            seg.busy = False

    @contextlib.asynccontextmanager
    async def _open_checked(self, start: int, end: int) -> AsyncIterator[Stream]:
        """A ranged answer that is exactly bytes ``start``-``end`` of this file."""
        try:
            async with self.open_range(start, end) as stream:
                if stream.answer.quota is not None:  # a quota counts ranges too
                    self.budget.learn(self.url, stream.answer.quota)
                check_range_answer(stream.answer, start, end, self.size, self.etag)
                yield stream
        except HTTPStatusError as exc:
            if exc.status != 416:
                raise
            # The range lies past the end: the size the split is based on is
            # wrong. One stream, from zero, will find out what is true.
            real = exc.complete_length
            msg = (
                f"asked for bytes {start:,}-{end:,} of the {self.size:,} announced, "
                f"the server says the file is {real:,} bytes long"
                if real is not None
                else f"asked for bytes {start:,}-{end:,} of the {self.size:,} "
                "announced, the server answered 416 (Range Not Satisfiable)"
            )
            raise ResumeRejected(msg, url=self.url) from exc

    async def _pump(
        self, seg: Segment, stream: Stream, yield_when_wanted: bool
    ) -> None:
        writer = PartWriter(
            self.paths.part,
            seg.pos,
            inline=self._inline,
            batch_bytes=SEGMENT_BATCH_BYTES,
        )
        seg.writer = writer
        try:
            async with writer:
                async for chunk in stream.chunks():
                    room = seg.end - seg.pos
                    if room <= 0:
                        break
                    if len(chunk) > room:
                        chunk = chunk[:room]
                    await writer.write(chunk)
                    seg.pos += len(chunk)
                    self._received += len(chunk)
                    self._flusher.wrote_up_to(self._received)
                    if self._received >= JUDGE_BYTES:
                        self._judged.set()
                    seg.saved = writer.saved
                    await self.on_chunk(len(chunk))
                    if seg.pos >= seg.end:
                        break
                    if yield_when_wanted and self.budget.someone_waiting(self.url):
                        stream.close()
                        return  # the rest of the segment waits for a connection
        finally:
            seg.saved = writer.saved
            seg.writer = None
        if seg.pos < seg.end:
            msg = f"connection for bytes {seg.start}-{seg.end - 1} ended at {seg.pos}"
            raise ConnectionLost(msg, url=self.url)

    async def _first_is_slow(self) -> bool:
        """Is one connection slower than FAST_ENOUGH? Decided within 8 ms.

        Not when the first connection ended first (done, or failed: the
        failure is raised by ``run`` and the retry starts over).
        """
        judged = asyncio.ensure_future(self._judged.wait())
        try:
            done, _ = await asyncio.wait(
                {judged, *self._workers},
                timeout=JUDGE_BYTES / FAST_ENOUGH,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            judged.cancel()
        return not done

    async def _grow(self) -> None:
        """Add connections while slots are idle and there is work worth splitting."""
        busy = sum(1 for s in self.segments if s.busy)
        while busy < self.split and await self.budget.try_slot(self.url):
            seg = self._next_segment()
            if seg is None:
                self.budget.release(self.url)
                return
            self._spawn(self._worker(seg, None, extra=True))
            busy += 1

    async def _tick(self) -> None:
        last = time.monotonic()
        received, at = self._received, last
        while True:
            await asyncio.sleep(CHECKPOINT_EVERY)
            now = time.monotonic()
            busy = sum(1 for s in self.segments if s.busy) or 1
            if (self._received - received) / (now - at) / busy < FAST_ENOUGH:
                await self._grow()  # throttled: split, and steal at the end
            received, at = self._received, now
            self._hash_ahead()
            if time.monotonic() - last >= CHECKPOINT_EVERY:
                await self._checkpoint()
                last = time.monotonic()

    async def _checkpoint(self) -> None:
        snapshot = tuple(
            (s.start, s.on_disk, s.end)
            for s in sorted(self.segments, key=lambda s: s.start)
        )
        if snapshot == self._saved_snapshot:
            return
        state = ResumeState(self.url, self.validator, self.size, snapshot)
        with contextlib.suppress(StorageError):
            await asyncio.to_thread(storage.checkpoint, self.paths, state)
            self._saved_snapshot = snapshot

    def _hash_ahead(self) -> None:
        """Hash the part's contiguous prefix while the rest still downloads."""
        if self._hasher is None or (self._hashing and not self._hashing.done()):
            return
        upto = contiguous_prefix(self.segments)
        if upto - self._hashed < HASH_STEP:
            return
        start, self._hashed = self._hashed, upto
        self._hashing = asyncio.create_task(
            asyncio.to_thread(hash_range, self.paths.part, self._hasher, start, upto)
        )
