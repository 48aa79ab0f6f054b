"""The Downloader: a bounded queue fed from the manifest, a pool of workers, retries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Unpack

from .._events import Emit, EventSink, fan_out
from .._exceptions import (
    DownloadFailed,
)
from .._http.session import Environment, Session, make_session
from .._http.tls import client_context
from .._lockfile import LockWriter, read_known
from .._manifest import EntriesLike, ShardLike, Sources, SumsFile
from .._models import Entry, Report, Result
from .._policy import Known
from .._progress import ProgressSink
from .._settings import Options, Settings, settings_from
from .._storage import InsideCheck
from .._storage.commit import GroupSync
from .._types import StrPath
from .budget import ConnectionBudget
from .context import RunContext
from .flight import FileSlots
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
    on_event:
        Called with one dict per state change of a file (``queued``,
        ``started``, ``resumed``, ``retry``, ``throttled``, ``done``,
        ``failed``, ``skipped``...), as it happens, from the event loop: it
        must return quickly. The README's "Events for programs" lists the
        fields; ``done``/``failed``/``skipped`` carry ``Result.to_dict()``.
    session:
        A caller's own ``aiohttp.ClientSession`` (it stays open afterwards).
    lock:
        Write a lock file here: one JSON line per complete file (``url``,
        ``path``, ``size``, ``sha256``, ``etag``, ``last_modified``), itself
        a manifest. Each run rewrites it (into ``LOCK.tmp``, renamed over it
        once every entry has a result). Results then carry ``sha256``.
        With ``refresh=True`` the validators are read from it first.

    Raises
    ------
    TypeError
        A keyword that is not a setting.
    ValueError
        A setting no run could use (``jobs=0``...), or ``refresh`` without
        a ``lock`` to keep the validators in.
    """

    def __init__(
        self,
        dest: StrPath = ".",
        settings: Settings | None = None,
        *,
        progress: ProgressSink | None = None,
        session: Session | None = None,
        lock: StrPath | None = None,
        on_event: Emit | None = None,
        **options: Unpack[Options],
    ) -> None:
        self.settings = settings_from(settings, options)
        if self.settings.refresh and lock is None:
            msg = "refresh needs a lock file (lock=...): its validators are kept there"
            raise ValueError(msg)
        self.lock = Path(lock) if lock is not None else None
        self.dest = Path(dest)
        events = EventSink(on_event) if on_event is not None else None
        self.progress: ProgressSink = fan_out(progress, events)
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
        self._slots: FileSlots | None = None

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
        checksums: StrPath | SumsFile | None = None,
        base_url: str | None = None,
    ) -> Report:
        """Fetch every entry; returns the report once all are done.

        ``shard="K/N"`` keeps only the entries shard K of N owns,
        ``checksums`` names a sums file to verify against, and ``base_url``
        is joined onto a manifest's relative URLs (see ``stream``).

        Raises
        ------
        ManifestError
            The input is unusable; nothing was transferred.
        DownloadFailed
            Only with ``raise_on_failure=True``, when a file failed.
        """
        began = time.monotonic()
        report = Report()
        results = self.stream(
            entries, fmt=fmt, shard=shard, checksums=checksums, base_url=base_url
        )
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
        checksums: StrPath | SumsFile | None = None,
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

        ``checksums="SHA256SUMS"`` (a ``sha256sum``, ``md5sum`` or ``b2sum``
        file; ``"sha512:FILE"`` names its algorithm) gives the entries it
        names their expected digests; its paths are relative to ``dest``.
        A malformed line is a ``ManifestError`` naming FILE:LINE.

        ``base_url`` is the folder a manifest's relative URLs (such as Common
        Crawl's ``crawl-data/...`` lines) are joined onto; an entry without a
        path then keeps the relative path, folders and all.
        """
        if self._session is None:
            msg = "use 'async with Downloader(...) as dl:' before downloading"
            raise RuntimeError(msg)
        sources = Sources.of(
            entries, fmt=fmt, shard=shard, checksums=checksums, base_url=base_url
        )
        inside = InsideCheck(self.dest)
        count, total_bytes = await asyncio.to_thread(sources.check, inside)
        known: Mapping[str, Known] = {}
        if self.lock is not None and self.settings.refresh:
            known = await asyncio.to_thread(read_known, self.lock)
        self.dest.mkdir(parents=True, exist_ok=True)
        pins = LockWriter(self.lock) if self.lock is not None else None
        self.progress.run_started(count, total_bytes)
        whole = False
        try:
            async for result in self._run(iter(sources), known, pins is not None):
                if pins is not None:
                    pins.add(result)
                yield result
            whole = True
        finally:
            if pins is not None:  # a stopped run keeps the previous lock file
                pins.close(publish=whole)
            self.progress.close()

    async def _run(
        self,
        entries: Iterator[Entry],
        known: Mapping[str, Known] | None = None,
        pin: bool = False,
    ) -> AsyncIterator[Result]:
        start, jobs = self.settings.flight()
        slots = FileSlots(start, jobs, adapt=self.settings.adapt)
        self._slots = slots
        pool = _Pool(self._context(known or {}, pin), jobs, slots)
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

    def files_in_flight(self) -> int:
        """The most files handled at once so far (with adapt it grows while
        files/s rises, up to ``jobs``)."""
        return 0 if self._slots is None else self._slots.peak

    def hosts(self) -> dict[str, dict[str, int | float | None]]:
        """Per host, so far: the connections it has now (``per_host`` unless it
        pushed back), the requests per second it is paced at (None: unpaced),
        how often it pushed back (429, 503, stalls), and its requests."""
        return self._budget.hosts()

    def _context(self, known: Mapping[str, Known], pin: bool) -> RunContext:
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
            want_sha256=pin,
            known=known,
        )


class _Pool:
    """The bounded queues between the manifest reader, the workers and the caller.

    There is a worker per file that may be in flight (``jobs``); each takes a
    file slot before it takes an entry, so only ``slots.limit`` work at once.
    A ``None`` in ``todo`` tells a worker to stop; one in ``done`` says a
    worker stopped. ``failure`` keeps what went wrong outside any one file.
    """

    def __init__(self, ctx: RunContext, jobs: int, slots: FileSlots) -> None:
        self.ctx = ctx
        self.jobs = jobs
        self.slots = slots
        self.todo: asyncio.Queue[tuple[int, Entry] | None] = asyncio.Queue(jobs * 2)
        self.done: asyncio.Queue[Result | None] = asyncio.Queue(jobs * 2)
        self.failure: list[BaseException] = []

    async def produce(self, entries: Iterator[Entry]) -> None:
        todo = self.todo
        queued = getattr(self.ctx.progress, "file_queued", None)  # older sinks
        try:
            for key, entry in enumerate(entries):
                await todo.put((key, entry))
                if queued is not None:  # no await since the put: told before a worker
                    queued(key, entry)
        except Exception as exc:  # a manifest error (or a bug): stop, then say so
            self.failure.append(exc)
        # Not in a ``finally``: once cancelled, nobody takes from the full
        # queue, so these puts would wait forever and the run never ends.
        for _ in range(self.jobs):
            await todo.put(None)

    async def work(self) -> None:
        ctx, todo, done, failure = self.ctx, self.todo, self.done, self.failure
        slots, budget = self.slots, ctx.budget
        try:
            while True:
                await slots.acquire()
                try:
                    if (item := await todo.get()) is None:
                        break
                    key, entry = item
                    slots.started()
                    try:
                        result = await FileJob(ctx, key, entry).run()
                    finally:
                        slots.finished(budget.files_waiting(), backlog=not todo.empty())
                        slots.running -= 1
                finally:
                    slots.release()
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
