"""The Downloader: a bounded queue fed from the manifest, a pool of workers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Unpack

from . import _storage as storage
from ._budget import ConnectionBudget
from ._exceptions import (
    DownloadError,
    DownloadFailed,
    IntegrityError,
    ResumeRejected,
    StorageError,
    TransferError,
)
from ._fetch import FileFetch, LookAgain, RunContext, Tally
from ._manifest import EntriesLike, ShardLike, Sources
from ._models import Entry, Report, Result
from ._policy import DiskFacts, FinalFacts, MirrorSet, RetryState, plan_entry
from ._progress import NullProgress, ProgressSink
from ._ratelimit import RateLimiter
from ._settings import Options, Settings, settings_from
from ._storage import FilePaths, GroupSync, InsideCheck
from ._tls import client_context
from ._transfer import Environment, Session, make_session
from ._types import StrPath

log = logging.getLogger(__name__)


LOCK_POLL = 0.05  # seconds between looks at a lock another process holds...
LOCK_POLL_MAX = 1.0  # ...doubling up to this


class Downloader:
    """Downloads entries into ``dest`` with a pool of workers over one session.

    Parameters
    ----------
    dest:
        Root folder; every output path lies under it.
    settings:
        How the run behaves (``Settings``: jobs, limits, retries, timeouts,
        headers, TLS...). Any of its names may be given as a keyword instead,
        on top of ``settings``: ``Downloader("data", jobs=16, retries=2)``.
    progress:
        Where progress goes; silent by default.
    session:
        A caller's own ``aiohttp.ClientSession`` (it stays open afterwards).

    Raises
    ------
    TypeError
        A keyword that is not a setting.
    ValueError
        A setting no run could use (``jobs=0``...).
    """

    def __init__(
        self,
        dest: StrPath = ".",
        settings: Settings | None = None,
        *,
        progress: ProgressSink | None = None,
        session: Session | None = None,
        **options: Unpack[Options],
    ) -> None:
        self.settings = settings_from(settings, options)
        self.dest = Path(dest)
        self.progress: ProgressSink = progress or NullProgress()
        s = self.settings
        self._limiter = RateLimiter(s.limit_rate) if s.limit_rate else None
        self._session = session
        self._owns_session = session is None
        self._inside = InsideCheck(self.dest)
        self._budget = ConnectionBudget(per_host=s.per_host, total=s.max_connections)
        self._env: Environment | None = None
        self._syncs = GroupSync()

    async def __aenter__(self) -> Downloader:
        self._env = Environment()
        if self._session is None:
            s = self.settings
            self._session = make_session(
                max_connections=s.max_connections,
                per_host=s.per_host,
                timeout=s.timeout,
                connect_timeout=s.connect_timeout,
                ssl_context=await client_context(s.ca_bundle, s.insecure),
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
        if self.settings.raise_on_failure and not report.ok:
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
        todo: asyncio.Queue[tuple[int, Entry] | None] = asyncio.Queue(
            self.settings.jobs * 2
        )
        done: asyncio.Queue[Result | None] = asyncio.Queue(self.settings.jobs * 2)
        failure: list[BaseException] = []

        async def produce() -> None:
            try:
                for key, entry in enumerate(entries):
                    await todo.put((key, entry))
            except Exception as exc:  # a manifest error (or a bug): stop, then say so
                failure.append(exc)
            # Not in a ``finally``: once cancelled, nobody takes from the full
            # queue, so these puts would wait forever and the run never ends.
            for _ in range(self.settings.jobs):
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
            asyncio.create_task(work(), name=f"worker {i}")
            for i in range(self.settings.jobs)
        ]
        try:
            running = self.settings.jobs
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
        if found is None:
            return None
        final = FinalFacts(found.st_size, stat.S_ISDIR(found.st_mode))
        plan = plan_entry(DiskFacts(final), entry, overwrite=self.settings.overwrite)
        if plan.action == "hash":
            assert entry.checksum is not None
            verified = await asyncio.to_thread(entry.checksum.matches_file, paths.final)
            final = dataclasses.replace(final, verified=verified)
            plan = plan_entry(
                DiskFacts(final), entry, overwrite=self.settings.overwrite
            )
        if plan.action == "blocked":
            msg = f"{paths.final} is a directory; move it out of the way"
            raise StorageError(msg)
        if plan.action != "complete":
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
        if not self.settings.wait_for_others:
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
            headers=dict(self.settings.headers),
            progress=self.progress,
            limiter=self._limiter,
            split=self.settings.split,
            min_split_size=self.settings.min_split_size,
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
        """Try the file until it is in place or has had its tries (``RetryState``)."""
        fetch = FileFetch(self._context(), key, entry, paths, lock, no_part=no_part)
        mirrors = MirrorSet(entry.urls)
        tries = RetryState(self.settings.retries)
        attempts = 0
        while True:
            attempts += 1
            url = mirrors.current
            try:
                size, verified = await fetch.attempt(url)
                return Result(
                    entry,
                    "downloaded",
                    bytes=fetch.tally.bytes,
                    size=size,
                    elapsed_s=time.monotonic() - began,
                    attempts=attempts,
                    checksum=verified,
                )
            except (storage.PartBusy, LookAgain) as exc:
                attempts -= 1  # no try: the file turned out to be another's
                done = await self._after_another(key, entry, paths, began, lock, exc)
                if done is not None:
                    return done
                continue
            except StorageError as exc:
                error: DownloadError = exc
                break
            except OSError as exc:  # disk trouble not yet named: fail this file only
                error = StorageError(f"{paths.final}: {exc.strerror or exc}")
                break
            except (IntegrityError, TransferError) as exc:
                error = exc
                left = _next_try(exc, url, mirrors, tries, fetch.tally)
                if isinstance(exc, ResumeRejected):
                    log.info("%s: %s; restarting from zero", entry.path, exc)
            if left[0] is None or left[1] is None:
                break
            mirrors, tries = left[0], left[1]
            if tries.wait:
                retry_after = getattr(error, "retry_after", None)
                delay = tries.delay(retry_after, base=self.settings.retry_wait)
                log.info("%s: %s; retrying in %.1fs", entry.path, error, delay)
                await asyncio.sleep(delay)
        return Result(
            entry,
            "failed",
            bytes=fetch.tally.bytes,
            elapsed_s=time.monotonic() - began,
            attempts=attempts,
            error=str(error),
        )

    async def _after_another(
        self,
        key: int,
        entry: Entry,
        paths: FilePaths,
        began: float,
        lock: storage.LazyLock,
        exc: storage.PartBusy | LookAgain,
    ) -> Result | None:
        """Another process holds the file (wait for it) or published it (look)."""
        if isinstance(exc, storage.PartBusy):
            await self._wait_for(key, entry, lock, exc)
        now = storage.stat_or_none(paths.final_name)
        return await self._complete(entry, paths, began, now)


def _next_try(
    error: IntegrityError | TransferError,
    url: str,
    mirrors: MirrorSet,
    tries: RetryState,
    tally: Tally,
) -> tuple[MirrorSet | None, RetryState | None]:
    """After a failed try at ``url``: the URLs and tries left (None: it failed)."""
    if isinstance(error, ResumeRejected):
        tally.forget()  # the bytes were thrown away: start counting anew
        return mirrors, tries.after_restart()
    if isinstance(error, IntegrityError):
        tally.forget()
        return mirrors, tries.after_failure(progressed=False)
    if not error.retryable:  # final for this URL: straight on to the next mirror
        return mirrors.drop(url), tries.at_once()
    if tally.progressed():  # bytes had before are no progress
        return mirrors, tries.after_failure(progressed=True)
    # a mirror may do better; one that moves is kept
    return mirrors.rotate(), tries.after_failure(progressed=False)


def _failed(entry: Entry, began: float, exc: BaseException) -> Result:
    """A file that failed on the disk side before any try was made."""
    return Result(entry, "failed", elapsed_s=time.monotonic() - began, error=str(exc))
