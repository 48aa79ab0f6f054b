"""How many files are in flight at once: grown while it pays, up to ``-j``.

Eight files at a time is plenty for one fast host, and far too few for a
manifest spread over many hosts where each answer takes 50 ms: there files/s
is files in flight divided by the latency. So the number grows (doubles)
while three things hold over a round: every file slot was busy, the files
were not queueing for connections (more files would only queue too), and
the process had CPU to spare. The round after a change is not measured
(files begun before it are still finishing). A growth that did not raise
files/s by ``GAIN`` is undone, and the next try waits ``HOLD`` rounds (doubling after
each growth that did not pay), so a run settles where more files stopped
helping instead of drifting to the ceiling. When half the files in flight
wait for a connection, they are halved (never below the start).

A round is at least ``ROUND_FILES`` finished files (and as many as are in
flight) over at least ``ROUND_SPAN`` seconds. Pure: the caller passes the
clock and the process's CPU time.
"""

from __future__ import annotations

from dataclasses import dataclass

GROW = 2  # times as many, per growth
GAIN = 1.15  # files/s must rise at least this much for a growth to stay
CPU_BUSY = 0.8  # of one core: above this, more files only cost CPU
QUEUED = 0.25  # of the files in flight, waiting for a connection: host-bound
HOLD = 8  # rounds before growing again after a growth that did not pay
HOLD_MAX = 256
ROUND_FILES = 16
ROUND_SPAN = 0.2  # seconds


@dataclass(frozen=True, slots=True)
class Round:
    """What one round saw: how it went, and whether more files could help."""

    files_per_s: float
    full: bool  # every slot busy at every finish
    queued: float  # files waiting for a connection, on average, per file in flight
    cpu: float  # CPU seconds per second (1.0: one core busy)


def next_limit(
    limit: int,
    bounds: tuple[int, int],
    seen: Round,
    before: tuple[int, float] | None,
) -> tuple[int, bool]:
    """(files in flight for the next round, did the last growth pay?).

    ``bounds`` are (start, ceiling). ``before`` is (limit, files/s) of the
    round before the last growth, or None when this is not the round after one.
    """
    floor, ceiling = bounds
    if before is not None:
        old_limit, old_rate = before
        if seen.files_per_s < old_rate * GAIN:
            return old_limit, False  # undo: more files did not help
    if seen.queued >= 2 * QUEUED and limit > floor:
        return max(floor, limit // GROW), True  # half of them only wait
    if seen.full and seen.queued < QUEUED and seen.cpu < CPU_BUSY and limit < ceiling:
        return min(ceiling, limit * GROW), True
    return limit, True


class FlightLimit:
    """Files in flight for one run: starts at ``start``, never past ``ceiling``."""

    __slots__ = (
        "_before",
        "_cpu0",
        "_files",
        "_full",
        "_hold",
        "_hold_next",
        "_queued",
        "_settling",
        "_start",
        "_t0",
        "ceiling",
        "limit",
        "rounds",
    )

    def __init__(self, start: int, ceiling: int, now: float, cpu: float) -> None:
        self.ceiling = ceiling
        self._start = self.limit = min(start, ceiling)
        self._settling = False  # the round after a change is not measured
        self._before: tuple[int, float] | None = None
        self._hold = 0  # rounds to wait before the next growth
        self._hold_next = HOLD
        self.rounds = 0  # rounds decided so far
        self._begin(now, cpu)

    def _begin(self, now: float, cpu: float) -> None:
        self._t0 = now
        self._cpu0 = cpu
        self._files = 0
        self._full = True
        self._queued = 0

    def on_done(self, now: float, in_flight: int, queued: int) -> bool:
        """A file finished with ``in_flight`` running (itself included) and
        ``queued`` of them waiting for a connection. True: the round is over,
        call ``end_round`` (the CPU time is read once a round: it costs a
        system call)."""
        self._files += 1
        self._queued += queued
        if in_flight < self.limit:
            self._full = False  # the manifest, or the run's end, held it back
        span = now - self._t0
        return self._files >= max(ROUND_FILES, self.limit) and span >= ROUND_SPAN

    def end_round(self, now: float, cpu: float) -> None:
        """Decide on the round that just ended; ``cpu``: the process's CPU time."""
        if self._settling:  # files begun under the old limit still finish
            self._settling = False
            self._begin(now, cpu)
            return
        span = now - self._t0
        seen = Round(
            files_per_s=self._files / span,
            full=self._full,
            queued=self._queued / (self._files * self.limit),
            cpu=(cpu - self._cpu0) / span,
        )
        self._decide(seen)
        self._begin(now, cpu)

    def _decide(self, seen: Round) -> None:
        self.rounds += 1
        if self._hold > 0 and self._before is None:
            self._hold -= 1
            return
        bounds = (self._start, self.ceiling)
        limit, paid = next_limit(self.limit, bounds, seen, self._before)
        if not paid:
            self._hold = self._hold_next
            self._hold_next = min(HOLD_MAX, self._hold_next * 2)
            self._before = None
        elif limit > self.limit:
            self._before = (self.limit, seen.files_per_s)
        else:
            self._before = None
        self._settling = limit != self.limit
        self.limit = limit
