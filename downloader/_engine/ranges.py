"""Ranges of one file: the geometry of its segments, and how each range is asked for."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .._exceptions import HTTPStatusError
from .._http.session import Environment, Session
from .._http.stream import Stream, open_stream
from .._policy import CallerHeaders, ask_entry_again, range_headers
from .._storage.writer import PartWriter


@dataclass(eq=False)
class Segment:
    """Bytes [start, end) of the file; [start, saved) are on disk."""

    start: int
    pos: int  # next byte to receive
    end: int  # shrinks when another connection takes over the tail
    saved: int
    busy: bool = False  # a connection is (or is about to be) working on it
    writer: PartWriter | None = None  # while one is open: its saved is live

    @property
    def on_disk(self) -> int:
        """End of the bytes written so far (live while a writer is open)."""
        return self.writer.saved if self.writer is not None else self.saved

    @property
    def left(self) -> int:
        return self.end - self.pos


def split_point(segments: list[Segment], min_size: int) -> tuple[Segment, int] | None:
    """The busy segment with the most bytes left and the byte to cut it at."""
    busy = [s for s in segments if s.busy and s.left >= 2 * min_size]
    if not busy:
        return None
    victim = max(busy, key=lambda s: s.left)
    return victim, victim.pos + victim.left // 2


def contiguous_prefix(segments: list[Segment]) -> int:
    """How many bytes from the start of the file are all on disk."""
    at = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start != at:
            break
        if seg.saved < seg.end:
            return seg.saved
        at = seg.end
    return at


class RangeOpener:
    """Opens ``bytes=start-end`` of one file for its segments.

    Ranges go where ``url`` redirected this try (learned from each answer),
    never to a target saved by an earlier run: presigned targets expire. A
    target that stops answering sends the range back through ``url`` once.
    Every request asks ``caller`` which headers it may carry.
    """

    def __init__(
        self,
        session: Session,
        env: Environment | None,
        url: str,
        caller: CallerHeaders,
        validator: str | None,
        *,
        target: str,
    ) -> None:
        self.session = session
        self.env = env
        self.url = url
        self.caller = caller
        self.validator = validator
        self.target = target  # where the last answer came from

    @contextlib.asynccontextmanager
    async def __call__(self, start: int, end: int) -> AsyncIterator[Stream]:
        ranged = range_headers(start, end, self.validator)
        async with contextlib.AsyncExitStack() as stack:
            at = self.target
            try:
                stream = await stack.enter_async_context(
                    open_stream(self.session, at, self.caller, ranged, self.env)
                )
            except HTTPStatusError as exc:
                if at == self.url or not ask_entry_again(exc.status):
                    raise
                stream = await stack.enter_async_context(
                    open_stream(self.session, self.url, self.caller, ranged, self.env)
                )
            self.target = stream.answer.url
            yield stream
