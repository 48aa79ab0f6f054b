"""Events for programs: one dict per state change of a file, for --events and on_event.

Each event has ``event``, ``time`` (ISO 8601 UTC, milliseconds, ``Z``),
``url`` (the entry's, never a redirect target or a mirror) and ``path``,
then the fields of its kind (``EVENT_FIELDS``). The events that end a file
(``done``, ``failed``, ``skipped``, ``unchanged``...) carry exactly the
fields of ``Result.to_dict()``, the same as the report: one function builds
both. No header value is ever part of an event.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

from ._models import Entry, Result
from ._progress import NullProgress, ProgressSink

log = logging.getLogger(__name__)

Event = dict[str, Any]
Emit = Callable[[Event], None]

# What each event carries besides event, time, url and path (the README's table).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "queued": ("size",),
    "started": ("size",),
    "resumed": ("size", "offset"),
    "retry": ("attempts", "reason", "delay", "tried"),
    "throttled": ("host", "status", "kind", "reason", "retry_after"),
    "waiting": ("reason",),
}


def finished_event(status: str) -> str:
    """The event that ends a file with ``status``: ``downloaded`` is ``done``.

    Every other status is its own event, so a status added later (``unchanged``
    for a refresh run) needs no change here.
    """
    return "done" if status == "downloaded" else status


def started_event(offset: int) -> str:
    """A try's body begins at byte ``offset``: from zero, or after bytes kept."""
    return "resumed" if offset > 0 else "started"


def iso_time(epoch: float) -> str:
    """``1767225600.5`` -> ``2026-01-01T00:00:00.500Z``."""
    seconds = int(epoch // 1)
    return f"{_second(seconds)}.{int((epoch - seconds) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(seconds: int) -> str:
    """The part of the stamp before the milliseconds: made once per second.

    A run's events come many to a second; datetime's formatting is about
    a third of what writing one costs, so it is done once.
    """
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def result_event(result: Result, epoch: float) -> Event:
    """The event that ends a file: its result's report fields, nothing else."""
    return {
        "event": finished_event(result.status),
        "time": iso_time(epoch),
        **result.to_dict(),
    }


class EventSink(NullProgress):
    """A progress sink that turns what the engine reports into events for ``emit``.

    It remembers each queued entry until its file finishes, so memory stays
    bounded by the queue and the files in flight. ``emit`` is called from the
    event loop and must return quickly (see ``JsonLines``).
    """

    def __init__(self, emit: Emit, *, clock: Callable[[], float] = time.time) -> None:
        self.emit = emit
        self.clock = clock
        self._entries: dict[int, Entry] = {}

    def _send(self, event: str, key: int, name: str = "", **fields: Any) -> None:
        entry = self._entries.get(key)
        head = {
            "event": event,
            "time": iso_time(self.clock()),
            "url": entry.url if entry is not None else None,
            "path": entry.path if entry is not None else name,
        }
        self.emit(head | fields)

    def file_queued(self, key: int, entry: Entry) -> None:
        self._entries[key] = entry
        self._send("queued", key, size=entry.size)

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        if started_event(done) == "resumed":
            self._send("resumed", key, name, size=total, offset=done)
        else:
            self._send("started", key, name, size=total)

    def file_retrying(
        self, key: int, attempts: int, reason: str, delay: float, tried: str
    ) -> None:
        self._send(
            "retry",
            key,
            attempts=attempts,
            reason=reason,
            delay=round(delay, 3),
            tried=tried,
        )

    def file_throttled(
        self,
        key: int,
        host: str,
        status: int | None,
        kind: str,
        reason: str,
        retry_after: float | None,
    ) -> None:
        self._send(
            "throttled",
            key,
            host=host,
            status=status,
            kind=kind,
            reason=reason,
            retry_after=retry_after,
        )

    def file_waiting(self, key: int, name: str, message: str) -> None:
        self._send("waiting", key, name, reason=message)

    def file_finished(self, key: int, result: Result) -> None:
        self._entries.pop(key, None)
        self.emit(result_event(result, self.clock()))


# ensure_ascii: a path with a lone surrogate still makes valid JSON; an event
# holds no cycles, so none is looked for.
_encode = json.JSONEncoder(ensure_ascii=True, check_circular=False).encode


class JsonLines:
    """``emit`` for a text stream: one JSON line per event, flushed as it happens.

    Called from a running event loop, the events of one turn of the loop are
    flushed together at the start of its next turn (a write each, not one
    per event: events come in bursts, a flush costs as much as the rest);
    from elsewhere, each is flushed at once.

    A stream that cannot be written (a reader that went away, a full disk)
    gets no more events; the run goes on, with one warning in the log, and
    ``broken`` keeps the error.
    """

    def __init__(self, stream: TextIO, name: str = "") -> None:
        self.stream = stream
        self.name = name or getattr(stream, "name", "the events stream")
        self.broken: OSError | None = None
        self._flush_due = False

    def __call__(self, event: Event) -> None:
        if self.broken is not None:
            return
        try:
            self.stream.write(_encode(event) + "\n")
        except OSError as exc:
            self._broke(exc)
            return
        if self._flush_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_due = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write out what the stream holds (a ``broken`` one: nothing)."""
        self._flush_due = False
        if self.broken is not None:
            return
        try:
            self.stream.flush()
        except OSError as exc:
            self._broke(exc)

    def _broke(self, exc: OSError) -> None:
        self.broken = exc
        reason = exc.strerror or exc
        log.warning("--events %s: %s; no more events this run", self.name, reason)


OPTIONAL_HOOKS = ("file_waiting", "file_queued", "file_retrying", "file_throttled")


class FanOut(NullProgress):
    """Tells every one of ``sinks`` everything (bars and events, say).

    An optional hook goes only to the sinks that have it, and neither it nor
    ``file_advanced`` (called for every chunk) goes to a sink that inherits
    ``NullProgress``'s empty one.
    """

    def __init__(self, *sinks: ProgressSink) -> None:
        self.sinks = sinks
        self._advanced = _hooks(sinks, "file_advanced")
        for name in OPTIONAL_HOOKS:
            setattr(self, name, _calling_all(_hooks(sinks, name)))

    def run_started(self, files: int, total_bytes: int | None) -> None:
        for sink in self.sinks:
            sink.run_started(files, total_bytes)

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        for sink in self.sinks:
            sink.file_started(key, name, total, done)

    def file_advanced(self, key: int, n: int) -> None:
        for advanced in self._advanced:
            advanced(key, n)

    def file_finished(self, key: int, result: Result) -> None:
        for sink in self.sinks:
            sink.file_finished(key, result)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def _hooks(sinks: tuple[ProgressSink, ...], name: str) -> list[Any]:
    """The sinks' ``name`` methods, leaving out missing and empty ones."""
    empty = getattr(NullProgress, name)
    found = [getattr(s, name, None) for s in sinks]
    return [
        h for h in found if h is not None and getattr(h, "__func__", 0) is not empty
    ]


def _calling_all(hooks: list[Any]) -> Any:
    def call(*args: Any) -> None:
        for hook in hooks:
            hook(*args)

    return call


def fan_out(*sinks: ProgressSink | None) -> ProgressSink:
    """One sink for the given ones (None left out): itself when only one."""
    present = [s for s in sinks if s is not None]
    if not present:
        return NullProgress()
    if len(present) == 1:
        return present[0]
    return FanOut(*present)
