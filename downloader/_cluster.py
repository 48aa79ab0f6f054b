"""Dask's side of a cluster run: the client's connection, and each shard's task.

``run_shard`` is the task: one shard through the ordinary engine on a worker,
its progress told to Dask as events. It is imported by Dask workers (through
``distributed.run_shard``); Dask itself is imported only inside functions, so
the package works without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ._engine import Downloader
from ._exceptions import ClusterError, ShardStopped
from ._manifest import Shard, Sources
from ._models import Result
from ._progress import describe
from ._settings import Settings

if TYPE_CHECKING:
    from distributed import Client

EVENT_INTERVAL = 0.5  # seconds between progress events from one shard
STOP_POLL = 1.0  # seconds between a running shard's looks at the stop flag


def run_shard(
    sources: Sources, dest: str, shard: Shard, topic: str, settings: Settings
) -> list[Result]:
    """The Dask task: download one shard with the normal engine on this worker.

    Raises
    ------
    ShardStopped
        The client asked every shard to stop (part files stay, checkpointed).
    """
    from distributed import Event, get_client, get_worker

    worker = get_worker()
    # Bound to the worker's client here: the stop watcher runs in a thread of
    # its own, where Dask could not find that client by itself.
    stop = Event(f"{topic}-stop", client=get_client())
    stopped = f"shard {shard}: the run was stopped"
    if stop.is_set():  # queued when the client stopped: do not start
        raise ShardStopped(stopped)
    attempt = [time.time(), threading.get_ident()]  # a rerun's events replace these
    sink = EventProgress(
        lambda totals: worker.log_event(
            topic, {"shard": shard.index, "attempt": attempt, **totals}
        )
    )

    async def go() -> list[Result]:
        async with Downloader(dest, settings, progress=sink) as dl:
            download = asyncio.ensure_future(dl.download(sources, shard=shard))
            ended = threading.Event()
            _watch_for_stop(stop, ended, asyncio.get_running_loop(), download)
            try:
                await asyncio.wait({download})
            finally:
                ended.set()
            if download.cancelled():
                raise ShardStopped(stopped)
            return download.result().results

    return asyncio.run(go())


def _watch_for_stop(
    stop: Any,
    ended: threading.Event,
    loop: asyncio.AbstractEventLoop,
    download: asyncio.Future[Any],
) -> None:
    """Cancel ``download`` when the client sets ``stop`` (a daemon thread, so
    the shard's end never waits for a poll to time out)."""

    def watch() -> None:
        # A short question each second, not a long wait on the scheduler: a
        # wait still open when the cluster closes makes Dask log an error.
        try:
            while not ended.wait(STOP_POLL):
                if stop.is_set():
                    break
        except Exception:  # no scheduler to ask: the worker is closing
            pass
        if not ended.is_set():
            with contextlib.suppress(RuntimeError):  # the loop just ended
                loop.call_soon_threadsafe(download.cancel)

    threading.Thread(target=watch, name="stop watcher", daemon=True).start()


class EventProgress:
    """A ProgressSink sending the shard's running totals as Dask events.

    Totals rather than increments, so that when Dask reruns a shard (its
    worker died) the client replaces the old attempt's figures instead of
    counting the resumed files twice.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send
        self._done: dict[int, int] = {}
        self._bytes = 0
        self._dropped = 0
        self._finished = 0
        self._failed: list[str] = []  # since the last event
        self._last = time.monotonic()
        self._dirty = False

    def run_started(self, files: int, total_bytes: int | None) -> None:
        pass

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        self._bytes += done - self._done.get(key, 0)  # a restart takes bytes back
        self._done[key] = done
        self._dirty = True

    def file_advanced(self, key: int, n: int) -> None:
        self._done[key] = self._done.get(key, 0) + n
        self._bytes += n
        self._dirty = True
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
        self._dirty = True
        if time.monotonic() - self._last >= EVENT_INTERVAL:
            self._flush()

    def close(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self._last = time.monotonic()
        if self._dirty:
            self.send(
                {
                    "bytes": self._bytes,
                    "dropped": self._dropped,
                    "finished": self._finished,
                    "failed": self._failed,
                }
            )
            self._failed, self._dirty = [], False


def need_dask() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        msg = "running on a cluster needs Dask: pip install 'downloader[dask]'"
        raise ClusterError(msg) from exc


@contextlib.contextmanager
def connect(cluster: str | Client) -> Iterator[Client]:
    """A client for ``cluster``; a ``local:N`` cluster lives as long as the block."""
    need_dask()
    from distributed import Client, LocalCluster

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
