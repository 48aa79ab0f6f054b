"""Request quotas: the RateLimit headers read, and a spent quota pauses the host."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from downloader import Downloader, Entry
from downloader._engine.budget import ConnectionBudget
from downloader._policy import HostQuota, Quota, host_pause, parse_quota
from downloader.testing import FileServer, QuotaWindow, make_bytes

from .conftest import file_sha256, sha256

NOW = 1_700_000_000.0


def _headers(**given: str) -> dict[str, str]:
    return {name.replace("_", "-").lower(): value for name, value in given.items()}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({}, None, id="none"),
        pytest.param(
            {"RateLimit-Remaining": "0", "RateLimit-Reset": "30"},
            Quota(0, 30.0),
            id="ietf-fields",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) + 42)},
            Quota(0, 42.0),
            id="x-fields-unix-time",
        ),
        pytest.param(
            {"RateLimit": '"default";r=0;t=7'}, Quota(0, 7.0), id="structured"
        ),
        pytest.param(
            {"RateLimit": "limit=100, remaining=3, reset=9"},
            Quota(3, 9.0, 100),
            id="draft-03-06",
        ),
        pytest.param({"RateLimit-Remaining": "12"}, Quota(12, None), id="no-reset"),
        pytest.param({"RateLimit-Reset": "5"}, Quota(None, 5.0), id="no-remaining"),
        pytest.param(
            {"RateLimit-Remaining": "0", "RateLimit-Reset": "86400"},
            Quota(0, 600.0),
            id="capped-at-10-minutes",
        ),
        pytest.param(
            {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(NOW) - 5)},
            Quota(0, 0.0),
            id="reset-in-the-past",
        ),
        pytest.param(
            {"RateLimit-Remaining": "soon", "RateLimit-Reset": "-3"}, None, id="garbage"
        ),
        pytest.param({"RateLimit-Reset": "nan"}, None, id="nan"),
    ],
)
def test_parse_quota(headers: dict[str, str], expected: Quota | None) -> None:
    lower = {k.lower(): v for k, v in headers.items()}
    assert parse_quota(lambda name: lower.get(name.lower()), now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        pytest.param(429, 3.0, 3.0, id="429-retry-after"),
        pytest.param(503, 2.0, 2.0, id="503-retry-after"),
        pytest.param(429, None, None, id="429-without-a-wait"),
        pytest.param(500, 3.0, None, id="500-is-not-about-pace"),
        pytest.param(200, 3.0, None, id="ok"),
    ],
)
def test_host_pause(
    status: int, retry_after: float | None, expected: float | None
) -> None:
    assert host_pause(status, retry_after) == expected


# (answers learnt as (remaining, reset, limit), then takes at times): the waits
HOST_QUOTA = [
    ("unknown-goes", [], [0.0], [0.0]),
    ("counts-what-was-sent", [(2, 1.0, None)], [0.0, 0.0, 0.0], [0.0, 0.0, 1.0]),
    ("answers-only-lower-it", [(1, 1.0, None), (5, 1.0, None)], [0.0, 0.0], [0.0, 1.0]),
    ("a-new-window-allows-the-limit", [(0, 1.0, 2)], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]),
    ("spent-without-a-reset-goes", [(0, None, None)], [0.0], [0.0]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("answers", "times", "waits"),
    [pytest.param(*case[1:], id=case[0]) for case in HOST_QUOTA],
)
def test_host_quota(
    answers: list[tuple[int, float | None, int | None]],
    times: list[float],
    waits: list[float],
) -> None:
    quota = HostQuota()
    for remaining, reset, limit in answers:
        quota.learn(Quota(remaining, reset, limit), now=0.0)
    assert [quota.take(t) for t in times] == waits


async def test_a_paused_host_gets_no_new_slot_until_the_pause_ends() -> None:
    budget = ConnectionBudget(per_host=4, total=8)
    paused, other = "http://127.0.0.1:1/a", "http://127.0.0.2:1/b"
    budget.pause(paused, 0.3)
    assert not await budget.try_slot(paused)  # segments do not start either
    began = time.monotonic()
    async with budget.slot(other):  # another host is not held up
        assert time.monotonic() - began < 0.1
    async with budget.slot(paused):
        waited = time.monotonic() - began
    assert 0.25 <= waited < 1.0
    assert await budget.try_slot(paused)
    budget.release(paused)


@pytest.mark.parametrize("style", ["ietf", "structured", "x"])
async def test_a_spent_quota_holds_requests_back_until_it_resets(
    aiohttp_server: object, tmp_path: Path, style: str
) -> None:
    """A server allowing 10 requests a second, 30 files: few 429s, all files right.

    Without the pause, every file queued behind a spent quota asks anyway and
    earns a 429 (measured: 20 or more of them).
    """
    files = {f"q{i:02}.bin": make_bytes(2_000, seed=i) for i in range(30)}
    origin = FileServer(files=files, quota=QuotaWindow(10, 1.0, style))
    server = await aiohttp_server(origin.app())  # type: ignore[operator]
    origin.base_url = str(server.make_url("")).rstrip("/")
    entries = [Entry(origin.url(name), name) for name in files]
    async with Downloader(tmp_path, jobs=8, retries=5) as dl:
        report = await dl.download(entries)
    assert report.ok, [r.error for r in report.failed]
    for name, data in files.items():
        assert file_sha256(tmp_path / name) == sha256(data)
    assert origin.quota is not None
    assert origin.quota.refused <= 3, origin.quota.refused
    await asyncio.sleep(0)
