"""The Downloader: a bounded queue fed from the manifest, a pool of workers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from . import _storage as storage
from ._budget import ConnectionBudget
from ._commit import GroupSync
from ._exceptions import (
    DownloadError,
    DownloadFailed,
    IntegrityError,
    ResumeRejected,
    StorageError,
    TransferError,
)
from ._fetch import FileFetch, LookAgain, RunContext
from ._manifest import EntriesLike, ShardLike, Sources
from ._models import Entry, Report, Result
from ._policy import BACKOFF_BASE, DEFAULT_SPLIT, backoff_delay, should_retry
from ._progress import NullProgress, ProgressSink
from ._ratelimit import RateLimiter
from ._storage import FilePaths, InsideCheck
from ._tls import client_context
from ._transfer import Environment, Session, make_session
from ._types import StrPath

log = logging.getLogger(__name__)


MiB = 1024 * 1024
LOCK_POLL = 0.05  # seconds between looks at a lock another process holds...
LOCK_POLL_MAX = 1.0  # ...doubling up to this


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
    split, min_split_size:
        Ranged connections one large file may use, and the smallest segment.
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
    retry_wait:
        Seconds before the first retry; doubles each time (with jitter).
    wait_for_others:
        When another live process is working on a file in ``dest``, wait for
        it (then skip the file or take over its part); False fails the file.
    """

    def __init__(
        self,
        dest: StrPath = ".",
        *,
        jobs: int = 8,
        per_host: int = 8,
        max_connections: int = 64,
        split: int = DEFAULT_SPLIT,
        min_split_size: int = 32 * MiB,
        retries: int = 5,
        timeout: float = 60.0,
        connect_timeout: float = 30.0,
        limit_rate: float | None = None,
        headers: Mapping[str, str] | None = None,
        overwrite: bool = False,
        progress: ProgressSink | None = None,
        session: Session | None = None,
        ca_bundle: str | None = None,
        insecure: bool = False,
        raise_on_failure: bool = False,
        retry_wait: float = BACKOFF_BASE,
        wait_for_others: bool = True,
    ) -> None:
        if jobs < 1 or per_host < 1 or max_connections < 1 or retries < 0:
            msg = "jobs, per_host and max_connections must be >= 1, retries >= 0"
            raise ValueError(msg)
        self.dest = Path(dest)
        self.jobs = jobs
        self.per_host = per_host
        self.max_connections = max_connections
        self.split = split
        self.min_split_size = min_split_size
        self.retries = retries
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.headers = dict(headers or {})  # RAW_BODY is added on every request
        self.overwrite = overwrite
        self.progress: ProgressSink = progress or NullProgress()
        self.raise_on_failure = raise_on_failure
        self.retry_wait = retry_wait
        self.wait_for_others = wait_for_others
        self._limiter = RateLimiter(limit_rate) if limit_rate else None
        self._tls = (ca_bundle, insecure)
        self._session = session
        self._owns_session = session is None
        self._inside = InsideCheck(self.dest)
        self._budget = ConnectionBudget(per_host=per_host, total=max_connections)
        self._env: Environment | None = None
        self._syncs = GroupSync()

    async def __aenter__(self) -> Downloader:
        self._env = Environment()
        if self._session is None:
            self._session = make_session(
                max_connections=self.max_connections,
                per_host=self.per_host,
                timeout=self.timeout,
                connect_timeout=self.connect_timeout,
                ssl_context=await client_context(*self._tls),
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

    async def download(
        self,
        entries: EntriesLike,
        *,
        fmt: str | None = None,
        shard: ShardLike | None = None,
    ) -> Report:
        """Fetch every entry; returns the report once all are done.

        ``shard="K/N"`` keeps only the entries shard K of N owns (see ``stream``).

        Raises
        ------
        ManifestError
            The input is unusable; nothing was transferred.
        DownloadFailed
            Only with ``raise_on_failure=True``, when a file failed.
        """
        began = time.monotonic()
        report = Report()
        results = self.stream(entries, fmt=fmt, shard=shard)
        async with contextlib.aclosing(results):
            async for result in results:
                report.add(result)
        report.summary.seconds = time.monotonic() - began
        if self.raise_on_failure and not report.ok:
            raise DownloadFailed(report)
        return report

    async def stream(
        self,
        entries: EntriesLike,
        *,
        fmt: str | None = None,
        shard: ShardLike | None = None,
    ) -> AsyncGenerator[Result, None]:
        """Yield one result per entry as each file finishes (not in input order).

        The whole input is checked first (ManifestError before any transfer);
        then at most a few entries per worker are held in memory at a time.
        A consumer that may stop early should wrap this in
        ``contextlib.aclosing`` so the workers stop at once.

        ``shard="K/N"`` (or ``(K, N)``) keeps only the entries whose output
        path hashes to shard K of N, so N runs of one manifest fetch each file
        exactly once between them, whatever the manifest order.
        """
        if self._session is None:
            msg = "use 'async with Downloader(...) as dl:' before downloading"
            raise RuntimeError(msg)
        sources = Sources.of(entries, fmt=fmt, shard=shard)
        inside = InsideCheck(self.dest)
        count, total_bytes = await asyncio.to_thread(sources.check, inside)
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
            except Exception as exc:  # a manifest error (or a bug): stop, then say so
                failure.append(exc)
            # Not in a ``finally``: once cancelled, nobody takes from the full
            # queue, so these puts would wait forever and the run never ends.
            for _ in range(self.jobs):
                await todo.put(None)

        async def work() -> None:
            try:
                while (item := await todo.get()) is not None:
                    key, entry = item
                    result = await self._fetch(key, entry)
                    self.progress.file_finished(key, result)
                    await done.put(result)
            except Exception as exc:  # a bug in a worker surfaces instead of hiding
                failure.append(exc)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the run is stopping
                # Not our cancel: something inside raised it. Say so, and end
                # this worker cleanly, or the run would wait for it forever.
                msg = "a download was cancelled from within"
                failure.append(RuntimeError(msg))
                failure[-1].__cause__ = exc
            await done.put(None)  # likewise not on cancel

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
            if failure:
                raise failure[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, key: int, entry: Entry) -> Result:
        """One entry from start to finish; never raises for a per-file failure.

        The file's lock is taken first when there is something on disk to
        work on (a final file to replace, a part to resume); a new file
        takes it only once it writes a part (``FileFetch``), so a new small
        file, published without a part, never takes one.
        """
        began = time.monotonic()
        lock: storage.LazyLock | None = None
        try:
            paths = FilePaths.under(self.dest, entry.path, self._inside)
            found = storage.stat_or_none(paths.final_name)
            done = await self._complete(entry, paths, began, found)
            if done is not None:
                return done
            lock = storage.LazyLock(paths)
            on_disk = storage.part_size(paths.part_name)
            if found is not None or on_disk >= 0:
                waited = await self._take(key, entry, lock)
                # Another process may have finished it meanwhile: after a wait,
                # or between the look above and the lock (published, let go).
                again = waited or found is None
                now = storage.stat_or_none(paths.final_name) if again else None
                if now is not None:
                    done = await self._complete(entry, paths, began, now)
                    if done is not None:
                        return done
            # Without the lock, the first try can trust this look: no part.
            no_part = on_disk < 0 and not lock.held
            return await self._fetch_with_retries(
                key, entry, paths, began, lock, no_part=no_part
            )
        except (OSError, StorageError) as exc:
            return _failed(entry, began, exc)
        finally:
            if lock is not None:
                lock.release()

    async def _complete(
        self,
        entry: Entry,
        paths: FilePaths,
        began: float,
        found: os.stat_result | None,
    ) -> Result | None:
        """The "skipped" result when the final file (``found``) is complete."""
        if found is not None and stat.S_ISDIR(found.st_mode):
            msg = f"{paths.final} is a directory; move it out of the way"
            raise StorageError(msg)
        if found is None or self.overwrite:
            return None
        complete = (entry.size is None or found.st_size == entry.size) and (
            entry.checksum is None
            or await asyncio.to_thread(
                storage.hashes_match, paths.final, entry.checksum
            )
        )
        if not complete:
            return None
        return Result(
            entry,
            "skipped",
            size=found.st_size,
            elapsed_s=time.monotonic() - began,
            checksum=str(entry.checksum) if entry.checksum else None,
        )

    async def _take(self, key: int, entry: Entry, lock: storage.LazyLock) -> bool:
        """Take the file's lock, waiting while another live process holds it.

        The lock dies with its holder, so the wait ends when that process
        finishes the file (the caller then finds it complete) or dies (its
        part is taken over). Returns whether it had to wait.

        Raises
        ------
        StorageError
            With ``wait_for_others=False``, at once if another process holds it.
        """
        try:
            lock.take()
        except storage.PartBusy as busy:
            await self._wait_for(key, entry, lock, busy)
            return True
        return False

    async def _wait_for(
        self, key: int, entry: Entry, lock: storage.LazyLock, busy: storage.PartBusy
    ) -> None:
        """Poll until the lock another process holds (``busy``) is ours."""
        if not self.wait_for_others:
            msg = f"{busy}; run again once it has finished"
            raise StorageError(msg) from None
        waiting = getattr(self.progress, "file_waiting", None)  # older sinks
        if waiting is not None:
            waiting(key, entry.path, busy.waiting)
        pause = LOCK_POLL
        while True:
            await asyncio.sleep(pause)
            pause = min(pause * 2, LOCK_POLL_MAX)
            try:
                lock.take()
                return
            except storage.PartBusy:
                continue

    def _context(self) -> RunContext:
        assert self._session is not None
        return RunContext(
            session=self._session,
            env=self._env,
            budget=self._budget,
            headers=self.headers,
            progress=self.progress,
            limiter=self._limiter,
            split=self.split,
            min_split_size=self.min_split_size,
            syncs=self._syncs,
        )

    async def _fetch_with_retries(
        self,
        key: int,
        entry: Entry,
        paths: FilePaths,
        began: float,
        lock: storage.LazyLock,
        *,
        no_part: bool = False,
    ) -> Result:
        urls = list(entry.urls)
        fetch = FileFetch(self._context(), key, entry, paths, lock, no_part=no_part)
        tally = fetch.tally
        attempts = failures = turn = 0
        free_restart = True
        while True:
            attempts += 1
            url = urls[turn % len(urls)]
            try:
                size, verified = await fetch.attempt(url)
                return Result(
                    entry,
                    "downloaded",
                    bytes=tally.bytes,
                    size=size,
                    elapsed_s=time.monotonic() - began,
                    attempts=attempts,
                    checksum=verified,
                )
            except (storage.PartBusy, LookAgain) as exc:
                attempts -= 1  # no try: the file turned out to be another's
                if isinstance(exc, storage.PartBusy):
                    await self._wait_for(key, entry, lock, exc)
                now = storage.stat_or_none(paths.final_name)
                done = await self._complete(entry, paths, began, now)
                if done is not None:
                    return done
                continue
            except StorageError as exc:
                error: DownloadError = exc
                break
            except OSError as exc:  # disk trouble not yet named: fail this file only
                error = StorageError(f"{paths.final}: {exc.strerror or exc}")
                break
            except ResumeRejected as exc:
                error, retry_after = exc, None
                tally.forget()  # the bytes were thrown away: start counting anew
                log.info("%s: %s; restarting from zero", entry.path, exc)
                if free_restart:  # the bytes are gone; starting over is no failure
                    free_restart = False
                    continue
                failures += 1
            except IntegrityError as exc:
                error, retry_after = exc, None
                tally.forget()
                failures += 1
            except TransferError as exc:
                error = exc
                retry_after = getattr(exc, "retry_after", None)
                if not exc.retryable:
                    urls.remove(url)
                    if not urls:
                        break
                    continue  # straight on to the next mirror
                if not tally.progressed():  # bytes had before are no progress
                    failures += 1
                    turn += 1  # a mirror may do better; one that moves is kept
            # non-retryable errors left the loop above; these may be tried again
            if not should_retry(
                retryable=True, failures=failures, retries=self.retries
            ):
                break
            delay = backoff_delay(max(failures, 1), retry_after, base=self.retry_wait)
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


def _failed(entry: Entry, began: float, exc: BaseException) -> Result:
    """A file that failed on the disk side before any try was made."""
    return Result(entry, "failed", elapsed_s=time.monotonic() - began, error=str(exc))
