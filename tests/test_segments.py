"""One file over several connections (-s/--split): bytes, limits, faults, resume."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp
import pytest

from downloader import Checksum, Downloader, Entry
from downloader._engine import segments as _segments
from downloader._engine.budget import ConnectionBudget
from downloader._engine.ranges import Segment, contiguous_prefix, split_point
from downloader._engine.segments import SegmentedDownload
from downloader._http.stream import Stream, open_stream
from downloader._policy import Answer, CallerHeaders, ContentRange, check_range_answer
from downloader._storage import (
    FilePaths,
    ResumeState,
    prepare_part,
    save_state,
    segments_cover,
)
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import count_flushes, file_sha256, gets, sha256

MB = 1_000_000


def seg(start: int, pos: int, end: int, *, busy: bool = True) -> Segment:
    return Segment(start, pos, end, pos, busy=busy)


# --- pure decisions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("segments", "min_size", "expected"),
    [
        pytest.param([seg(0, 0, 100)], 10, (0, 50), id="halves-the-only-one"),
        pytest.param([seg(0, 40, 100)], 10, (0, 70), id="halves-what-is-left"),
        pytest.param([seg(0, 0, 50), seg(50, 50, 200)], 10, (1, 125), id="largest"),
        pytest.param([seg(0, 0, 19)], 10, None, id="too-small-to-split"),
        pytest.param([seg(0, 0, 20)], 10, (0, 10), id="exactly-two-minimums"),
        pytest.param([seg(0, 0, 100, busy=False)], 10, None, id="idle-not-split"),
    ],
)
def test_split_point(
    segments: list[Segment], min_size: int, expected: tuple[int, int] | None
) -> None:
    cut = split_point(segments, min_size)
    if expected is None:
        assert cut is None
    else:
        assert cut is not None
        assert (segments.index(cut[0]), cut[1]) == expected


@pytest.mark.parametrize(
    ("triples", "expected"),
    [
        pytest.param([(0, 0, 10)], 0, id="nothing"),
        pytest.param([(0, 4, 10)], 4, id="partial-first"),
        pytest.param([(0, 10, 10), (10, 15, 20)], 15, id="into-second"),
        pytest.param([(10, 20, 20), (0, 10, 10)], 20, id="unordered-all-done"),
        pytest.param([(0, 3, 10), (10, 20, 20)], 3, id="gap-stops-prefix"),
    ],
)
def test_contiguous_prefix(triples: list[tuple[int, int, int]], expected: int) -> None:
    assert contiguous_prefix([Segment(a, b, c, b) for a, b, c in triples]) == expected


@pytest.mark.parametrize(
    ("triples", "size", "ok"),
    [
        ([(0, 5, 10), (10, 10, 20)], 20, True),
        ([(10, 10, 20), (0, 0, 10)], 20, True),
        ([(0, 5, 10), (11, 11, 20)], 20, False),  # gap
        ([(0, 5, 12), (10, 10, 20)], 20, False),  # overlap
        ([(0, 11, 10)], 10, False),  # saved past end
        ([(0, 5, 10)], 20, False),  # does not reach the size
    ],
)
def test_segments_cover(
    triples: list[tuple[int, int, int]], size: int, ok: bool
) -> None:
    assert segments_cover(tuple(triples), size) is ok


def answer(status: int, cr: ContentRange | None, etag: str | None = '"a"') -> Answer:
    return Answer("http://h/f", status, None, cr, etag, None)


@pytest.mark.parametrize(
    ("ans", "ok"),
    [
        pytest.param(answer(206, ContentRange(10, 19, 100)), True, id="exact"),
        pytest.param(answer(200, None), False, id="200-ignored-range"),
        pytest.param(answer(206, None), False, id="no-content-range"),
        pytest.param(answer(206, ContentRange(0, 19, 100)), False, id="wrong-start"),
        pytest.param(answer(206, ContentRange(10, 29, 100)), False, id="wrong-end"),
        pytest.param(answer(206, ContentRange(10, 19, 99)), False, id="wrong-total"),
        pytest.param(answer(206, ContentRange(10, 19, None)), False, id="no-total"),
        pytest.param(
            answer(206, ContentRange(10, 19, 100), '"b"'), False, id="etag-changed"
        ),
    ],
)
def test_check_range_answer(ans: Answer, ok: bool) -> None:
    if ok:
        check_range_answer(ans, 10, 19, 100, '"a"')
    else:
        from downloader import ResumeRejected

        with pytest.raises(ResumeRejected):
            check_range_answer(ans, 10, 19, 100, '"a"')


# --- against a real throttled server -----------------------------------------


@pytest.fixture
def big(origin: FileServer) -> bytes:
    data = make_bytes(6 * MB, "segmented")
    origin.set_file("seg.bin", data)
    origin.faults["seg.bin"] = Faults(rate=2 * MB)  # per connection
    return data


def entry_for(origin: FileServer, data: bytes) -> Entry:
    return Entry(origin.url("seg.bin"), checksum=Checksum("sha256", sha256(data)))


async def test_split_download_is_byte_identical_and_faster_per_connection(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    began = time.monotonic()
    async with Downloader(tmp_path, split=4, min_split_size=MB, per_host=8) as dl:
        report = await dl.download([entry_for(origin, big)])
    elapsed = time.monotonic() - began

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)
    requests = gets(origin, "seg.bin")
    assert "Range" not in requests[0].headers  # a plain GET; Accept-Ranges says yes
    assert requests[0].status == 200
    assert len(requests) >= 4
    assert all(r.status == 206 for r in requests[1:])
    assert all(r.headers.get("If-Range") for r in requests[1:])
    assert origin.max_in_flight == 4
    assert elapsed < 6 * MB / (2 * MB)  # one connection would need 3 s
    assert not list(tmp_path.glob("*.part*"))


async def test_a_split_download_flushes_to_disk_as_it_goes(
    origin: FileServer, big: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed = count_flushes(monkeypatch, 512 * 1024)
    async with Downloader(tmp_path, split=4, min_split_size=MB, per_host=8) as dl:
        report = await dl.download([entry_for(origin, big)])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)
    assert len(flushed) >= 2  # along the way, beside the checkpoints


async def test_a_fast_connection_is_not_split(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # More connections only add CPU work when one is not throttled. The test
    # server shares this event loop, so "fast" is scaled down to its speed.
    monkeypatch.setattr(_segments, "FAST_ENOUGH", 4 * MB)
    data = make_bytes(8 * MB, "fast")
    origin.set_file("fast.bin", data)
    async with Downloader(tmp_path, split=4, min_split_size=MB, per_host=8) as dl:
        report = await dl.download([origin.url("fast.bin")])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "fast.bin") == sha256(data)
    assert len(gets(origin, "fast.bin")) == 1
    assert origin.max_in_flight == 1


async def test_a_connection_that_slows_down_is_split_then(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_segments, "FAST_ENOUGH", 4 * MB)
    data = make_bytes(8 * MB, "slows")
    origin.set_file("slows.bin", data)
    # Fast for 2 MB (so not split at first), then nothing for a while.
    origin.faults["slows.bin"] = Faults(stall_after=2 * MB, stall_seconds=1.5)
    async with Downloader(tmp_path, split=4, min_split_size=MB, per_host=8) as dl:
        report = await dl.download([origin.url("slows.bin")])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "slows.bin") == sha256(data)
    requests = gets(origin, "slows.bin")
    assert len(requests) >= 2  # the next checkpoint tick split the stalled one
    assert all(r.status == 206 for r in requests[1:])
    assert all(r.headers.get("If-Range") for r in requests[1:])


async def test_per_host_is_never_exceeded(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    other = make_bytes(3 * MB, "other")
    origin.set_file("other.bin", other)
    origin.faults["other.bin"] = Faults(rate=2 * MB)
    entries = [entry_for(origin, big), Entry(origin.url("other.bin"))]
    async with Downloader(
        tmp_path, jobs=2, split=8, min_split_size=MB // 2, per_host=3
    ) as dl:
        report = await dl.download(entries)

    assert report.ok, [r.error for r in report.results]
    assert origin.max_in_flight <= 3
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)
    assert file_sha256(tmp_path / "other.bin") == sha256(other)


async def test_segments_yield_slots_to_a_waiting_file(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    small = make_bytes(400_000, "later")
    origin.set_file("later.bin", small)

    async with Downloader(
        tmp_path, jobs=2, split=2, min_split_size=MB, per_host=2
    ) as dl:
        big_done = asyncio.ensure_future(dl.download([entry_for(origin, big)]))
        # A second file through the SAME downloader must not wait for the big one.
        await asyncio.sleep(0.5)
        began = time.monotonic()
        async for result in dl.stream([origin.url("later.bin")]):
            assert result.status == "downloaded"
        waited = time.monotonic() - began
        report = await big_done

    assert report.ok
    assert waited < 1.5  # the whole big file takes ~1.5 s more on 2 connections
    assert file_sha256(tmp_path / "later.bin") == sha256(small)
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)


async def test_work_stealing_splits_the_slow_tail(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    # The first connection stalls for a while; the other finishes its half and
    # then takes over half of what the stalled one has left.
    origin.faults["seg.bin"] = Faults(
        rate=4 * MB, stall_after=200_000, stall_seconds=1.5, stall_times=1
    )
    async with Downloader(tmp_path, split=2, min_split_size=MB // 4, timeout=10) as dl:
        report = await dl.download([entry_for(origin, big)])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert len(gets(origin, "seg.bin")) >= 3
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)


async def test_range_ignored_midway_never_written_at_wrong_offset(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    origin.faults["seg.bin"] = Faults(
        rate=4 * MB, ignore_range=True, range_faults_after=1
    )
    async with Downloader(tmp_path, split=4, min_split_size=MB, retries=2) as dl:
        report = await dl.download([entry_for(origin, big)])

    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)
    # A later range request got 200: the file restarted and fell back to one
    # stream, so the last request is a plain GET that delivered the whole file.
    requests = gets(origin, "seg.bin")
    assert any(r.status == 200 and "Range" in r.headers for r in requests)
    assert "Range" not in requests[-1].headers
    assert requests[-1].sent == len(big)


async def test_wrong_content_range_never_written(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    origin.faults["seg.bin"] = Faults(
        rate=4 * MB, wrong_range_start=0, range_faults_after=1
    )
    async with Downloader(tmp_path, split=4, min_split_size=MB, retries=1) as dl:
        report = await dl.download([entry_for(origin, big)])

    result = report.results[0]
    final = tmp_path / "seg.bin"
    if result.status == "downloaded":
        assert file_sha256(final) == sha256(big)
    else:
        assert not final.exists()
        assert "asked for bytes" in (result.error or "")


async def test_a_segment_past_the_end_restarts_on_one_stream(
    origin: FileServer, tmp_path: Path
) -> None:
    """Segments planned from a size the file does not have get 416: restart.

    As a run that believed a lying Content-Length of 5 MB leaves things: the
    first 3 MB (the real file) on disk, the rest to fetch. A 416 there is a
    restart from zero on one stream, not a "server answered 416" failure.
    """
    data = origin.files["big.bin"]
    paths = FilePaths.under(tmp_path, "big.bin")
    with paths.part.open("wb") as part:
        part.write(data)
        part.truncate(5 * MB)
    triples = ((0, 3 * MB, 3 * MB), (3 * MB, 3 * MB, 5 * MB))
    etag = origin._state["big.bin"].etag
    save_state(paths.state, ResumeState(origin.url("big.bin"), etag, 5 * MB, triples))
    async with Downloader(tmp_path, split=1, retries=1, retry_wait=0.01) as dl:
        report = await dl.download([origin.url("big.bin")])

    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / "big.bin") == sha256(data)
    assert [(r.status, r.headers.get("Range")) for r in gets(origin, "big.bin")] == [
        (416, "bytes=3000000-4999999"),
        (200, None),
    ]


async def test_drop_in_a_segment_resumes_every_segment(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    origin.faults["seg.bin"] = Faults(rate=2 * MB, drop_after=300_000, drop_times=2)
    async with Downloader(tmp_path, split=4, min_split_size=MB, retries=1) as dl:
        report = await dl.download([entry_for(origin, big)])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "seg.bin") == sha256(big)
    assert origin.bytes_sent("seg.bin") < 1.3 * len(big)


# --- kill -9 and rerun (real CLI process) -------------------------------------


async def run_cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downloader",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    return proc.returncode or 0, err.decode()


async def saved_bytes(state: Path, at_least: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            raw = json.loads(state.read_text())
            got: int = sum(s - a for a, s, _ in raw.get("segments") or [])
            if got >= at_least:
                return got
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.05)
    msg = f"{state} never showed {at_least} saved bytes"
    raise AssertionError(msg)


async def kill_mid_segmented(origin: FileServer, dest: Path, manifest: Path) -> None:
    origin.faults["seg.bin"].rate = MB // 2  # 4 connections: about 3 s in all
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downloader",
        "get",
        "-i",
        str(manifest),
        "-d",
        str(dest),
        "-s",
        "4",
        "--min-split-size",
        "1M",
        "-q",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await saved_bytes(dest / "seg.bin.part.state", MB)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert not (dest / "seg.bin").exists()


async def test_kill_9_then_rerun_reuses_segments(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps(
            {"url": origin.url("seg.bin"), "path": "seg.bin", "sha256": sha256(big)}
        )
        + "\n"
    )
    dest = tmp_path / "d"
    await kill_mid_segmented(origin, dest, manifest)
    origin.faults["seg.bin"].rate = 8 * MB
    code, err = await run_cli(
        "get", "-i", str(manifest), "-d", str(dest), "-s", "4", "--min-split-size", "1M"
    )

    assert code == 0, err
    assert file_sha256(dest / "seg.bin") == sha256(big)
    assert origin.bytes_sent("seg.bin") < 1.3 * len(big)
    assert not list(dest.glob("*.part*"))


async def test_changed_file_between_runs_restarts(
    origin: FileServer, big: bytes, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"url": origin.url("seg.bin"), "path": "seg.bin"}) + "\n"
    )
    dest = tmp_path / "d"
    await kill_mid_segmented(origin, dest, manifest)
    new = make_bytes(6 * MB, "new version")
    origin.set_file("seg.bin", new)
    origin.faults["seg.bin"].rate = 8 * MB
    code, err = await run_cli(
        "get", "-i", str(manifest), "-d", str(dest), "-s", "4", "--min-split-size", "1M"
    )

    assert code == 0, err
    assert file_sha256(dest / "seg.bin") == sha256(new)  # never a splice of both


async def test_two_processes_on_one_destination_never_interleave(
    origin: FileServer, tmp_path: Path
) -> None:
    files = {f"p{i}.bin": make_bytes(1_500_000, f"two-{i}") for i in range(3)}
    for name, data in files.items():
        origin.set_file(name, data)
        origin.faults[name] = Faults(rate=MB)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"url": origin.url(n), "path": n, "sha256": sha256(d)}) + "\n"
            for n, d in files.items()
        )
    )
    dest = tmp_path / "d"
    args = ("get", "-i", str(manifest), "-d", str(dest), "-s", "1", "--retries", "0")
    (code_a, err_a), (code_b, err_b) = await asyncio.gather(
        run_cli(*args), run_cli(*args)
    )

    # Whoever got a file's lock downloaded it; the other said so clearly.
    assert {code_a, code_b} <= {0, 1}, (err_a, err_b)
    combined = err_a + err_b
    assert "Traceback" not in combined
    if 1 in (code_a, code_b):
        assert "another downloader process is working on" in combined
    for name, data in files.items():
        assert file_sha256(dest / name) == sha256(data)
    assert not list(dest.glob("*.part*"))
    code, err = await run_cli(*args)  # a rerun finds everything complete
    assert code == 0, err
    assert "3 skipped" in err


async def test_a_range_handed_back_is_finished_after_the_first_connection_left(
    origin: FileServer, tmp_path: Path
) -> None:
    """An extra connection yields its slot to a waiting file and hands its range
    back: someone must still finish it, even when the first connection has
    already left (nothing was left to split when it finished its own part)."""
    size = 4 * MB
    data = make_bytes(size, "handed back")
    origin.set_file("back.bin", data)
    # The first connection is faster, so it finishes first and finds the
    # extra's remaining range too small to split.
    origin.faults["back.bin"] = Faults(rate=2 * MB, range_rate=MB // 2)
    url = origin.url("back.bin")
    paths = FilePaths.of(tmp_path, "back.bin")
    prepare_part(paths, 0)
    budget = ConnectionBudget(per_host=2, total=8)
    segments = [Segment(0, 0, size, 0)]
    caller = CallerHeaders(url)

    def open_range(start: int, end: int) -> AbstractAsyncContextManager[Stream]:
        ranged = {"Range": f"bytes={start}-{end}"}
        return open_stream(session, url, caller, ranged)

    async def on_chunk(n: int) -> None:
        pass

    async def another_file_waits() -> None:
        while not (segments[0].pos >= segments[0].end and not segments[0].busy):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        async with budget.slot(url):  # queues: both slots are held
            await asyncio.sleep(0.1)

    async with aiohttp.ClientSession() as session:
        waiter = asyncio.create_task(another_file_waits())
        async with budget.slot(url), session.get(url) as response:
            download = SegmentedDownload(
                paths,
                segments,
                url=url,
                size=size,
                validator=None,
                split=2,
                min_size=MB,
                budget=budget,
                open_range=open_range,
                on_chunk=on_chunk,
                checksum=Checksum("sha256", sha256(data)),
            )
            digest = await asyncio.wait_for(download.run(Stream(response)), 30)
        await asyncio.wait_for(waiter, 30)

    assert len(segments) >= 2, "the case must really split"
    assert all(s.pos == s.end for s in segments), segments
    assert file_sha256(paths.part) == sha256(data)
    assert digest == sha256(data)
