"""Retries as values: how many tries are left, which mirror is next, how long to wait.

urllib3's ``Retry`` is the model: a ``RetryState`` never changes; each
failure gives the next one, or None when the file has had its tries. The
engine's loop only carries these out.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from datetime import UTC, datetime

from .._settings import BACKOFF_BASE

BACKOFF_CAP = 60.0  # no single wait is longer than this...
RETRY_AFTER_CAP = 600.0  # ...unless the server asked for it (up to 10 minutes)


def parse_retry_after(
    value: str | None, *, now: datetime | None = None
) -> float | None:
    """Seconds to wait from ``Retry-After`` (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        # Here, not at the top: email.utils (and the socket module it pulls
        # in) cost plan, verify and --help ~5 ms for a header seldom sent.
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delta, 0.0), RETRY_AFTER_CAP)


def backoff_delay(
    failures: int,
    retry_after: float | None = None,
    *,
    rng: random.Random | None = None,
    base: float = BACKOFF_BASE,
) -> float:
    """Exponential backoff with full jitter, never shorter than ``Retry-After``."""
    rng = rng or random.Random()
    doublings = min(max(failures - 1, 0), 32)  # 2**32 * base is past any cap
    ceiling = min(BACKOFF_CAP, base * 2**doublings)
    delay = rng.uniform(ceiling / 2, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass(frozen=True, slots=True)
class RetryState:
    """The tries of one file so far: failures that made no progress, counted.

    ``retries`` is how many such failures are allowed after the first try.
    The first rejected resume is free (its bytes are gone, so starting over
    is no failure) and follows at once; every other try waits ``delay()``.
    """

    retries: int
    failures: int = 0
    free_restart: bool = True
    wait: bool = True  # the next try waits for the backoff first

    def after_failure(self, *, progressed: bool) -> RetryState | None:
        """The state after a try that failed but may be tried again.

        A try that got further into the file than any before (``progressed``)
        costs no retry: a slow, breaking connection still finishes.
        """
        failures = self.failures if progressed else self.failures + 1
        if failures > self.retries:
            return None
        return dataclasses.replace(self, failures=failures, wait=True)

    def after_restart(self) -> RetryState | None:
        """The state after the bytes on disk were refused (restart from zero)."""
        if self.free_restart:
            return dataclasses.replace(self, free_restart=False, wait=False)
        return self.after_failure(progressed=False)

    def at_once(self) -> RetryState:
        """The same tries, the next one without a wait (another mirror's turn)."""
        return dataclasses.replace(self, wait=False)

    def delay(
        self,
        retry_after: float | None = None,
        *,
        rng: random.Random | None = None,
        base: float = BACKOFF_BASE,
    ) -> float:
        """Seconds to wait before the next try (``Retry-After`` at least)."""
        return backoff_delay(max(self.failures, 1), retry_after, rng=rng, base=base)


@dataclass(frozen=True, slots=True)
class MirrorSet:
    """The URLs of one file (the entry's, then its mirrors) and whose turn it is.

    A mirror that fails without progress hands over to the next (``rotate``);
    one that makes progress keeps its turn. A final error (404, a wrong size)
    drops a URL for this file (``drop``); none left ends the file.
    """

    urls: tuple[str, ...]
    turn: int = 0

    @property
    def current(self) -> str:
        return self.urls[self.turn % len(self.urls)]

    def rotate(self) -> MirrorSet:
        return dataclasses.replace(self, turn=self.turn + 1)

    def drop(self, url: str) -> MirrorSet | None:
        """Without ``url``; None when it was the last one."""
        urls = tuple(u for u in self.urls if u != url)
        return dataclasses.replace(self, urls=urls) if urls else None
