"""The Downloader: a bounded queue fed from the manifest, a pool of workers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Unpack

from .._exceptions import (
    DownloadFailed,
)
from .._http.session import Environment, Session, make_session
from .._http.tls import client_context
from .._manifest import EntriesLike, ShardLike, Sources
from .._models import Entry, Report, Result
from .._progress import NullProgress, ProgressSink
from .._settings import Options, Settings, settings_from
from .._storage import InsideCheck
from .._storage.commit import GroupSync
from .._types import StrPath
from .budget import ConnectionBudget
from .context import RunContext
from .job import FileJob
from .ratelimit import RateLimiter

log = logging.getLogger(__name__)


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
        self._budget = ConnectionBudget(
            per_host=s.per_host, total=s.max_connections, adapt=s.adapt
        )
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
        base_url: str | None = None,
    ) -> Report:
        """Fetch every entry; returns the report once all are done.

        ``shard="K/N"`` keeps only the entries shard K of N owns (see ``stream``).
        ``base_url`` is joined onto a manifest's relative URLs (see ``stream``).

        Raises
        ------
        ManifestError
            The input is unusable; nothing was transferred.
        DownloadFailed
            Only with ``raise_on_failure=True``, when a file failed.
        """
        began = time.monotonic()
        report = Report()
        results = self.stream(entries, fmt=fmt, shard=shard, base_url=base_url)
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
        base_url: str | None = None,
    ) -> AsyncGenerator[Result, None]:
        """Yield one result per entry as each file finishes (not in input order).

        The whole input is checked first (ManifestError before any transfer);
        then at most a few entries per worker are held in memory at a time.
        A consumer that may stop early should wrap this in
        ``contextlib.aclosing`` so the workers stop at once.

        ``shard="K/N"`` (or ``(K, N)``) keeps only the entries whose output
        path hashes to shard K of N, so N runs of one manifest fetch each file
        exactly once between them, whatever the manifest order.

        ``base_url`` is the folder a manifest's relative URLs (such as Common
        Crawl's ``crawl-data/...`` lines) are joined onto; an entry without a
        path then keeps the relative path, folders and all.
        """
        if self._session is None:
            msg = "use 'async with Downloader(...) as dl:' before downloading"
            raise RuntimeError(msg)
        sources = Sources.of(entries, fmt=fmt, shard=shard, base_url=base_url)
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
        jobs = self.settings.jobs
        pool = _Pool(self._context(), jobs)
        tasks = [asyncio.create_task(pool.produce(entries), name="manifest reader")]
        tasks += [
            asyncio.create_task(pool.work(), name=f"worker {i}") for i in range(jobs)
        ]
        try:
            running = jobs
            while running:
                result = await pool.done.get()
                if result is None:
                    running -= 1
                else:
                    yield result
            if pool.failure:
                raise pool.failure[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def hosts(self) -> dict[str, dict[str, int | float | None]]:
        """Per host, so far: the connections it has now (``per_host`` unless it
        pushed back), the requests per second it is paced at (None: unpaced),
        how often it pushed back (429, 503, stalls), and its requests."""
        return self._budget.hosts()

    def _context(self) -> RunContext:
        assert self._session is not None
        return RunContext(
            session=self._session,
            env=self._env,
            budget=self._budget,
            progress=self.progress,
            limiter=self._limiter,
            syncs=self._syncs,
            settings=self.settings,
            dest=self.dest,
            inside=self._inside,
        )


class _Pool:
    """The bounded queues between the manifest reader, the workers and the caller.

    A ``None`` in ``todo`` tells a worker to stop; one in ``done`` says a
    worker stopped. ``failure`` keeps what went wrong outside any one file.
    """

    def __init__(self, ctx: RunContext, jobs: int) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.todo: asyncio.Queue[tuple[int, Entry] | None] = asyncio.Queue(jobs * 2)
        self.done: asyncio.Queue[Result | None] = asyncio.Queue(jobs * 2)
        self.failure: list[BaseException] = []

    async def produce(self, entries: Iterator[Entry]) -> None:
        todo = self.todo
        try:
            for key, entry in enumerate(entries):
                await todo.put((key, entry))
        except Exception as exc:  # a manifest error (or a bug): stop, then say so
            self.failure.append(exc)
        # Not in a ``finally``: once cancelled, nobody takes from the full
        # queue, so these puts would wait forever and the run never ends.
        for _ in range(self.jobs):
            await todo.put(None)

    async def work(self) -> None:
        ctx, todo, done, failure = self.ctx, self.todo, self.done, self.failure
        try:
            while (item := await todo.get()) is not None:
                key, entry = item
                result = await FileJob(ctx, key, entry).run()
                ctx.progress.file_finished(key, result)
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
