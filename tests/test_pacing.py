"""A host that limits requests per second: its requests are paced after push-backs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from downloader import Downloader, Entry
from downloader._policy import HostPace
from downloader._policy.pacing import (
    HOLD,
    MIN_RATE,
    MIN_SENT,
    MIN_SPAN,
    PROBE_AFTER,
)
from downloader.testing import FileServer, QuotaWindow, make_bytes

from .conftest import file_sha256, sha256


def _clean_rounds(pace: HostPace, rounds: int, *, bound: bool = True) -> None:
    """``rounds`` rounds of clean answers; ``bound``: a request waited in each."""
    for _ in range(rounds):
        assert pace.rate is not None
        if bound:
            pace.wait(pace._next - 0.001)  # somebody waited its turn
        for _ in range(int(pace.rate) + 1):
            pace.on_ok(0.0, 0)


def _paced_at_20_after_40_failed() -> HostPace:
    """Sent at 80/s and pushed back (40), then pushed back again (20)."""
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 80)
    pace.on_ok(1.5, 80)  # one got through: the next refusal counts
    pace.on_pushback(2.0, 80)
    return pace


def test_unpaced_until_a_push_back() -> None:
    pace = HostPace(now=0.0)
    assert pace.rate is None
    assert pace.wait(0.0) == 0.0
    pace.on_ok(1.0, 10)
    assert pace.rate is None


@pytest.mark.parametrize(
    ("span", "sent", "expected"),
    [
        pytest.param(1.0, 40, 20.0, id="half-the-rate-it-was-sent-at"),
        pytest.param(0.001, 10, 10 / MIN_SPAN / 2, id="short-span-is-min-span"),
        pytest.param(10.0, MIN_SENT, MIN_RATE, id="never-below-the-floor"),
    ],
)  # fmt: skip
def test_the_first_push_back_paces_at_half_the_send_rate(
    span: float, sent: int, expected: float
) -> None:
    pace = HostPace(now=0.0)
    pace.on_pushback(span, sent)
    assert pace.rate == pytest.approx(expected)


def test_too_few_requests_say_nothing_of_a_rate() -> None:
    """One file retried after a 503 is the backoff's business, not pacing's."""
    pace = HostPace(now=0.0)
    assert not pace.on_pushback(1.0, MIN_SENT - 1)
    assert pace.rate is None


def test_requests_are_spaced_by_the_rate() -> None:
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 20)  # 10 per second: one every 0.1 s
    pace.grant(1.0)
    assert pace.wait(1.0) == pytest.approx(0.1)
    assert pace.wait(1.05) == pytest.approx(0.05)
    assert pace.wait(1.1) == 0.0
    pace.grant(1.1)
    assert pace.wait(1.1) == pytest.approx(0.1)


def test_a_second_push_back_halves_and_remembers_the_rate_that_failed() -> None:
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 80)  # sent at 80/s: paced at 40
    pace.on_ok(1.5, 80)
    pace.on_pushback(2.0, 80)  # 40 too fast as well
    assert pace.rate == 20.0
    assert pace.too_fast == 40.0


def test_after_a_cut_refusals_count_again_once_one_got_through() -> None:
    """A host counting requests in fixed windows refuses the rest of a window."""
    pace = HostPace(now=0.0)
    assert pace.on_pushback(1.0, 80)
    assert not pace.on_pushback(1.01, 81)  # the same window: nothing new
    assert pace.rate == 40.0
    pace.on_ok(1.3, 82)
    assert pace.on_pushback(1.4, 83)
    assert pace.rate == 20.0


def test_clean_rounds_grow_back_to_the_hold_and_stay() -> None:
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 80)
    pace.on_ok(1.5, 80)  # one got through: the next refusal counts
    pace.on_pushback(2.0, 80)  # 20, and 40 failed: hold at 36
    _clean_rounds(pace, 1)
    assert pace.rate == 30.0  # grown by half
    _clean_rounds(pace, 1)
    assert pace.rate == 40 * HOLD  # not past the hold
    _clean_rounds(pace, PROBE_AFTER - 1)
    assert pace.rate == 40 * HOLD  # held for PROBE_AFTER rounds


def test_a_probe_that_holds_forgets_the_old_limit() -> None:
    pace = _paced_at_20_after_40_failed()
    _clean_rounds(pace, 2 + PROBE_AFTER)  # at the hold, then probing
    assert pace.rate is not None
    assert pace.rate > 40 * HOLD
    _clean_rounds(pace, 3)  # past 40, clean a whole round
    assert pace.too_fast is None


def test_a_failed_probe_goes_back_to_the_hold_and_waits_longer() -> None:
    pace = _paced_at_20_after_40_failed()
    _clean_rounds(pace, 2 + PROBE_AFTER)  # probing above 36
    pace.on_pushback(3.0, 200)
    assert pace.rate == 40 * HOLD
    assert pace._probe_after == 2 * PROBE_AFTER


def test_a_host_whose_demand_stays_under_the_rate_is_no_longer_paced() -> None:
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 80)  # 40 per second, nothing failed below
    pace.too_fast = None
    _clean_rounds(pace, 1, bound=False)
    assert pace.rate is None


def test_at_the_hold_a_round_nobody_waited_ends_the_pacing() -> None:
    pace = _paced_at_20_after_40_failed()
    _clean_rounds(pace, 2)  # at the hold
    _clean_rounds(pace, 1, bound=False)
    assert pace.rate is None
    assert pace.too_fast == 40.0  # remembered for the next push-back


async def test_a_host_limiting_requests_per_second_gets_few_503s(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """60 small files from a host allowing 5 requests per 0.25 s, 503 past it.

    Halving connections alone does not help here: one connection on loopback
    sends hundreds of requests a second. Without pacing: about 86 503s, with
    it about 20 (most while the rate comes down from the first burst).
    """
    files = {f"r{i:03}.bin": make_bytes(2_000, seed=i) for i in range(60)}
    quota = QuotaWindow(limit=5, seconds=0.25, style="none", status=503)
    origin = FileServer(files=files, quota=quota)
    server = await aiohttp_server(origin.app())
    origin.base_url = str(server.make_url("")).rstrip("/")
    async with Downloader(tmp_path, jobs=8, retries=20, retry_wait=0.05) as dl:
        report = await dl.download([Entry(origin.url(n), n) for n in files])
        (host,) = dl.hosts().values()
    assert report.ok, [r.error for r in report.failed]
    for name, data in files.items():
        assert file_sha256(tmp_path / name) == sha256(data)
    assert quota.refused <= 30, quota.refused
    assert host["throttled"] == quota.refused
    assert isinstance(host["rate"], float)
    assert host["rate"] <= 40


def test_an_unsure_push_back_cuts_the_rate_but_sets_no_hold() -> None:
    """The host's first push-back may have been too many connections (nginx
    limit_conn): the rate grows back past it until nobody waits for it."""
    pace = HostPace(now=0.0)
    pace.on_pushback(1.0, 80, sure=False)  # sent at 80/s
    assert (pace.rate, pace.too_fast) == (40.0, None)
    _clean_rounds(pace, 2)
    assert pace.rate == 40.0 * 1.5 * 1.5  # past the 72 a hold of 80 would stop at
    _clean_rounds(pace, 1, bound=False)
    assert pace.rate is None
