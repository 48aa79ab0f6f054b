"""The worker side of a cluster run: one shard through the engine, told to Dask.

Imported by Dask workers (through ``distributed.run_shard``); it imports
``distributed`` only inside the task, so the package works without Dask.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from ._engine import Downloader
from ._exceptions import ShardStopped
from ._manifest import Shard, Sources
from ._models import Result
from ._progress import describe
from ._settings import Settings

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
