"""A first-come, first-served semaphore whose size may change while in use."""

from __future__ import annotations

import asyncio
from collections import deque


class ResizableGate:
    """``size()`` slots; a smaller size lets nobody new in until enough leave.

    Subclasses say what the size is now (a host's connections, a run's files
    in flight) and call ``wake`` when it grows.
    """

    __slots__ = ("_waiting", "active")

    def __init__(self) -> None:
        self.active = 0  # slots held
        self._waiting: deque[asyncio.Future[None]] = deque()

    def size(self) -> int:
        raise NotImplementedError

    def locked(self) -> bool:
        return self.active >= self.size() or bool(self._waiting)

    async def acquire(self) -> None:
        if not self.locked():
            self.active += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # granted as it was cancelled: pass it on
            else:
                self._waiting.remove(turn)
            raise

    def release(self) -> None:
        self.active -= 1
        self.wake()

    def wake(self) -> None:
        """Let waiters in while there is room (after a release or a growth)."""
        size = self.size()
        while self._waiting and self.active < size:
            turn = self._waiting.popleft()
            if not turn.done():
                self.active += 1
                turn.set_result(None)
