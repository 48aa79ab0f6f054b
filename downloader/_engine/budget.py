"""Connection slots per host: each file waits its turn, extra segments take idle slots.

aiohttp's connector enforces the hard limits; this keeps one file's segments from
crowding out other files: a file's first connection queues fairly, while a
segment only starts when a slot is free and nobody is waiting for one.
"""

from __future__ import annotations

import asyncio

from .._policy import host_key


class ConnectionBudget:
    """``per_host`` slots for each host and ``total`` slots overall."""

    def __init__(self, *, per_host: int, total: int) -> None:
        self.per_host = per_host
        self._total = asyncio.Semaphore(total)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._queued: dict[str, int] = {}  # files waiting for a slot, per host
        self._queued_total = 0  # files waiting for any slot

    def _host(self, key: str) -> asyncio.Semaphore:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = asyncio.Semaphore(self.per_host)
        return host

    def slot(self, url: str) -> _Slot:
        """Wait for a connection slot to ``url``'s host (first come, first served).

        ``async with budget.slot(url):``; a class rather than an
        ``asynccontextmanager``, since every file enters one.
        """
        return _Slot(self, host_key(url))

    def someone_waiting(self, url: str) -> bool:
        """Is a file queued for a slot to this host (so extra segments should yield)?"""
        return self._queued.get(host_key(url), 0) > 0 or self._queued_total > 0

    async def try_slot(self, url: str) -> bool:
        """Take a slot only if one is idle and no file is waiting; ``release`` it."""
        host = self._host(host_key(url))
        if host.locked() or self._total.locked():
            return False
        # Not locked means a slot is free and nobody queues for it, so these
        # acquires return without suspending: no other task runs in between.
        await host.acquire()
        await self._total.acquire()
        return True

    def release(self, url: str) -> None:
        self._host(host_key(url)).release()
        self._total.release()


class _Slot:
    """One held connection slot: the host's, then one of the total."""

    __slots__ = ("_budget", "_host", "_key")

    def __init__(self, budget: ConnectionBudget, key: str) -> None:
        self._budget = budget
        self._key = key
        self._host = budget._host(key)

    async def __aenter__(self) -> None:
        budget, key, host = self._budget, self._key, self._host
        budget._queued[key] = budget._queued.get(key, 0) + 1
        try:
            await host.acquire()
        finally:
            budget._queued[key] -= 1
        budget._queued_total += 1
        try:
            await budget._total.acquire()
        except BaseException:
            host.release()
            raise
        finally:
            budget._queued_total -= 1

    async def __aexit__(self, *exc_info: object) -> None:
        self._budget._total.release()
        self._host.release()
