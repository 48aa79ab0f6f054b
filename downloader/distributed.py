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

import contextlib
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cluster import connect, need_dask, run_shard
from ._exceptions import ClusterError as ClusterError  # public from here too
from ._manifest import EntriesLike, Shard, Sources
from ._models import Report, Result
from ._offline import inspect_all
from ._settings import Settings, settings_from
from ._storage import InsideCheck
from ._types import StrPath

if TYPE_CHECKING:
    from distributed import Client

SHARDS_PER_WORKER = 2  # a dead worker then costs a smaller shard's rerun
TASK_RETRIES = 2  # on top of Dask's own re-runs after a worker dies
UPDATE_INTERVAL = 0.5  # seconds between progress updates to the caller


def download_on_cluster(
    entries: EntriesLike,
    dest: StrPath = ".",
    *,
    cluster: str | Client = "local:2",
    shards: int | None = None,
    fmt: str | None = None,
    base_url: str | None = None,
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
    base_url:
        The folder a manifest's relative URLs are joined onto.
    on_progress:
        Called in this thread about twice a second with what the workers sent.
    **options:
        ``Settings`` names, as keywords of ``Downloader``.
        ``jobs``, ``per_host``, ``max_connections`` and ``limit_rate`` are
        totals (given or default) shared out over the workers; ``progress``
        and ``session`` cannot cross processes.

    Raises
    ------
    ManifestError
        The input is unusable; nothing was transferred.
    ClusterError
        Dask is not installed, or the scheduler cannot be reached.
    """
    report = Report()
    began = time.monotonic()
    with (
        ClusterRun(
            entries, dest, cluster=cluster, shards=shards, fmt=fmt, base_url=base_url
        ) as run,
        contextlib.closing(run.results(options, on_progress=on_progress)) as results,
    ):
        for result in results:
            report.add(result)
    report.summary.seconds = time.monotonic() - began
    return report


@dataclass
class ProgressUpdate:
    """The change since the last update (a rerun shard may take some back)."""

    bytes: int = 0  # bytes moved (negative when files restarted)
    dropped: int = 0  # declared bytes that will not move (skipped, failed files)
    finished: int = 0
    failed: list[str] = field(default_factory=list)  # one line per failed file
    shards_done: int = 0  # running total
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
        base_url: str | None = None,
    ) -> None:
        sources = Sources.of(entries, fmt=fmt, base_url=base_url)
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
        need_dask()  # before reading a huge manifest for nothing
        self.count, self.total_bytes = self.sources.check(InsideCheck(self.dest))
        try:
            self.client = self._stack.enter_context(connect(self.cluster))
        except OSError as exc:
            self._stack.close()
            msg = f"cannot reach the Dask scheduler: {exc}"
            raise ClusterError(msg) from exc
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
        return max(1, sum(int(n) for n in self.client.nthreads().values()))

    def results(
        self,
        settings: Settings | Mapping[str, Any],
        *,
        on_progress: Callable[[ProgressUpdate], None] | None = None,
    ) -> Generator[Result, None, None]:
        """Run every shard; yield each shard's results as that shard finishes.

        Close it (``contextlib.closing``) when leaving early: closing is what
        tells the running shards to stop.
        """
        from distributed import Event

        assert self.client is not None
        workers = self.workers
        count = self.shards or workers * SHARDS_PER_WORKER
        shared = _settings_of(settings).shared_out(workers)
        if shared.ca_bundle:  # workers may start elsewhere
            shared = shared.replace(ca_bundle=str(Path(shared.ca_bundle).resolve()))
        topic = f"downloader-{uuid.uuid4().hex}"
        tally = _ShardTotals(count)
        self.client.subscribe_topic(topic, lambda event: tally.events.put(event[1]))
        ready = threading.Event()
        futures = {}
        for shard in (Shard(k, count) for k in range(count)):
            future = self.client.submit(
                run_shard,
                self.sources,
                str(self.dest),
                shard,
                topic,
                shared,
                key=f"{topic}-shard-{shard.index}-of-{count}",
                retries=TASK_RETRIES,
            )
            future.add_done_callback(lambda _: ready.set())
            futures[future] = shard
        try:
            while futures:
                ready.wait(UPDATE_INTERVAL)
                ready.clear()  # before looking: a shard ending now sets it again
                finished = [f for f in futures if f.done()]
                tally.shards_done += len(finished)
                if on_progress is not None:
                    on_progress(tally.update())
                for future in finished:
                    yield from self._shard_results(future, futures.pop(future), shared)
                    future.release()  # its results leave the worker's memory
        finally:
            if futures:  # stopped early: queued shards must not start
                with contextlib.suppress(Exception):  # best effort: it may be gone
                    self.client.cancel(list(futures))
                    Event(f"{topic}-stop", client=self.client).set()
            with contextlib.suppress(Exception):
                self.client.unsubscribe_topic(topic)
        if on_progress is not None:
            on_progress(tally.update())

    def _shard_results(
        self, future: Any, shard: Shard, settings: Settings
    ) -> Iterator[Result]:
        """The shard's results; if it could not run, what the disk says of each."""
        if future.status == "finished":
            yield from future.result()
            return
        try:
            future.result()
            reason = f"ended as {future.status}"
        except Exception as exc:  # a shard that could not run, whatever the cause
            reason = f"{type(exc).__name__}: {exc}"
        error = f"shard {shard} did not finish ({reason}); rerun to resume"
        sources = dataclasses.replace(self.sources, shard=shard)
        for verdict in inspect_all(self.dest, sources, jobs=settings.jobs):
            if verdict.action == "complete":  # finished before the shard was lost
                yield Result(verdict.entry, "skipped", size=verdict.entry.size)
            else:
                yield Result(verdict.entry, "failed", error=error)


def _settings_of(given: Settings | Mapping[str, Any]) -> Settings:
    """The run's settings from a ``Settings`` or ``Downloader`` keywords."""
    if isinstance(given, Settings):
        return given
    local_only = {"progress", "session"} & set(given)
    if local_only:
        msg = (
            f"{', '.join(sorted(local_only))} cannot cross to other processes; "
            "pass on_progress= to follow the run"
        )
        raise ValueError(msg)
    return settings_from(None, given)


class _ShardTotals:
    """Per-shard running totals from the workers' events; updates are changes.

    An event carries its shard's totals and the attempt they belong to. A
    rerun (a newer attempt) replaces the lost attempt's totals, so resumed
    files are not counted twice; late events of the lost attempt are ignored.
    """

    def __init__(self, shards: int) -> None:
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.shards = shards
        self.shards_done = 0
        self._latest: dict[int, tuple[list[Any], int, int, int]] = {}

    def update(self) -> ProgressUpdate:
        change = ProgressUpdate(shards_done=self.shards_done, shards=self.shards)
        with contextlib.suppress(queue.Empty):
            while True:
                message = self.events.get_nowait()
                shard, attempt = int(message["shard"]), list(message["attempt"])
                old = self._latest.get(shard, ([0.0, 0], 0, 0, 0))
                if attempt < old[0]:
                    continue  # from an attempt already replaced
                now = (
                    attempt,
                    int(message["bytes"]),
                    int(message["dropped"]),
                    int(message["finished"]),
                )
                change.bytes += now[1] - old[1]
                change.dropped += now[2] - old[2]
                change.finished += now[3] - old[3]
                change.failed.extend(message["failed"])
                self._latest[shard] = now
        return change
