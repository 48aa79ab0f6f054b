"""A token bucket shared by every worker, for ``--limit-rate``."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Lets ``rate`` bytes per second through, summed over every caller.

    The bucket holds at most a quarter second of bytes, so a burst after a quiet
    spell stays short.
    """

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            msg = "rate must be positive"
            raise ValueError(msg)
        self.rate = rate
        self._capacity = max(rate / 4, 64 * 1024)
        self._tokens = self._capacity
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, n: int) -> None:
        """Wait until ``n`` bytes may pass (callers queue fairly behind a lock)."""
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(
                self._capacity, self._tokens + (now - self._stamp) * self.rate
            )
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)
