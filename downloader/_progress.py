"""Progress: the sink the engine reports to, as tqdm bars or plain log lines."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._models import Entry, Result

if TYPE_CHECKING:  # tqdm is imported only when bars are shown: it costs ~30 ms
    from tqdm import tqdm

BAR_DELAY = 0.3  # a file gets its own bar only after this long in flight
MAX_BARS = 8  # per-file bars at most, however many files are in flight


class ProgressSink(Protocol):
    """What the engine tells about a run; every method must return quickly.

    A sink may also have these (optional, so sinks written before them
    still fit; ``NullProgress`` has them all, doing nothing):

    - ``file_waiting(key, name, message)``: the file waits for another
      process that is working on it;
    - ``file_queued(key, entry)``: the entry was read and queued;
    - ``file_retrying(key, attempts, reason, delay, tried)``: try number
      ``attempts`` at URL ``tried`` failed with ``reason``; the next try
      comes in ``delay`` seconds;
    - ``file_throttled(key, host, status, kind, reason, retry_after)``: the
      host pushed back (``policy.pushed_back``: ``kind`` "rate" for a 429, a
      503 or a burst of 403s, with ``Retry-After`` seconds if it said;
      "connections" for a stall, a reset or a refused connection, status
      None).
    """

    def run_started(self, files: int, total_bytes: int | None) -> None: ...
    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        """Called again when a file restarts from zero or resumes."""

    def file_advanced(self, key: int, n: int) -> None: ...
    def file_finished(self, key: int, result: Result) -> None: ...
    def close(self) -> None: ...


class NullProgress:
    """Says nothing: the library default."""

    def run_started(self, files: int, total_bytes: int | None) -> None:
        pass

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        pass

    def file_advanced(self, key: int, n: int) -> None:
        pass

    def file_finished(self, key: int, result: Result) -> None:
        pass

    def file_waiting(self, key: int, name: str, message: str) -> None:
        pass

    def file_queued(self, key: int, entry: Entry) -> None:
        pass

    def file_retrying(
        self, key: int, attempts: int, reason: str, delay: float, tried: str
    ) -> None:
        pass

    def file_throttled(
        self,
        key: int,
        host: str,
        status: int | None,
        kind: str,
        reason: str,
        retry_after: float | None,
    ) -> None:
        pass

    def close(self) -> None:
        pass


def describe(result: Result) -> str:
    """One human line for a finished file."""
    if result.status == "failed":
        tries = f" ({result.attempts} tries)" if result.attempts > 1 else ""
        return f"FAILED     {result.path}: {result.error}{tries}"
    if result.status == "skipped":
        return f"skipped    {result.path} (already complete)"
    if result.status == "unchanged":
        return f"unchanged  {result.path} (the server says it has not changed)"
    rate = result.bytes / result.elapsed_s if result.elapsed_s > 0 else 0.0
    size = result.size if result.size is not None else result.bytes
    resumed = ""
    if result.size is not None and result.bytes < result.size:
        resumed = f", resumed: {format_bytes(result.bytes)} fetched"
    checked = f", {result.checksum.split(':')[0]} ok" if result.checksum else ""
    return (
        f"downloaded {result.path} ({format_bytes(size)} in {result.elapsed_s:.1f}s, "
        f"{format_bytes(rate)}/s{resumed}{checked})"
    )


OVERALL_FORMAT = (
    "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} "
    "[{elapsed}<{remaining}, {rate_fmt}]"
)


def byte_bar(stream: TextIO, **options: Any) -> tqdm[Any]:
    """A byte-counting tqdm bar on ``stream``; callers add total, position, text.

    ``tqdm.auto``: a widget in a Jupyter kernel, the terminal bar elsewhere.
    """
    from tqdm.auto import tqdm

    return tqdm(
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        dynamic_ncols=True,
        file=stream,
        mininterval=0.2,
        **options,
    )


def set_total(bar: tqdm[Any], total: float) -> None:
    """A bar's total, changed while it runs: a Jupyter widget's too.

    ``tqdm.notebook`` draws its widget's length once, from the total it
    started with (none: a full bar for ever), unless told.
    """
    bar.total = total
    widget = getattr(bar, "container", None)  # ltext, the IntProgress, rtext
    if widget is not None and total:
        widget.children[1].max = total


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # unreachable


class LogProgress(NullProgress):
    """One line per finished file, for logs and pipes where bars would garble."""

    def __init__(self, stream: TextIO, *, errors_only: bool = False) -> None:
        self.stream = stream
        self.errors_only = errors_only

    def file_finished(self, key: int, result: Result) -> None:
        if self.errors_only and result.status != "failed":
            return
        self.stream.write(describe(result) + "\n")
        self.stream.flush()

    def file_waiting(self, key: int, name: str, message: str) -> None:
        if not self.errors_only:
            self.stream.write(message + "\n")
            self.stream.flush()


@dataclass
class _InFlight:
    name: str
    total: int | None
    done: int
    began: float
    bar: tqdm[Any] | None = None
    slot: int = -1


class TqdmProgress:
    """Bars for files in flight (reused slots, at most ``jobs`` and ``MAX_BARS``)
    over one overall bar.

    Files that finish within ``BAR_DELAY`` never get a bar of their own, so
    thousands of small files do not flood the terminal; with hundreds in
    flight, the first slow ones to need a bar get one.
    """

    def __init__(self, stream: TextIO, *, jobs: int | None) -> None:
        from tqdm.auto import tqdm as auto_tqdm

        self._tqdm = auto_tqdm
        self.stream = stream
        self.jobs = jobs
        self._files: dict[int, _InFlight] = {}
        self._free_slots: list[int] = []
        self._overall: tqdm[Any] | None = None
        self._file_count = 0
        self._finished = 0
        self._failed = 0
        self._known_total: int | None = None

    def run_started(self, files: int, total_bytes: int | None) -> None:
        self._file_count = files
        self._known_total = total_bytes
        slots = max(1, min(self.jobs or MAX_BARS, MAX_BARS, files))
        self._free_slots = list(range(slots - 1, -1, -1))
        self._overall = byte_bar(
            self.stream,
            total=total_bytes,
            position=slots,
            leave=True,
            bar_format=OVERALL_FORMAT,
        )
        self._update_desc()

    def _update_desc(self) -> None:
        if self._overall is None:
            return
        failed = f", {self._failed} failed" if self._failed else ""
        self._overall.set_description_str(
            f"total {self._finished}/{self._file_count} files{failed}", refresh=False
        )

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        old = self._files.get(key)
        if old is not None:
            if self._overall is not None and self._known_total is None:
                self._grow_total(-(old.total or 0))
            self._overall_back(old.done)
            self._drop_bar(old)
        self._files[key] = _InFlight(name, total, done, time.monotonic())
        if self._known_total is None:
            self._grow_total(total or 0)
        if self._overall is not None and done:
            self._overall.update(done)

    def _grow_total(self, n: int) -> None:
        if self._overall is not None and n:
            set_total(self._overall, (self._overall.total or 0) + n)
            self._overall.refresh()

    def _overall_back(self, n: int) -> None:
        if self._overall is not None and n:
            self._overall.n = max(0, self._overall.n - n)
            self._overall.refresh()

    def file_advanced(self, key: int, n: int) -> None:
        info = self._files.get(key)
        if info is None:
            return
        info.done += n
        if self._overall is not None:
            self._overall.update(n)
        if info.bar is not None:
            info.bar.update(n)
        elif self._free_slots and time.monotonic() - info.began > BAR_DELAY:
            info.slot = self._free_slots.pop()
            label = info.name if len(info.name) <= 30 else "…" + info.name[-29:]
            info.bar = byte_bar(
                self.stream,
                total=info.total,
                initial=info.done,
                desc=label,
                position=info.slot,
                leave=False,
            )

    def _drop_bar(self, info: _InFlight) -> None:
        if info.bar is not None:
            info.bar.close()
            info.bar = None
            self._free_slots.append(info.slot)

    def file_finished(self, key: int, result: Result) -> None:
        info = self._files.pop(key, None)
        if info is not None:
            self._drop_bar(info)
        self._finished += 1
        if result.status == "failed":
            self._failed += 1
            self._tqdm.write(describe(result), file=self.stream)
            if info is not None:
                self._overall_back(info.done)
        if result.status != "downloaded" and self._known_total is not None:
            self._grow_total(-(result.entry.size or 0))  # never transferred
        self._update_desc()
        if self._overall is not None:
            self._overall.refresh()

    def file_waiting(self, key: int, name: str, message: str) -> None:
        self._tqdm.write(message, file=self.stream)

    def close(self) -> None:
        for info in self._files.values():
            self._drop_bar(info)
        self._files.clear()
        if self._overall is not None:
            self._update_desc()
            self._overall.clear()  # its live line sits below; the final one prints here
            self._overall.close()
            self._overall = None


class OverallBar:
    """One bar for a whole run fed with totals (a cluster run: no per-file bars).

    Without a terminal, no bar: lines the caller writes, and with ``heartbeat``
    a progress line that often, so a long run's log never goes silent.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        files: int,
        total_bytes: int | None,
        bar: bool,
        heartbeat: float | None = None,
    ) -> None:
        self.stream = stream
        self.files = files
        self.finished = 0
        self.failed = 0
        self.moved = 0
        self.heartbeat = heartbeat  # seconds between plain progress lines
        self._last_line = time.monotonic()
        self._bar: tqdm[Any] | None = None
        if bar:
            self._bar = byte_bar(stream, total=total_bytes, bar_format=OVERALL_FORMAT)
            self._describe("")

    def advance(
        self, n: int, dropped: int, finished: int, failed: list[str], status: str
    ) -> None:
        """``n`` more bytes (negative after a restart), ``dropped`` bytes that
        will not come (skipped or failed files), files finished, failures."""
        self.finished += finished
        self.failed += len(failed)
        self.moved += n
        for line in failed:
            self.write(line)
        if self.heartbeat and time.monotonic() - self._last_line >= self.heartbeat:
            self._last_line = time.monotonic()
            failures = f", {self.failed} failed" if self.failed else ""
            self.write(
                f"progress: {self.finished:,}/{self.files:,} files{failures}, "
                f"{format_bytes(self.moved)} moved, {status}"
            )
        if self._bar is not None:
            if dropped and self._bar.total is not None:
                set_total(self._bar, max(0, self._bar.total - dropped))
            self._bar.n = max(0, self._bar.n + n)
            self._describe(status)
            self._bar.refresh()

    def write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")
            self.stream.flush()

    def _describe(self, status: str) -> None:
        assert self._bar is not None
        failed = f", {self.failed} failed" if self.failed else ""
        status = f", {status}" if status else ""
        self._bar.set_description_str(
            f"total {self.finished}/{self.files} files{failed}{status}", refresh=False
        )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
