"""Run one manifest on a Dask cluster: a task per shard, one merged report.

Needs the ``dask`` extra (``pip install 'downloader[dask]'``). Each task runs the
ordinary engine (``Downloader.download(..., shard=...)``) with its own session on
its worker, so everything a local run promises holds per shard. A shard whose
worker dies is run again by Dask; that rerun is a resume (complete files are
skipped, ``.part`` files continued), so a lost worker costs only its bytes in
flight. The destination must be the same folder for every worker: one machine,
or a shared filesystem. Machines with their own disks use ``--shard`` instead.

    report = download_on_cluster("files.jsonl", "data", cluster="local:4", jobs=16)
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._engine import Downloader
from ._models import Report, Result
from ._progress import describe
from ._shard import Shard
from ._sources import EntriesLike, Sources
from ._types import StrPath

if TYPE_CHECKING:
    from distributed import Client

# Options shared out over the worker processes, so the cluster as a whole keeps
# the limits a single run would (at least one each).
SHARED_LIMITS = ("jobs", "per_host", "max_connections")
SHARDS_PER_WORKER = 2  # a dead worker then costs a smaller shard's rerun
TASK_RETRIES = 2  # on top of Dask's own re-runs after a worker dies
EVENT_INTERVAL = 0.5  # seconds between progress events from one shard
STOP_POLL = 0.2  # seconds a shard waits on the stop flag per call


def download_on_cluster(
    entries: EntriesLike,
    dest: StrPath = ".",
    *,
    cluster: str | Client = "local:2",
    shards: int | None = None,
    fmt: str | None = None,
    on_progress: Callable[[ProgressUpdate], None] | None = None,
    **options: Any,
) -> Report:
    """Download ``entries`` into ``dest`` on a Dask cluster; returns the merged report.

    Parameters
    ----------
    entries:
        A manifest path (visible to every worker), URL strings, dicts or Entries.
    cluster:
        ``"local:N"`` starts N worker processes here; ``"tcp://host:8786"``
        (any scheduler address) or a ``distributed.Client`` uses that cluster.
    shards:
        Tasks to split the work into (default: two per worker thread).
    on_progress:
        Called in this thread with each update the workers send.
    **options:
        Keywords of ``Downloader``. ``jobs``, ``per_host`` and
        ``max_connections`` are totals shared out over the workers.

    Raises
    ------
    ManifestError
        The input is unusable; nothing was transferred.
    ImportError
        Dask is not installed.
    """
    report = Report()
    began = time.monotonic()
    with ClusterRun(entries, dest, cluster=cluster, shards=shards, fmt=fmt) as run:
        for result in run.results(options, on_progress=on_progress):
            report.add(result)
    report.summary.seconds = time.monotonic() - began
    return report


@dataclass
class ProgressUpdate:
    """What the workers reported since the last update, plus running totals."""

    bytes: int = 0  # net bytes moved (negative when a file restarted)
    dropped: int = 0  # declared bytes that will not move (skipped, failed files)
    finished: int = 0
    failed: list[str] = field(default_factory=list)  # one line per failed file
    shards_done: int = 0
    shards: int = 0


class ClusterRun:
    """A connection to a cluster (started here for ``local:N``) and one sharded run."""

    def __init__(
        self,
        entries: EntriesLike,
        dest: StrPath,
        *,
        cluster: str | Client,
        shards: int | None = None,
        fmt: str | None = None,
    ) -> None:
        sources = Sources.of(entries, fmt=fmt)
        if sources.shard is not None:
            msg = "a cluster run makes its own shards; drop the shard"
            raise ValueError(msg)
        # Workers may run elsewhere: give them absolute manifest paths.
        manifests = tuple(p.resolve() for p in sources.manifests)
        self.sources = dataclasses.replace(sources, manifests=manifests)
        self.dest = Path(dest).resolve()
        self.cluster = cluster
        self.shards = shards
        self._stack = contextlib.ExitStack()
        self.client: Client | None = None
        self.count = 0
        self.total_bytes: int | None = None

    def __enter__(self) -> ClusterRun:
        self.count, self.total_bytes = self.sources.check(self.dest)
        try:
            self.client = self._stack.enter_context(_connect(self.cluster))
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def workers(self) -> int:
        """Worker threads in the cluster now (each runs one shard at a time)."""
        assert self.client is not None
        info = self.client.scheduler_info()["workers"]
        return max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))

    def results(
        self,
        options: dict[str, Any],
        *,
        on_progress: Callable[[ProgressUpdate], None] | None = None,
    ) -> Iterator[Result]:
        """Run every shard; yield each shard's results as that shard finishes."""
        from distributed import Event, wait

        assert self.client is not None
        local_only = {"progress", "session"} & set(options)
        if local_only:
            msg = (
                f"{', '.join(sorted(local_only))} cannot cross to other processes; "
                "pass on_progress= to follow the run"
            )
            raise ValueError(msg)
        workers = self.workers
        count = self.shards or workers * SHARDS_PER_WORKER
        shared = {
            name: max(1, math.ceil(options[name] / workers))
            for name in SHARED_LIMITS
            if name in options
        }
        task_options = {**options, **shared}
        topic = f"downloader-{uuid.uuid4().hex}"
        events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.client.subscribe_topic(topic, lambda event: events.put(event[1]))
        futures = {
            self.client.submit(
                run_shard,
                self.sources,
                str(self.dest),
                Shard(k, count),
                topic,
                task_options,
                key=f"{topic}-shard-{k}-of-{count}",
                retries=TASK_RETRIES,
                pure=False,
            ): Shard(k, count)
            for k in range(count)
        }
        pending = set(futures)
        done_shards = 0
        try:
            while pending:
                try:
                    finished, pending = wait(
                        pending, timeout=EVENT_INTERVAL, return_when="FIRST_COMPLETED"
                    )
                except TimeoutError:  # Dask's wait raises when nothing finished
                    finished = set()
                done_shards += len(finished)
                if on_progress is not None:
                    on_progress(_drain(events, done_shards, count))
                for future in finished:
                    yield from self._shard_results(future, futures[future])
        finally:
            if pending:  # stopped early: let running shards save their state
                with contextlib.suppress(Exception):  # best effort: it may be gone
                    Event(f"{topic}-stop", client=self.client).set()
                    for future in pending:
                        future.cancel()
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        if on_progress is not None:
            on_progress(_drain(events, done_shards, count))

    def _shard_results(self, future: Any, shard: Shard) -> Iterator[Result]:
        """The shard's results, or a failed result per entry when it could not run."""
        if future.status == "finished":
            yield from future.result()
            return
        try:
            future.result()
            reason = f"ended as {future.status}"
        except Exception as exc:  # a shard that could not run, whatever the cause
            reason = f"{type(exc).__name__}: {exc}"
        error = f"shard {shard} did not finish ({reason}); rerun to resume"
        for entry in dataclasses.replace(self.sources, shard=shard):
            yield Result(entry, "failed", error=error)


