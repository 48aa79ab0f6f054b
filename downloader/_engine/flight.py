"""File slots: how many files a run handles at once (``policy.FlightLimit``)."""

from __future__ import annotations

import time

from .._policy import FlightLimit
from .gate import ResizableGate


class FileSlots(ResizableGate):
    """A semaphore whose size is the run's files in flight, which may grow.

    With ``adapt`` it starts small and follows ``FlightLimit``; without, it
    stays at ``ceiling``. First come, first served.
    """

    __slots__ = ("_control", "_fixed", "peak", "running")

    def __init__(self, start: int, ceiling: int, *, adapt: bool) -> None:
        now, cpu = time.monotonic(), time.process_time()
        self._control = FlightLimit(start, ceiling, now, cpu) if adapt else None
        self._fixed = ceiling
        super().__init__()
        self.running = 0  # files being handled (a held slot may wait for input)
        self.peak = 0  # the most files handled at once

    @property
    def limit(self) -> int:
        return self._fixed if self._control is None else self._control.limit

    def size(self) -> int:
        return self.limit

    def finished(self, queued: int, *, backlog: bool) -> None:
        """A file is done (still holding its slot); ``queued``: files waiting
        for a connection now; ``backlog``: entries are ready to go."""
        if self._control is not None:
            # Slots held, when more entries wait (a slot freed is taken at
            # once, but its file starts a moment later); else files at work.
            busy = self.active if backlog else self.running
            control, now = self._control, time.monotonic()
            if control.on_done(now, busy, queued):
                control.end_round(now, time.process_time())

    def started(self) -> None:
        """A file is being handled now."""
        self.running += 1
        self.peak = max(self.peak, self.running)
