"""Files in flight: the rule (``next_limit``), the round keeping (``FlightLimit``),
and a run over slow hosts that grows past 8 files at once."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import pytest

from downloader import Downloader, Entry
from downloader._policy import FlightLimit, Round, next_limit
from downloader._policy.flight import GAIN, HOLD
from downloader._settings import Settings
from downloader.testing import FileServer, make_bytes

from .conftest import file_sha256

BUSY = Round(files_per_s=100.0, full=True, queued=0.0, cpu=0.2)


@pytest.mark.parametrize(
    ("limit", "seen", "before", "expected"),
    [
        # every slot busy, nothing queued, CPU to spare: double
        (8, BUSY, None, (16, True)),
        (128, BUSY, None, (256, True)),
        (200, BUSY, None, (256, True)),  # never past the ceiling
        (256, BUSY, None, (256, True)),
        # a slot idle at some finish: the manifest, not the latency, holds it back
        (8, Round(100.0, full=False, queued=0.0, cpu=0.2), None, (8, True)),
        # files wait for connections (per-host or total): more would only wait
        (8, Round(100.0, full=True, queued=0.5, cpu=0.2), None, (8, True)),
        # the CPU is the limit: more files only cost more of it
        (8, Round(100.0, full=True, queued=0.0, cpu=0.95), None, (8, True)),
        # the growth paid (files/s up by GAIN or more): keep it, and grow again
        (16, Round(100.0 * GAIN, True, 0.0, 0.2), (8, 100.0), (32, True)),
        # it paid, but now the CPU is busy: keep it, grow no more
        (16, Round(180.0, True, 0.0, 0.9), (8, 100.0), (16, True)),
        # half the files in flight wait for a connection: halve them...
        (64, Round(500.0, True, 0.5, 0.2), None, (32, True)),
        (8, Round(100.0, True, 0.9, 0.2), None, (8, True)),  # ...never below 8
        # it did not pay: back to where it was
        (16, Round(105.0, True, 0.0, 0.2), (8, 100.0), (8, False)),
        (16, Round(60.0, True, 0.0, 0.2), (8, 100.0), (8, False)),
    ],
)
def test_next_limit(
    limit: int,
    seen: Round,
    before: tuple[int, float] | None,
    expected: tuple[int, bool],
) -> None:
    assert next_limit(limit, (8, 256), seen, before) == expected


def _rounds(
    flight: FlightLimit, t: float, rates: list[float], *, cpu_share: float = 0.1
) -> tuple[float, list[int]]:
    """Feed files finishing at each rate (files/s at the limit then, all slots
    busy) until a round ends; the limits after each round."""
    limits = []
    for rate in rates:
        rounds = flight.rounds
        while flight.rounds == rounds:
            t += 1 / rate
            if flight.on_done(t, flight.limit, 0):
                flight.end_round(t, t * cpu_share)
        limits.append(flight.limit)
    return t, limits


def test_grows_while_files_per_s_rises_and_settles_where_it_stops() -> None:
    flight = FlightLimit(8, 256, now=0.0, cpu=0.0)
    # latency-bound until 64: files/s doubles with the files in flight, then flat
    curve = {8: 160.0, 16: 320.0, 32: 640.0, 64: 1280.0, 128: 1300.0}
    t = 0.0
    limits = []
    for _ in range(6):
        t, seen = _rounds(flight, t, [curve[flight.limit]])
        limits += seen
    assert limits == [16, 32, 64, 128, 64, 64]  # 128 did not pay: undone, held


def test_a_growth_that_did_not_pay_waits_longer_each_time() -> None:
    flight = FlightLimit(8, 256, now=0.0, cpu=0.0)
    curve = {8: 160.0, 16: 165.0}  # 16 in flight gains nothing
    t, limits = _rounds(flight, 0.0, [curve[8], curve[16]])
    assert limits == [16, 8]
    # HOLD rounds at 8, then one more try at 16, undone again
    t, limits = _rounds(flight, t, [curve[8]] * HOLD)
    assert limits == [8] * HOLD
    t, limits = _rounds(flight, t, [curve[8], curve[16]])
    assert limits == [16, 8]
    t, limits = _rounds(flight, t, [curve[8]] * (2 * HOLD))  # now twice as long
    assert limits == [8] * (2 * HOLD)
    _, limits = _rounds(flight, t, [curve[8]])
    assert limits == [16]


def test_no_growth_while_the_cpu_is_busy() -> None:
    flight = FlightLimit(8, 256, now=0.0, cpu=0.0)
    _, limits = _rounds(flight, 0.0, [160.0] * 4, cpu_share=0.9)
    assert limits == [8] * 4


def test_a_round_needs_enough_files_and_time() -> None:
    flight = FlightLimit(8, 256, now=0.0, cpu=0.0)
    for i in range(15):  # 15 files over a second: not yet a round
        assert not flight.on_done(i / 15, 8, 0)
    assert flight.on_done(1.0, 8, 0)  # the 16th
    flight.end_round(1.0, 0.0)
    assert flight.limit == 16
    for i in range(100):  # many files, but within a blink
        assert not flight.on_done(1.0 + i * 1e-4, 16, 0)


@pytest.mark.parametrize(
    ("settings", "flight"),
    [
        (Settings(), (8, 256)),
        (Settings(jobs=64), (8, 64)),
        (Settings(jobs=4), (4, 4)),
        (Settings(adapt=False), (8, 8)),  # as before adapting
        (Settings(jobs=32, adapt=False), (32, 32)),
    ],
)
def test_where_files_in_flight_start_and_stop(
    settings: Settings, flight: tuple[int, int]
) -> None:
    assert settings.flight() == flight


LATENCY = 0.05
HOSTS = 8
FILES = 480


@pytest.fixture
async def slow_hosts() -> list[FileServer]:
    """``HOSTS`` servers on 127.0.0.2... (one host each), every answer 50 ms late."""
    servers = []
    async with contextlib.AsyncExitStack() as stack:
        for i in range(HOSTS):
            server = FileServer(latency=LATENCY)
            await server.start(host=f"127.0.0.{i + 2}")
            stack.push_async_callback(server.stop)
            servers.append(server)
        yield servers


def _spread(servers: list[FileServer]) -> tuple[list[Entry], dict[str, str]]:
    entries, digests = [], {}
    for i in range(FILES):
        server = servers[i % len(servers)]
        name = f"f{i}.bin"
        data = make_bytes(1024, seed=name)
        server.set_file(name, data)
        entries.append(Entry(server.url(name), path=name))
        digests[name] = hashlib.sha256(data).hexdigest()
    return entries, digests


async def test_files_in_flight_grow_over_many_slow_hosts(
    slow_hosts: list[FileServer], tmp_path: Path
) -> None:
    entries, digests = _spread(slow_hosts)
    async with Downloader(tmp_path) as dl:
        report = await dl.download(entries)
        grown = dl.files_in_flight()
    assert report.ok
    for name, digest in digests.items():
        assert file_sha256(tmp_path / name) == digest
    # 8 at a time is 160 files/s at 50 ms; the run found more paid
    assert grown > 8
    assert max(s.max_in_flight for s in slow_hosts) <= Settings().per_host


async def test_without_adapting_files_in_flight_stay_fixed(
    slow_hosts: list[FileServer], tmp_path: Path
) -> None:
    entries, digests = _spread(slow_hosts[:2])
    async with Downloader(tmp_path, adapt=False) as dl:
        report = await dl.download(entries[:80])
        assert dl.files_in_flight() == 8
    assert report.ok
    for entry in entries[:80]:
        assert file_sha256(tmp_path / entry.path) == digests[entry.path]
