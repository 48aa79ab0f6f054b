"""Request quotas a server announces: the ``RateLimit`` header fields.

APIs that serve datasets (Zenodo, Dryad, GitHub, GitLab) say how many requests
are left in the current window and when it resets. With none left, another
request only earns a 429: a host whose quota is spent gets no new request
until the reset. Three spellings are read:

- ``RateLimit-Remaining: 0`` and ``RateLimit-Reset: 30`` (and ``X-RateLimit-*``);
  a reset past 10**9 is a Unix time (GitHub, Zenodo), else seconds;
- the structured field of draft-ietf-httpapi-ratelimit-headers (07 and later):
  ``RateLimit: "default";r=0;t=30``;
- its earlier form (drafts 03 to 06): ``RateLimit: limit=100, remaining=0, reset=30``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from .retry import RETRY_AFTER_CAP

_EPOCH = 10**9  # a reset this large is a point in time, not a number of seconds
_PARAM = re.compile(r"(?:^|[;,\s])(r|t|remaining|reset|limit)\s*=\s*(\d+(?:\.\d+)?)")


@dataclass(frozen=True, slots=True)
class Quota:
    """Requests left in the window (None: not said) and seconds until it resets."""

    remaining: int | None
    reset: float | None
    limit: int | None = None  # requests a whole window allows, when said

    @property
    def spent(self) -> bool:
        """No request left: wait ``reset`` seconds before the next one."""
        return self.remaining == 0 and self.reset is not None


def parse_quota(
    get: Callable[[str], str | None], *, now: float | None = None
) -> Quota | None:
    """The quota a response's headers announce (``get`` looks a header up).

    Returns None when the response says nothing about one. ``now`` is the
    Unix time, for resets given as one (the clock by default).
    """
    remaining = reset = limit = None
    structured = get("RateLimit")
    if structured:
        for name, value in _PARAM.findall(structured.lower()):
            if name in ("r", "remaining"):
                remaining = int(float(value))
            elif name == "limit":
                limit = int(float(value))
            else:
                reset = float(value)
    for prefix in ("RateLimit-", "X-RateLimit-"):
        if remaining is None:
            remaining = _number(get(prefix + "Remaining"))
        if reset is None:
            reset = _seconds(get(prefix + "Reset"))
        if limit is None:
            limit = _number(get(prefix + "Limit"))
    if remaining is None and reset is None:
        return None
    if reset is not None and reset > _EPOCH:
        reset = reset - (time.time() if now is None else now)
    if reset is not None:
        reset = min(max(reset, 0.0), RETRY_AFTER_CAP)
    return Quota(remaining, reset, limit)


def _number(text: str | None) -> int | None:
    """A whole number >= 0 from a header, else None."""
    value = _seconds(text)
    return None if value is None else int(value)


def _seconds(text: str | None) -> float | None:
    """A number >= 0 from a header, else None."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value >= 0 and value == value else None  # not NaN


def host_pause(status: int, retry_after: float | None) -> float | None:
    """Seconds a host asked to be sent nothing new, if it asked.

    A 429, 503 or 403 with a wait (``Retry-After``, or a spent quota's
    reset) asks it for the host, not only for the file that got it.
    """
    if status in (403, 429, 503) and retry_after:
        return retry_after
    return None


class HostQuota:
    """What is left of one host's quota, counting the requests already sent.

    The server counts a request when it arrives; its answers count only the
    requests before them. So each request sent takes one from what is left,
    and an answer can only lower that (``learn``). With none left, the next
    request waits for the reset; then the window allows its ``limit`` again
    (or, not knowing it, requests go until an answer says). Times are the
    caller's monotonic clock.
    """

    __slots__ = ("left", "limit", "resets_at")

    def __init__(self) -> None:
        self.left: int | None = None  # None: not known
        self.limit: int | None = None
        self.resets_at = 0.0

    def learn(self, quota: Quota, now: float) -> None:
        """An answer's quota: lower what is left, move the reset."""
        if quota.limit is not None:
            self.limit = quota.limit
        if quota.reset is not None:
            self.resets_at = max(self.resets_at, now + quota.reset)
        if quota.remaining is not None:
            left = self.left
            self.left = quota.remaining if left is None else min(left, quota.remaining)

    def take(self, now: float) -> float:
        """Seconds to wait before a request may go; 0 when it may, and counted."""
        if self.resets_at and now >= self.resets_at:  # a new window
            self.left, self.resets_at = self.limit, 0.0
        if self.left is None:
            return 0.0
        if self.left > 0:
            self.left -= 1
            return 0.0
        return max(self.resets_at - now, 0.001) if self.resets_at else 0.0
