"""The Downloader: a bounded queue fed from the manifest, a pool of workers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType

import aiohttp

from . import _storage as storage
from ._budget import ConnectionBudget, host_of
from ._exceptions import (
    DownloadError,
    DownloadFailed,
    HTTPStatusError,
    IntegrityError,
    ResumeRejected,
    StorageError,
    TransferError,
)
from ._integrity import hash_file
from ._models import Entry, Report, Result
from ._policy import (
    backoff_delay,
    can_resume,
    expected_total,
    pick_validator,
    resume_headers,
    resume_offset,
)
from ._progress import NullProgress, ProgressSink
from ._ratelimit import RateLimiter
from ._segments import Segment, SegmentedDownload
from ._sources import EntriesLike, Sources
from ._storage import FilePaths, InsideCheck, ResumeState
from ._transfer import (
    Answer,
    Environment,
    Stream,
    make_session,
    make_ssl_context,
    open_stream,
)
from ._types import StrPath

log = logging.getLogger(__name__)

SMALL_FILE = 1024 * 1024  # bodies up to this size take one thread hop, no state

MiB = 1024 * 1024


@dataclass
class _Tally:
    """Bytes received for one file this run, kept across its tries."""

    bytes: int = 0


class Downloader:
    """Downloads entries into ``dest`` with a pool of workers over one session.

    Parameters
    ----------
    dest:
        Root folder; every output path lies under it.
    jobs:
        Files transferred at once.
    per_host, max_connections:
        Connection limits of the shared connector.
    retries:
        Tries after the first that made no progress, per file.
    timeout:
        Seconds without a byte before a try counts as failed.
    connect_timeout:
        Seconds to set up a connection.
    limit_rate:
        Bytes per second over all transfers, or None.
    headers:
        Extra request headers for every entry.
    overwrite:
        Download again even when a complete file is present.
    progress:
        Where progress goes; silent by default.
    session:
        A caller's own ``aiohttp.ClientSession`` (it stays open afterwards).
    ca_bundle, insecure:
        TLS trust: extra CA file, or no verification at all.
    raise_on_failure:
        Raise ``DownloadFailed`` from ``download`` when any file failed.
    """

    def __init__(
        self,
        dest: StrPath = ".",
        *,
        jobs: int = 8,
        per_host: int = 8,
        max_connections: int = 64,
        split: int = 1,
        min_split_size: int = 32 * MiB,
        retries: int = 5,
        timeout: float = 60.0,
        connect_timeout: float = 30.0,
        limit_rate: float | None = None,
        headers: Mapping[str, str] | None = None,
        overwrite: bool = False,
        progress: ProgressSink | None = None,
        session: aiohttp.ClientSession | None = None,
        ca_bundle: str | None = None,
        insecure: bool = False,
        raise_on_failure: bool = False,
    ) -> None:
        if jobs < 1 or per_host < 1 or max_connections < 1 or retries < 0:
            msg = "jobs, per_host and max_connections must be >= 1, retries >= 0"
            raise ValueError(msg)
        self.dest = Path(dest)
        self.jobs = jobs
        self.per_host = per_host
        self.max_connections = max_connections
        self.split = split  # one connection per file until segmented transfers land
        self.min_split_size = min_split_size
        self.retries = retries
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.headers = {"Accept-Encoding": "identity", **(headers or {})}
        self.overwrite = overwrite
        self.progress: ProgressSink = progress or NullProgress()
        self.raise_on_failure = raise_on_failure
        self._limiter = RateLimiter(limit_rate) if limit_rate else None
        self._ssl = make_ssl_context(ca_bundle, insecure)
        self._session = session
        self._owns_session = session is None
        self._inside = InsideCheck(self.dest)
        self._budget = ConnectionBudget(per_host=per_host, total=max_connections)
        self._env: Environment | None = None

    async def __aenter__(self) -> Downloader:
        self._env = Environment()
        if self._session is None:
            self._session = make_session(
                max_connections=self.max_connections,
                per_host=self.per_host,
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                ssl_context=self._ssl,
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def download(self, entries: EntriesLike, *, fmt: str | None = None) -> Report:
        """Fetch every entry; returns the report once all are done.

        Raises
        ------
        ManifestError
            The input is unusable; nothing was transferred.
        DownloadFailed
            Only with ``raise_on_failure=True``, when a file failed.
        """
        began = time.monotonic()
        report = Report()
        async with contextlib.aclosing(self.stream(entries, fmt=fmt)) as results:
            async for result in results:
                report.add(result)
        report.summary.seconds = time.monotonic() - began
        if self.raise_on_failure and not report.ok:
            raise DownloadFailed(report)
        return report

    async def stream(
        self, entries: EntriesLike, *, fmt: str | None = None
    ) -> AsyncIterator[Result]:
        """Yield one result per entry as each file finishes (not in input order).

        The whole input is checked first (ManifestError before any transfer);
        then at most a few entries per worker are held in memory at a time.
        A consumer that may stop early should wrap this in
        ``contextlib.aclosing`` so the workers stop at once.
        """
        if self._session is None:
            msg = "use 'async with Downloader(...) as dl:' before downloading"
            raise RuntimeError(msg)
        sources = Sources.of(entries, fmt=fmt)
        count, total_bytes = await asyncio.to_thread(sources.check, self.dest)
        self.dest.mkdir(parents=True, exist_ok=True)
        self.progress.run_started(count, total_bytes)
        try:
            async for result in self._run(iter(sources)):
                yield result
        finally:
            self.progress.close()

    async def _run(self, entries: Iterator[Entry]) -> AsyncIterator[Result]:
        todo: asyncio.Queue[tuple[int, Entry] | None] = asyncio.Queue(self.jobs * 2)
        done: asyncio.Queue[Result | None] = asyncio.Queue(self.jobs * 2)
        failure: list[BaseException] = []

        async def produce() -> None:
            try:
                for key, entry in enumerate(entries):
                    await todo.put((key, entry))
            except DownloadError as exc:
                failure.append(exc)
            finally:
                for _ in range(self.jobs):
                    await todo.put(None)

        async def work() -> None:
            try:
                while (item := await todo.get()) is not None:
                    key, entry = item
                    result = await self._fetch(key, entry)
                    self.progress.file_finished(key, result)
                    await done.put(result)
            finally:
                await done.put(None)

        tasks = [asyncio.create_task(produce(), name="manifest reader")]
        tasks += [
            asyncio.create_task(work(), name=f"worker {i}") for i in range(self.jobs)
        ]
        try:
            running = self.jobs
            while running:
                result = await done.get()
                if result is None:
                    running -= 1
                else:
                    yield result
            for task in tasks:
                task.result()  # surfaces a bug in a worker instead of hiding it
            if failure:
                raise failure[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, key: int, entry: Entry) -> Result:
        """One entry from start to finish; never raises for a per-file failure."""
        began = time.monotonic()
        try:
            paths = FilePaths.under(self.dest, entry.path, self._inside)
            found = storage.stat_or_none(paths.final)
            if found is not None and stat.S_ISDIR(found.st_mode):
                msg = f"{paths.final} is a directory; move it out of the way"
                raise StorageError(msg)
            if found is not None and not self.overwrite:
                complete = (entry.size is None or found.st_size == entry.size) and (
                    entry.checksum is None
                    or await asyncio.to_thread(
                        storage.matches, paths.final, entry.size, entry.checksum
                    )
                )
                if complete:
                    return Result(
                        entry,
                        "skipped",
                        size=found.st_size,
                        elapsed_s=time.monotonic() - began,
                        checksum=str(entry.checksum) if entry.checksum else None,
                    )
        except (OSError, StorageError) as exc:
            return Result(
                entry, "failed", elapsed_s=time.monotonic() - began, error=str(exc)
            )
        return await self._fetch_with_retries(key, entry, paths, began)

    async def _fetch_with_retries(
        self, key: int, entry: Entry, paths: FilePaths, began: float
    ) -> Result:
        urls = list(entry.urls)
        tally = _Tally()
        attempts = failures = turn = 0
        free_restart = True
        while True:
            attempts += 1
            url = urls[turn % len(urls)]
            before = tally.bytes
            try:
                size, verified = await self._attempt(key, entry, paths, url, tally)
                return Result(
                    entry,
                    "downloaded",
                    bytes=tally.bytes,
                    size=size,
                    elapsed_s=time.monotonic() - began,
                    attempts=attempts,
                    checksum=verified,
                )
            except StorageError as exc:
                error: DownloadError = exc
                break
            except ResumeRejected as exc:
                error, retry_after = exc, None
                log.info("%s: %s; restarting from zero", entry.path, exc)
                if free_restart:  # the bytes are gone; starting over is no failure
                    free_restart = False
                    continue
                failures += 1
            except IntegrityError as exc:
                error, retry_after = exc, None
                failures += 1
            except TransferError as exc:
                error = exc
                retry_after = getattr(exc, "retry_after", None)
                if not exc.retryable:
                    urls.remove(url)
                    if not urls:
                        break
                    continue  # straight on to the next mirror
                if tally.bytes == before:
                    failures += 1
                turn += 1
            if failures > self.retries:
                break
            delay = backoff_delay(max(failures, 1), retry_after)
            log.info("%s: %s; retrying in %.1fs", entry.path, error, delay)
            await asyncio.sleep(delay)
        return Result(
            entry,
            "failed",
            bytes=tally.bytes,
            elapsed_s=time.monotonic() - began,
            attempts=attempts,
            error=str(error),
        )

    async def _attempt(
        self, key: int, entry: Entry, paths: FilePaths, url: str, tally: _Tally
    ) -> tuple[int, str | None]:
        """One try at one file, holding a connection slot for its host."""
        async with self._budget.slot(url):
            return await self._attempt_in_slot(key, entry, paths, url, tally)

    async def _attempt_in_slot(
        self, key: int, entry: Entry, paths: FilePaths, url: str, tally: _Tally
    ) -> tuple[int, str | None]:
        """One GET into the part file; returns (size, verified checksum)."""
        assert self._session is not None
        on_disk = storage.part_size(paths.part)  # -1: no part, so no state either
        have = max(on_disk, 0)
        state = storage.load_state(paths.state) if have else None
        if have and not can_resume(
            have,
            state.validator if state else None,
            saved_url=state.url if state else None,
            url=url,
            has_checksum=entry.checksum is not None,
        ):
            have = 0
        if have and state is not None and state.segments is not None:
            if state.size == have:  # the part has its full size: resume the segments
                return await self._segmented(key, entry, paths, state, None, tally)
            have = 0
        elif have and state is not None and state.size == have:  # killed before rename
            return await self._finish(entry, paths, have, None, url)
        validator = state.validator if (have and state) else None
        headers = {**self.headers, **entry.headers, **resume_headers(have, validator)}
        if have == 0 and self.split > 1:
            headers["Range"] = "bytes=0-"  # a 206 here proves range support
        try:
            async with open_stream(self._session, url, headers, self._env) as stream:
                answer = stream.answer
                try:
                    offset = resume_offset(have, answer.status, answer.content_range)
                except ResumeRejected:
                    await asyncio.to_thread(storage.discard, paths)
                    raise
                total = expected_total(
                    offset, answer.content_length, answer.content_range
                )
                self._check_announced(entry, total, url)
                if offset == 0 and total is not None and total <= SMALL_FILE:
                    return await self._fetch_small(
                        key, entry, paths, stream, total, tally, had_part=on_disk >= 0
                    )
                if self._splittable(answer, offset, total):
                    assert total is not None
                    state = await asyncio.to_thread(
                        self._begin_segmented, paths, answer, total
                    )
                    return await self._segmented(
                        key, entry, paths, state, stream, tally
                    )
                if offset == 0:
                    await asyncio.to_thread(self._begin, paths, answer, total)
                hasher = None
                if entry.checksum is not None:
                    hasher = entry.checksum.hasher()
                    if offset:
                        hasher = await asyncio.to_thread(
                            hash_file, paths.part, entry.checksum, limit=offset
                        )
                self.progress.file_started(key, entry.path, total, offset)
                async with storage.PartWriter(paths.part, offset, hasher) as writer:
                    async for chunk in stream.chunks():
                        if self._limiter is not None:
                            await self._limiter.acquire(len(chunk))
                        await writer.write(chunk)
                        tally.bytes += len(chunk)
                        self.progress.file_advanced(key, len(chunk))
                    size = writer.position
        except HTTPStatusError as exc:
            if exc.status == 416 and have:  # our part is longer than the file now
                await asyncio.to_thread(storage.discard, paths)
                raise ResumeRejected(str(exc), url=url) from exc
            raise
        if total is not None and size != total:
            msg = f"body ended at byte {size} of {total} from {url}"
            raise TransferError(msg, url=url)
        digest = hasher.hexdigest() if hasher is not None else None
        return await self._finish(entry, paths, size, digest, url)

    def _splittable(self, answer: Answer, offset: int, total: int | None) -> bool:
        """Split only a fresh 206 of known size, into segments of min_split_size+."""
        return (
            self.split > 1
            and offset == 0
            and answer.status == 206
            and total is not None
            and total >= 2 * self.min_split_size
        )

    @staticmethod
    def _begin_segmented(paths: FilePaths, answer: Answer, total: int) -> ResumeState:
        """A fresh segmented file: forget old state first, then size the part.

        In this order a crash never leaves a full-size part of zeros beside a
        state that claims some of its bytes were downloaded.
        """
        with contextlib.suppress(FileNotFoundError):
            paths.state.unlink()
        storage.prepare_part(paths, 0)
        os.truncate(paths.part, total)  # sparse: segments fill it at their offsets
        validator = pick_validator(answer.etag, answer.last_modified)
        state = ResumeState(answer.url, validator, total, ((0, 0, total),))
        storage.save_state(paths.state, state)
        return state

    async def _segmented(
        self,
        key: int,
        entry: Entry,
        paths: FilePaths,
        state: ResumeState,
        first: Stream | None,
        tally: _Tally,
    ) -> tuple[int, str | None]:
        """Fetch the missing segments over several connections, then verify."""
        assert self._session is not None
        assert state.size is not None
        assert state.segments is not None
        session, seg_url, validator = self._session, state.url, state.validator
        same_origin = host_of(seg_url) == host_of(entry.url)
        base = {**self.headers, **entry.headers} if same_origin else dict(self.headers)

        def open_range(start: int, end: int) -> AbstractAsyncContextManager[Stream]:
            headers = {**base, "Range": f"bytes={start}-{end}"}
            if validator:
                headers["If-Range"] = validator
            return open_stream(session, seg_url, headers, self._env)

        async def on_chunk(n: int) -> None:
            if self._limiter is not None:
                await self._limiter.acquire(n)
            tally.bytes += n
            self.progress.file_advanced(key, n)

        segments = [Segment(a, b, c, b) for a, b, c in state.segments]
        done = sum(seg.saved - seg.start for seg in segments)
        self.progress.file_started(key, entry.path, state.size, done)
        download = SegmentedDownload(
            paths,
            segments,
            url=seg_url,
            size=state.size,
            validator=validator,
            split=self.split,
            min_size=self.min_split_size,
            budget=self._budget,
            open_range=open_range,
            on_chunk=on_chunk,
            checksum=entry.checksum,
        )
        try:
            digest = await download.run(first)
        except ResumeRejected:
            await asyncio.to_thread(storage.discard, paths)
            raise
        return await self._finish(entry, paths, state.size, digest, seg_url)

    async def _fetch_small(
        self,
        key: int,
        entry: Entry,
        paths: FilePaths,
        stream: Stream,
        total: int,
        tally: _Tally,
        *,
        had_part: bool,
    ) -> tuple[int, str | None]:
        """A small body: gather it, then hash, write, fsync and rename in one hop.

        If the body breaks off, what arrived is kept as an ordinary part file with
        its state, so the next try resumes like any other file.
        """
        self.progress.file_started(key, entry.path, total, 0)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in stream.chunks():
                if self._limiter is not None:
                    await self._limiter.acquire(len(chunk))
                chunks.append(chunk)
                size += len(chunk)
                tally.bytes += len(chunk)
                self.progress.file_advanced(key, len(chunk))
        except TransferError:
            if chunks:
                await asyncio.to_thread(
                    self._keep_partial, paths, stream.answer, total, chunks
                )
            raise
        url = stream.answer.url
        if size != total:
            msg = f"body ended at byte {size} of {total} from {url}"
            raise TransferError(msg, url=url)
        if entry.size is not None and size != entry.size:
            msg_0 = "size"
            raise IntegrityError(
                msg_0, expected=str(entry.size), actual=str(size), url=url
            )
        checksum = entry.checksum
        digest = await asyncio.to_thread(
            partial(storage.publish_whole, had_part=had_part), paths, chunks, checksum
        )
        if checksum is not None and digest != checksum.hexdigest:
            msg_0 = "checksum"
            raise IntegrityError(
                msg_0,
                expected=str(checksum),
                actual=f"{checksum.algorithm}:{digest}",
                url=url,
            )
        return size, str(checksum) if checksum else None

    async def _finish(
        self, entry: Entry, paths: FilePaths, size: int, digest: str | None, url: str
    ) -> tuple[int, str | None]:
        """Verify size and checksum, then publish; a mismatch throws the bytes away."""
        checksum = entry.checksum
        if checksum is not None and digest is None:
            digest = (
                await asyncio.to_thread(hash_file, paths.part, checksum)
            ).hexdigest()
        if entry.size is not None and size != entry.size:
            await asyncio.to_thread(storage.discard, paths)
            msg = "size"
            raise IntegrityError(
                msg, expected=str(entry.size), actual=str(size), url=url
            )
        if checksum is not None and digest != checksum.hexdigest:
            await asyncio.to_thread(storage.discard, paths)
            msg = "checksum"
            raise IntegrityError(
                msg,
                expected=str(checksum),
                actual=f"{checksum.algorithm}:{digest}",
                url=url,
            )
        await asyncio.to_thread(storage.publish, paths)
        return size, str(checksum) if checksum else None

    @staticmethod
    def _begin(paths: FilePaths, answer: Answer, total: int | None) -> None:
        """Start from zero: empty the part first, then record who sends the bytes.

        In this order a crash in between leaves an empty part, never old bytes
        under a new validator.
        """
        storage.prepare_part(paths, 0)
        validator = pick_validator(answer.etag, answer.last_modified)
        storage.save_state(paths.state, ResumeState(answer.url, validator, total))

    @staticmethod
    def _keep_partial(
        paths: FilePaths, answer: Answer, total: int, chunks: list[bytes]
    ) -> None:
        Downloader._begin(paths, answer, total)
        storage.write_at(paths.part, chunks, 0)

    @staticmethod
    def _check_announced(entry: Entry, total: int | None, url: str) -> None:
        if entry.size is not None and total is not None and total != entry.size:
            err = TransferError(
                f"server announces {total} bytes, the manifest says {entry.size}",
                url=url,
            )
            err.retryable = False
            raise err
