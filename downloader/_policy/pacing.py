"""How many requests per second a host gets: a paced rate, learnt from push-backs.

Capping connections is not enough for a host that limits requests per second
(nginx ``limit_req ... nodelay``, API gateways): on a fast link one connection
alone sends more than it allows. So a push-back also paces the host's requests:
at half the rate it was sent at (once per round: after a cut, refusals count
again only once the host has let a request through, since a host counting
requests in fixed windows refuses all of a window), then regrown by half per
clean round (a second's worth of answers) up to ``HOLD`` of the lowest rate
that was pushed back. Held there for ``PROBE_AFTER`` clean rounds, the rate
probes higher (a tenth per round); a probe that holds a round forgets the old
limit, one that fails doubles the wait before the next. A host whose demand
stays under the paced rate for a round is no longer paced.

Pure: the caller passes the time, so the tables need no clock.
"""

from __future__ import annotations

HOLD = 0.9  # the rate held below the lowest one pushed back
GROW = 1.5  # per clean round, up to the hold
PROBE_GROW = 1.1  # per clean round, above the hold
PROBE_AFTER = 8  # clean rounds at the hold before a probe (doubles on failure)
MIN_RATE = 0.5  # requests per second: never slower
MIN_SPAN = 0.05  # seconds: the shortest span a send rate is measured over
MIN_SENT = 4  # fewer requests than this since the last change say nothing of a rate


class HostPace:
    """The request rate of one host: ``None`` (unpaced) until it pushes back."""

    __slots__ = (
        "_armed",
        "_bound",
        "_clean",
        "_mark_n",
        "_mark_t",
        "_next",
        "_probe_after",
        "_rounds_held",
        "rate",
        "too_fast",
    )

    def __init__(self, now: float) -> None:
        self.rate: float | None = None
        self.too_fast: float | None = None  # the lowest rate pushed back
        self._next = 0.0  # when the next request may go
        self._mark_t = now  # the send rate is measured from here
        self._mark_n = 0
        self._clean = 0
        self._armed = True  # has a request got through since the last cut?
        self._bound = False  # did a request wait during this round?
        self._rounds_held = 0
        self._probe_after = PROBE_AFTER

    def wait(self, now: float) -> float:
        """Seconds until the next request may go (0: now); nothing taken."""
        if self.rate is None or now >= self._next:
            return 0.0
        self._bound = True
        return self._next - now

    def grant(self, now: float) -> None:
        """A request goes now: the next one waits its interval."""
        if self.rate is not None:
            self._next = max(self._next, now) + 1.0 / self.rate

    def on_pushback(self, now: float, requests: int, *, sure: bool = True) -> bool:
        """A push-back; ``requests``: sent so far. True if it cut the rate.

        ``sure=False``: it may as well have been too many connections (the
        host's first push-back): the rate is cut, but not remembered as too
        fast, so clean rounds grow it back until nobody waits for it.
        """
        if not self._armed:
            return False  # the host has not let one through since the last cut
        rate = self.rate
        if rate is None:
            if requests - self._mark_n < MIN_SENT:
                return False  # a retried file's 503 is the backoff's to handle
            span = max(now - self._mark_t, MIN_SPAN)
            rate = (requests - self._mark_n) / span  # the rate it was sent at
        hold = self.too_fast * HOLD if self.too_fast is not None else None
        if sure:
            self.too_fast = rate if self.too_fast is None else min(self.too_fast, rate)
        if hold is not None and rate > hold * 1.0001:
            self._probe_after *= 2  # a probe failed: back to the hold, wait longer
            new = hold
        else:
            new = rate / 2
        self.rate = max(MIN_RATE, new)
        self._mark_t, self._mark_n = now, requests
        self._clean = self._rounds_held = 0
        self._bound = self._armed = False
        return True

    def on_ok(self, now: float, requests: int) -> None:
        """A clean answer: after a round of them, grow (or stop pacing)."""
        self._armed = True
        rate = self.rate
        if rate is None:
            return
        self._clean += 1
        if self._clean < rate:
            return
        self._clean = 0
        bound, self._bound = self._bound, False
        hold = self.too_fast * HOLD if self.too_fast is not None else None
        if hold is None or rate < hold:
            if not bound and hold is None:
                self.rate = None  # nobody waited a round: pacing is not the limit
                self._mark_t, self._mark_n = now, requests
                return
            grown = rate * GROW
            self.rate = min(grown, hold) if hold is not None else grown
            return
        if self.too_fast is not None and rate > self.too_fast:
            self.too_fast = None  # a probe held a whole round: the limit moved
            self._probe_after = PROBE_AFTER
            self.rate = rate * GROW
            return
        self._rounds_held += 1
        if self._rounds_held >= self._probe_after:
            self.rate = rate * PROBE_GROW
        elif not bound:
            self.rate = None  # held, and nobody waited: the rate is not the limit
            self._mark_t, self._mark_n = now, requests
