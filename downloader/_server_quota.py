"""QuotaWindow: a request quota for ``downloader.testing.FileServer``, as APIs send.

Each window of ``seconds`` allows ``limit`` requests; past it the server
answers 429 until the window ends. Every answer carries the quota in one of the
spellings real servers use (``style``): ``"ietf"`` (``RateLimit-Remaining`` and
``RateLimit-Reset`` in seconds), ``"structured"`` (``RateLimit:
"default";r=0;t=1``) or ``"x"`` (``X-RateLimit-*``, the reset as a Unix time);
``"none"`` sends no header at all and answers ``status`` (503, as nginx
``limit_req ... nodelay`` does: a request-rate limit the client can only learn
from the refusals).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass
class QuotaWindow:
    """``limit`` requests per ``seconds``; ``refused`` counts the 429s sent."""

    limit: int
    seconds: float = 1.0
    style: str = "ietf"
    status: int = 429  # what a refused request is answered
    refused: int = 0
    _started: float = 0.0
    _used: int = 0

    def take(self) -> tuple[bool, dict[str, str]]:
        """Count one request: may it be served, and the headers to send."""
        now = time.monotonic()
        if now - self._started >= self.seconds:
            self._started, self._used = now, 0
        allowed = self._used < self.limit
        if allowed:
            self._used += 1
        else:
            self.refused += 1
        reset = self._started + self.seconds - now
        return allowed, self._headers(self.limit - self._used, reset)

    def _headers(self, remaining: int, reset: float) -> dict[str, str]:
        if self.style == "none":
            return {}
        whole = max(1, math.ceil(reset))  # whole seconds, as servers send them
        if self.style == "structured":
            return {"RateLimit": f'"default";r={remaining};t={whole}'}
        if self.style == "x":
            return {
                "X-RateLimit-Limit": str(self.limit),
                "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(math.ceil(time.time() + reset)),
            }
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(whole),
        }