def run_shard(
    sources: Sources, dest: str, shard: Shard, topic: str, options: dict[str, Any]
) -> list[Result]:
    """The Dask task: download one shard with the normal engine on this worker."""
    from distributed import Event, get_worker

    worker = get_worker()
    sink = EventProgress(lambda message: worker.log_event(topic, message))
    stop = Event(f"{topic}-stop")

    async def go() -> list[Result]:
        async with Downloader(dest, progress=sink, **options) as dl:
            download = asyncio.ensure_future(dl.download(sources, shard=shard))
            watch = asyncio.ensure_future(_cancel_when_set(stop, download))
            try:
                return (await download).results
            except asyncio.CancelledError:  # the client stopped the run
                return []
            finally:
                watch.cancel()

    return asyncio.run(go())


async def _cancel_when_set(stop: Any, task: asyncio.Future[Any]) -> None:
    """Stop the shard promptly (part files checkpointed) when the client says so."""
    while not await asyncio.to_thread(stop.wait, STOP_POLL):
        pass
    task.cancel()


class EventProgress:
    """A ProgressSink that sends batched totals as Dask events (no bars on workers)."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send
        self._done: dict[int, int] = {}
        self._bytes = 0
        self._dropped = 0
        self._finished = 0
        self._failed: list[str] = []
        self._last = time.monotonic()

    def run_started(self, files: int, total_bytes: int | None) -> None:
        pass

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        self._bytes += done - self._done.get(key, 0)  # a restart takes bytes back
        self._done[key] = done

    def file_advanced(self, key: int, n: int) -> None:
        self._done[key] = self._done.get(key, 0) + n
        self._bytes += n
        if time.monotonic() - self._last >= EVENT_INTERVAL:
            self._flush()

    def file_finished(self, key: int, result: Result) -> None:
        done = self._done.pop(key, 0)
        self._finished += 1
        if result.status == "failed":
            self._bytes -= done
            self._failed.append(describe(result))
        if result.status != "downloaded":
            self._dropped += result.entry.size or 0
        if time.monotonic() - self._last >= EVENT_INTERVAL:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self._last = time.monotonic()
        if self._bytes or self._finished or self._failed:
            self.send(
                {
                    "bytes": self._bytes,
                    "dropped": self._dropped,
                    "finished": self._finished,
                    "failed": self._failed,
                }
            )
            self._bytes, self._dropped, self._finished, self._failed = 0, 0, 0, []


def _drain(
    events: queue.SimpleQueue[dict[str, Any]], shards_done: int, shards: int
) -> ProgressUpdate:
    update = ProgressUpdate(shards_done=shards_done, shards=shards)
    with contextlib.suppress(queue.Empty):
        while True:
            message = events.get_nowait()
            update.bytes += int(message["bytes"])
            update.dropped += int(message["dropped"])
            update.finished += int(message["finished"])
            update.failed.extend(message["failed"])
    return update


@contextlib.contextmanager
def _connect(cluster: str | Client) -> Iterator[Client]:
    """A client for ``cluster``; a ``local:N`` cluster lives as long as the block."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        msg = "running on a cluster needs Dask: pip install 'downloader[dask]'"
        raise ImportError(msg) from exc
    if not isinstance(cluster, str):
        yield cluster
        return
    if cluster.startswith("local:"):
        workers = parse_local(cluster)
        with _sigint_ignored():  # inherited by the worker processes spawned now
            local = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.CRITICAL,  # shutdown races log errors
            )
        with local, Client(local) as client:
            client.register_plugin(_ignore_sigint_plugin())  # and restarted ones
            yield client
        return
    with Client(cluster) as client:
        yield client


def parse_local(cluster: str) -> int:
    """``local:4`` -> 4.

    Raises
    ------
    ValueError
        Not ``local:`` followed by a whole number >= 1.
    """
    text = cluster.removeprefix("local:")
    if not text.isdigit() or int(text) < 1:
        msg = f"want local:N with N >= 1 worker processes, got {cluster!r}"
        raise ValueError(msg)
    return int(text)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Ctrl-C reaches every process of the terminal's group: local workers must
    ignore it (the client stops them) or each prints a KeyboardInterrupt trace."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _ignore_sigint_plugin() -> Any:
    """A worker plugin doing the same in workers a nanny restarts later."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class IgnoreSigint(WorkerPlugin):
        name = "downloader-ignore-sigint"

        def setup(self, worker: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreSigint()
