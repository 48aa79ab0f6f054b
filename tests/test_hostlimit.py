"""A host's connections adapt: halved when it pushes back, grown back while clean."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from downloader import Downloader, Entry
from downloader._policy import HostLimit, pushed_back
from downloader._policy.hostlimit import FORBIDDEN_BURST, PROBE_AFTER
from downloader._settings import Settings
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, sha256
from .test_cli import run_cli


def _run(limit: HostLimit, events: str) -> list[int]:
    """Feed ``events`` ("o" clean answer, "p" push-back under the current cut,
    "s" a stale push-back from before it); the connections after each."""
    seen = []
    for event in events:
        if event == "o":
            limit.on_ok()
        elif event == "p":
            limit.on_pushback(limit.epoch)
        else:
            limit.on_pushback(limit.epoch - 1)
        seen.append(limit.connections)
    return seen


@pytest.mark.parametrize(
    ("ceiling", "start", "events", "expected"),
    [
        pytest.param(8, None, "", [], id="starts-at-the-ceiling"),
        pytest.param(8, 2, "oo", [2, 3], id="a-round-of-clean-grows-by-one"),
        pytest.param(4, None, "oooo", [4, 4, 4, 4], id="never-past-the-ceiling"),
        pytest.param(8, None, "p", [4], id="a-push-back-halves"),
        pytest.param(8, None, "psss", [4, 4, 4, 4], id="once-per-round"),
        pytest.param(8, None, "pp", [4, 2], id="a-push-back-in-the-new-round-halves"),
        pytest.param(2, None, "ppp", [1, 1, 1], id="never-below-one"),
        pytest.param(
            8, None, "p" + "o" * 4 + "o" * 5, [4] + [4] * 3 + [5] + [5] * 4 + [6],
            id="recovers-one-per-round",
        ),
    ],
)  # fmt: skip
def test_host_limit(
    ceiling: int, start: int | None, events: str, expected: list[int]
) -> None:
    assert _run(HostLimit(ceiling, start), events) == expected


def test_after_a_push_back_the_limit_it_came_at_waits_for_a_long_clean_run() -> None:
    limit = HostLimit(8, start=5)
    _run(limit, "p")  # at 5: now 2, and 5 is "too many"
    _run(limit, "oo" + "ooo")  # 2 -> 3 -> 4
    assert limit.connections == 4
    _run(limit, "o" * (4 * PROBE_AFTER - 1))
    assert limit.connections == 4  # not yet
    _run(limit, "o")
    assert limit.connections == 5  # the probe
    _run(limit, "p")  # failed: back to 2, and the next probe waits twice as long
    assert limit.probe_after == 2 * PROBE_AFTER


def test_a_probe_that_holds_lifts_the_memory() -> None:
    limit = HostLimit(8, start=3)
    _run(limit, "p")  # 3 too many, now 1
    _run(limit, "o" + "oo")  # 1 -> 2, then waits at 2
    _run(limit, "o" * (2 * PROBE_AFTER))
    assert limit.connections == 3
    _run(limit, "ooo")  # a clean round at 3: it holds now
    assert (limit.too_many, limit.connections) == (None, 4)


@pytest.mark.parametrize(
    ("status", "flags", "expected"),
    [
        (429, {}, "rate"),
        (503, {}, "rate"),
        (0, {"stalled": True}, "connections"),  # a stall past --timeout
        (0, {"lost": True}, "connections"),  # a reset, a refused connection
        (404, {}, None),
        (500, {}, None),
        (200, {}, None),
        (403, {}, None),  # a lone 403: a private file
        (403, {"forbidden_in_a_row": FORBIDDEN_BURST - 1}, None),
        (403, {"forbidden_in_a_row": FORBIDDEN_BURST}, "rate"),  # a burst
    ],
)
def test_pushed_back(status: int, flags: dict[str, Any], expected: str | None) -> None:
    assert pushed_back(status, **flags) == expected


def test_only_a_push_back_past_the_connections_proven_clean_blames_them() -> None:
    """Such a push-back leaves the request rate alone (budget: no pacing)."""
    limit = HostLimit(8, start=4)
    assert not limit.blames_connections(5)  # nothing proven yet: could be the rate
    for _ in range(4):
        limit.on_ok(active=4)  # a clean round with all 4 in use: one more
    assert (limit.proven, limit.connections) == (4, 5)
    assert limit.blames_connections(5)  # refused with 5 at once: the fifth
    assert not limit.blames_connections(3)  # with 3 at once: it took 4, so the rate


def test_a_round_that_left_connections_unused_does_not_grow_them() -> None:
    """A paced host (or a thin manifest) keeps fewer requests in flight than
    its limit: clean answers then prove nothing about more connections."""
    limit = HostLimit(8, start=4)
    for _ in range(12):
        limit.on_ok(active=2)
    assert (limit.connections, limit.proven) == (4, 2)
    for _ in range(4):
        limit.on_ok(active=4)
    assert (limit.connections, limit.proven) == (5, 4)


def test_403s_count_as_a_burst_only_after_clean_answers() -> None:
    limit = HostLimit(8)
    assert [limit.on_forbidden() for _ in range(4)] == [0, 0, 0, 0]  # never answered
    limit.on_ok()
    assert [limit.on_forbidden() for _ in range(3)] == [1, 2, 3]
    limit.on_ok()  # a clean answer ends the run
    assert limit.on_forbidden() == 1


async def _limited_origin(
    aiohttp_server: Any, count: int
) -> tuple[FileServer, dict[str, bytes]]:
    files = {f"c{i:03}.bin": make_bytes(40_000, seed=i) for i in range(count)}
    origin = FileServer(files=files, connection_limit=3)
    for name in files:  # slow enough that connections overlap
        origin.faults[name] = __import__("downloader").testing.Faults(rate=400_000)
    server = await aiohttp_server(origin.app())
    origin.base_url = str(server.make_url("")).rstrip("/")
    return origin, files


async def test_a_host_allowing_3_connections_gets_few_429s(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    """100 files, a host that answers 429 past 3 connections, default settings.

    With a fixed 8 per host (``adapt=False``) most first requests are refused.
    """
    origin, files = await _limited_origin(aiohttp_server, 100)
    async with Downloader(tmp_path, jobs=8, per_host=8, retry_wait=0.05) as dl:
        report = await dl.download([Entry(origin.url(n), n) for n in files])
        hosts = dl.hosts()
    assert report.ok, [r.error for r in report.failed]
    for name, data in files.items():
        assert file_sha256(tmp_path / name) == sha256(data)
    requests = len(origin.log)
    assert origin.refused <= 0.08 * requests, (origin.refused, requests)
    assert origin.max_in_flight <= 8
    (host,) = hosts.values()
    assert host["connections"] <= 4
    assert host["throttled"] == origin.refused
    assert host["requests"] == requests


async def test_without_adapting_the_same_host_refuses_many(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    origin, files = await _limited_origin(aiohttp_server, 40)
    async with Downloader(
        tmp_path, jobs=8, retries=20, retry_wait=0.05, adapt=False
    ) as dl:
        report = await dl.download([Entry(origin.url(n), n) for n in files])
        (host,) = dl.hosts().values()
    assert report.ok, [r.error for r in report.failed]
    assert origin.refused > 0.2 * len(origin.log)  # the fixed behaviour, kept
    assert host["connections"] == 8
    assert host["throttled"] == origin.refused  # counted all the same


async def test_the_report_names_each_host_and_what_it_took(
    aiohttp_server: Any, tmp_path: Path
) -> None:
    origin, files = await _limited_origin(aiohttp_server, 12)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"url": origin.url(n), "path": n}) + "\n" for n in files)
    )
    report = tmp_path / "r.json"
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", tmp_path / "d", "--report", report, "-q"
    )
    assert code == 0, err
    written = json.loads(report.read_text())
    assert written["files_in_flight"] == 8  # 12 files: too few to grow past 8
    hosts = written["hosts"]
    (name,) = hosts
    assert name.startswith("127.0.0.1:")
    assert set(hosts[name]) == {"connections", "rate", "throttled", "requests"}
    assert hosts[name]["requests"] == len(origin.log)


async def test_a_connection_cut_short_counts_as_a_push_back(
    origin: FileServer, tmp_path: Path
) -> None:
    """A reset (the body cut short) halves the host's connections; the file
    is still whole after the retry."""
    origin.faults["blob.bin"] = Faults(drop_after=1000, drop_times=1)
    async with Downloader(tmp_path, retry_wait=0.01) as dl:
        report = await dl.download([Entry(origin.url("blob.bin"))])
        (host,) = dl.hosts().values()
    assert report.ok, [r.error for r in report.failed]
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])
    assert host["throttled"] == 1
    assert host["rate"] is None  # a reset says nothing of the request rate


async def test_a_403_with_retry_after_is_retried_and_pauses_the_host(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["small.bin"] = Faults(fail_status=403, fail_times=1, retry_after="1")
    async with Downloader(tmp_path, retry_wait=0.01) as dl:
        report = await dl.download([Entry(origin.url("small.bin"))])
    assert report.ok, [r.error for r in report.failed]
    assert file_sha256(tmp_path / "small.bin") == sha256(origin.files["small.bin"])
    (first, second) = origin.requests_for("small.bin")
    assert (first.status, second.status) == (403, 200)
    assert second.at - first.at >= 0.9  # the host was asked to wait a second


async def test_a_burst_of_403s_from_a_host_that_was_answering_slows_it_down(
    origin: FileServer, tmp_path: Path
) -> None:
    names = [f"p{i}.bin" for i in range(8)]
    for name in names:
        origin.set_file(name, make_bytes(2000, seed=name))
        origin.faults[name] = Faults(fail_status=403, fail_times=1)
    async with Downloader(tmp_path, jobs=1) as dl:  # one at a time: in order
        report = await dl.download(
            [Entry(origin.url("small.bin"))] + [Entry(origin.url(n)) for n in names]
        )
        (host,) = dl.hosts().values()
    assert file_sha256(tmp_path / "small.bin") == sha256(origin.files["small.bin"])
    assert len(report.failed) == len(names)  # a 403 alone is no reason to retry
    assert host["throttled"] == len(names) - FORBIDDEN_BURST + 1
    assert host["connections"] < Settings().per_host
