"""How many connections a host gets: additive increase, multiplicative decrease.

A host pushes back with 429 or 503 (nginx ``limit_conn``, S3's per-prefix
limits, API gateways), a burst of 403s, stalls, and resets or refused
connections (``pushed_back``). Each push-back halves the host's limit, once per
round: the answers to requests sent before the cut say nothing new, so they
are not counted again (TCP's rule, one decrease per window). Clean answers
grow it by one per round (``limit`` of them), up to the ``ceiling``
(``--per-host``).

After a push-back at limit L the limit grows freely only up to L - 1. Asking
for L again is a probe: it waits for a long clean run, which doubles after
each probe that fails. A host that allows 4 connections thus answers a few
429s at the start and then about one in a few hundred requests, not one in
ten as plain AIMD would.
"""

from __future__ import annotations

from typing import Literal

PROBE_AFTER = 32  # clean rounds at L - 1 before L is tried again (doubles)


class HostLimit:
    """The connection limit of one host, learnt from its answers."""

    __slots__ = (
        "answered",
        "ceiling",
        "clean",
        "epoch",
        "forbidden",
        "limit",
        "peak",
        "probe_after",
        "proven",
        "pushbacks",
        "too_many",
    )

    def __init__(self, ceiling: int, start: int | None = None) -> None:
        self.ceiling = ceiling
        self.limit = float(min(start or ceiling, ceiling))
        self.epoch = 0  # counts the cuts; a request remembers the one it went under
        self.clean = 0  # clean answers since the limit last changed
        self.too_many: int | None = None  # the lowest limit a push-back came at
        self.probe_after = PROBE_AFTER
        self.pushbacks = 0  # every one, counted or not, for the report
        self.answered = False  # a clean answer came at all
        self.proven = 0  # the most requests at once a whole round was clean at
        self.peak = 0  # the most requests at once in this round
        self.forbidden = 0  # 403s in a row since the last clean answer

    def on_forbidden(self) -> int:
        """A 403: the run of them since the host last answered clean (0: never did)."""
        self.forbidden += 1
        return self.forbidden if self.answered else 0

    @property
    def connections(self) -> int:
        return max(1, int(self.limit))

    def on_ok(self, active: int | None = None) -> None:
        """A clean answer with ``active`` requests at the host (None: as many
        as its limit): one more connection after a round of them.

        Only a round that used every connection grows the limit: one the
        request pace (or the manifest) kept under it says nothing of more.
        """
        self.answered = True
        self.forbidden = 0
        self.clean += 1
        now = self.connections
        self.peak = max(self.peak, now if active is None else active)
        if self.clean < now:
            return
        self.proven = max(self.proven, min(self.peak, now))
        if self.too_many is not None and now >= self.too_many:
            self.too_many = None  # a clean round where it pushed back: it holds now
            self.probe_after = PROBE_AFTER
        target = now + 1
        probing = self.too_many is not None and target >= self.too_many
        if probing and self.clean < now * self.probe_after:
            return  # at L - 1: a probe of L waits for a long clean run
        if target <= self.ceiling and self.peak >= now:
            self.limit = float(target)
        self.clean = 0
        self.peak = 0

    def blames_connections(self, active: int) -> bool:
        """Would more connections than ever held clean explain a push-back
        that came with ``active`` requests at the host?

        (Before a clean round nothing is known: no.) Then the push-back says
        nothing of the request rate: a host that limits connections (nginx
        ``limit_conn``) refuses each probe of one more, and pacing it too
        would hold it under what its connections can carry.
        """
        return 0 < self.proven < active

    def on_pushback(self, epoch: int) -> None:
        """A push-back to a request sent under cut ``epoch``: halve, once a round."""
        self.pushbacks += 1
        if epoch != self.epoch:
            return  # sent before the last cut: already answered for
        at = self.connections
        if self.too_many is not None and at >= self.too_many:
            self.probe_after *= 2  # a probe failed: wait longer before the next
        self.too_many = at if self.too_many is None else min(self.too_many, at)
        self.limit = max(1.0, self.limit / 2)
        self.epoch += 1
        self.clean = 0
        self.peak = 0


FORBIDDEN_BURST = 3  # 403s in a row, after clean answers, that mean "slow down"

Pushback = Literal["rate", "connections"]


def pushed_back(
    status: int,
    *,
    stalled: bool = False,
    lost: bool = False,
    forbidden_in_a_row: int = 0,
) -> Pushback | None:
    """Does this failure say the host is overloaded, and of what?

    ``"rate"``: too many requests (429, 503, or a burst of 403s from a host
    that was answering: a firewall's rate limit); fewer connections and
    paced requests. ``"connections"``: a stall past ``--timeout``, or a
    connection reset or refused; fewer connections, the pace says nothing.
    None: other failures (a 404, a lone 403, a 500) say nothing of load.
    ``forbidden_in_a_row`` counts this 403 and those before it since the
    host's last clean answer (0: it has not answered clean yet).
    """
    if status in (429, 503):
        return "rate"
    if status == 403 and forbidden_in_a_row >= FORBIDDEN_BURST:
        return "rate"
    if stalled or lost:
        return "connections"
    return None
