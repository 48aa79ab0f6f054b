"""Connection slots per host: each file waits its turn, extra segments take idle slots.

aiohttp's connector enforces the hard limits; this keeps one file's segments from
crowding out other files: a file's first connection queues fairly, while a
segment only starts when a slot is free and nobody is waiting for one.

Each host's number of slots adapts (``policy.HostLimit``): halved when it
answers 429 or 503, grown back while its answers are clean, never past
``per_host``. The same push-backs pace its requests (``policy.HostPace``),
for hosts that limit requests per second rather than connections. With
``adapt=False`` it stays at ``per_host``, unpaced.

A host that said to wait (a 429 or 503 with ``Retry-After``, or a spent
``RateLimit`` quota) is paused: no new request goes to it until then, so
the other files queued for it wait instead of each earning a 429.
"""

from __future__ import annotations

import asyncio
import time

from .._exceptions import ConnectionLost, HTTPStatusError, ReadTimeout, TransferError
from .._policy import (
    HostLimit,
    HostPace,
    HostQuota,
    Pushback,
    Quota,
    host_key,
    host_pause,
    pushed_back,
)
from .gate import ResizableGate


class ConnectionBudget:
    """Up to ``per_host`` slots for each host and ``total`` slots overall."""

    def __init__(self, *, per_host: int, total: int, adapt: bool = True) -> None:
        self.per_host = per_host
        self.adapt = adapt
        self._total = asyncio.Semaphore(total)
        self._hosts: dict[str, _HostGate] = {}
        self._queued: dict[str, int] = {}  # files waiting for a slot, per host
        self._queued_total = 0  # files waiting for any slot
        self._queued_hosts = 0  # the sum of _queued
        self._paused: dict[str, float] = {}  # host -> when it may be asked again
        self._quotas: dict[str, HostQuota] = {}  # hosts that announce a quota

    def _host(self, key: str) -> _HostGate:
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _HostGate(HostLimit(self.per_host))
        return host

    def hosts(self) -> dict[str, dict[str, int | float | None]]:
        """Per host: connections and requests/s (None: unpaced) it ended with,
        its push-backs, its requests."""
        return {
            key: {
                "connections": gate.limit.connections,
                "rate": None if gate.pace.rate is None else round(gate.pace.rate, 1),
                "throttled": gate.limit.pushbacks,
                "requests": gate.requests,
            }
            for key, gate in self._hosts.items()
        }

    def slot(self, url: str) -> _Slot:
        """Wait for a connection slot to ``url``'s host (first come, first served).

        ``async with budget.slot(url):``; a class rather than an
        ``asynccontextmanager``, since every file enters one.
        """
        return _Slot(self, host_key(url))

    def pause(self, url: str, seconds: float | None) -> None:
        """No new request to ``url``'s host for ``seconds`` (None: no pause)."""
        self.pause_key(host_key(url), seconds)

    def pause_key(self, key: str, seconds: float | None) -> None:
        if not seconds:
            return
        until = time.monotonic() + seconds
        if until > self._paused.get(key, 0.0):
            self._paused[key] = until

    def paused_for(self, key: str) -> float:
        """Seconds until host ``key`` may be asked again (0: now)."""
        until = self._paused.get(key)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._paused[key]
            return 0.0
        return left

    def learn(self, url: str, quota: Quota) -> None:
        """What an answer from ``url``'s host said of its request quota."""
        key = host_key(url)
        known = self._quotas.get(key)
        if known is None:
            known = self._quotas[key] = HostQuota()
        known.learn(quota, time.monotonic())

    def _wait_before(self, key: str, host: _HostGate) -> float:
        """Seconds until a request may go to host ``key``; 0: now (and counted)."""
        left = self.paused_for(key)
        if left > 0:
            return left
        now = time.monotonic()
        pace = host.pace
        if (left := pace.wait(now)) > 0:
            return left
        if (quota := self._quotas.get(key)) is not None:
            left = quota.take(now)
        if left <= 0:
            pace.grant(now)
        return left

    async def _turn(self, key: str, host: _HostGate) -> None:
        """Return once a request may go to host ``key`` (paused, paced, quota spent)."""
        # A loop, not an Event: a pause may be extended while this one sleeps.
        while (left := self._wait_before(key, host)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(left)

    def files_waiting(self) -> int:
        """Files waiting for a connection now (their host's, or any)."""
        return self._queued_hosts + self._queued_total

    def someone_waiting(self, url: str) -> bool:
        """Is a file queued for a slot to this host (so extra segments should yield)?"""
        return self._queued.get(host_key(url), 0) > 0 or self._queued_total > 0

    async def try_slot(self, url: str) -> bool:
        """Take a slot only if one is idle and no file is waiting; ``release`` it."""
        key = host_key(url)
        host = self._host(key)
        if host.locked() or self._total.locked() or self._wait_before(key, host) > 0:
            return False
        # Not locked means a slot is free and nobody queues for it, so these
        # acquires return without suspending: no other task runs in between.
        await host.acquire()
        await self._total.acquire()
        host.sending += 1
        return True

    def release(self, url: str) -> None:
        host = self._host(host_key(url))
        host.sending -= 1
        host.release()
        self._total.release()


class _HostGate(ResizableGate):
    """A host's slots: as many as its ``limit`` allows now (it may change while
    in use), taken first come, first served, with its pace and its counts."""

    __slots__ = ("limit", "pace", "requests", "sending")

    def __init__(self, limit: HostLimit) -> None:
        super().__init__()
        self.limit = limit
        self.pace = HostPace(time.monotonic())
        self.sending = 0  # slots whose request went (or is going) to the host
        self.requests = 0

    def size(self) -> int:
        return self.limit.connections

    async def acquire(self) -> None:
        await super().acquire()
        self.requests += 1


class _Slot:
    """One held connection slot: the host's, then one of the total.

    ``ok()`` and ``pushback()`` tell the host's limit how the request went.
    """

    __slots__ = ("_budget", "_epoch", "_host", "_key")

    def __init__(self, budget: ConnectionBudget, key: str) -> None:
        self._budget = budget
        self._key = key
        self._host = budget._host(key)
        self._epoch = 0

    def ok(self) -> None:
        """The host answered without pushing back."""
        if self._budget.adapt:
            host = self._host
            host.limit.on_ok(host.sending)
            if host.pace.rate is not None:
                host.pace.on_ok(time.monotonic(), host.requests)
            host.wake()

    def refused(self, exc: TransferError) -> Pushback | None:
        """The request failed so: a push-back (``policy.pushed_back``)? a pause?

        Returns the kind of push-back (None: none), for the progress sink.
        """
        host = self._host
        status = exc.status if isinstance(exc, HTTPStatusError) else 0
        kind = pushed_back(
            status,
            stalled=isinstance(exc, ReadTimeout),
            lost=isinstance(exc, ConnectionLost),
            forbidden_in_a_row=host.limit.on_forbidden() if status == 403 else 0,
        )
        if kind is not None:
            if not self._budget.adapt:
                host.limit.pushbacks += 1  # counted for the report only
            else:
                # A stall or a reset says nothing of the rate; nor does a
                # refusal of more connections than the host ever took.
                limit = host.limit
                if kind == "rate" and not limit.blames_connections(host.sending):
                    sure = limit.proven > 0  # else: connections, or the rate?
                    host.pace.on_pushback(time.monotonic(), host.requests, sure=sure)
                host.limit.on_pushback(self._epoch)
        retry_after = exc.retry_after if isinstance(exc, HTTPStatusError) else None
        self._budget.pause_key(self._key, host_pause(status, retry_after))
        return kind

    async def __aenter__(self) -> _Slot:
        budget, key, host = self._budget, self._key, self._host
        budget._queued[key] = budget._queued.get(key, 0) + 1
        budget._queued_hosts += 1
        try:
            await host.acquire()
        finally:
            budget._queued[key] -= 1
            budget._queued_hosts -= 1
        if budget._paused or budget._quotas or host.pace.rate is not None:
            try:  # holding the host's slot: all wait
                await budget._turn(key, host)
            except BaseException:
                host.release()
                raise
        budget._queued_total += 1
        try:
            await budget._total.acquire()
        except BaseException:
            host.release()
            raise
        finally:
            budget._queued_total -= 1
        self._epoch = host.limit.epoch
        host.sending += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._budget._total.release()
        self._host.sending -= 1
        self._host.release()
