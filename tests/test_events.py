"""Events for programs: the decisions' tables, then real runs over HTTP on 127.0.0.1.

Every run checks the bytes on disk by sha256 and the order of each file's
events (queued first, one ending event last, matching its result).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import downloader
from downloader import Downloader, Entry, NullProgress, Result
from downloader._events import (
    EVENT_FIELDS,
    EventSink,
    FanOut,
    JsonLines,
    _hooks,
    fan_out,
    finished_event,
    iso_time,
    result_event,
    started_event,
)
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import REPORT_FIELDS, file_sha256, sha256
from .test_cli import finish, jsonl, run_cli, start_cli

HEAD = {"event", "time", "url", "path"}
# A result may add these to the report's fields (and so to its ending event):
# the validators and sha256 of a locked file, a failure's entry for a retry.
RESULT_EXTRAS = {"sha256", "etag", "last_modified", "entry"}
ENDINGS = {"done", "failed", "skipped", "unchanged"}


# -- the decisions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "event"),
    [
        pytest.param("downloaded", "done", id="downloaded-is-done"),
        pytest.param("failed", "failed", id="failed"),
        pytest.param("skipped", "skipped", id="skipped"),
        pytest.param("unchanged", "unchanged", id="a-later-status-is-its-own-event"),
    ],
)
def test_finished_event(status: str, event: str) -> None:
    assert finished_event(status) == event


@pytest.mark.parametrize(
    ("offset", "event"),
    [
        pytest.param(0, "started", id="from-zero"),
        pytest.param(1, "resumed", id="one-byte-kept"),
        pytest.param(10**12, "resumed", id="a-terabyte-kept"),
    ],
)
def test_started_event(offset: int, event: str) -> None:
    assert started_event(offset) == event


@pytest.mark.parametrize(
    ("epoch", "text"),
    [
        pytest.param(0.0, "1970-01-01T00:00:00.000Z", id="epoch"),
        pytest.param(1767225600.5, "2026-01-01T00:00:00.500Z", id="half-second"),
        pytest.param(1767225600.0004, "2026-01-01T00:00:00.000Z", id="sub-ms-cut"),
    ],
)
def test_iso_time(epoch: float, text: str) -> None:
    assert iso_time(epoch) == text


@pytest.mark.parametrize(
    "res",
    [
        Result(Entry("http://h.test/a"), "downloaded", bytes=5, size=5, attempts=2),
        Result(Entry("http://h.test/b"), "failed", attempts=3, error="server said no"),
        Result(Entry("http://h.test/c", size=7), "skipped", size=7),
    ],
    ids=["downloaded", "failed", "skipped"],
)
def test_an_ending_event_is_the_report_line(res: Result) -> None:
    """One function builds both: the report's fields plus event and time."""
    event = result_event(res, 0.0)
    assert event == {
        "event": finished_event(res.status),
        "time": "1970-01-01T00:00:00.000Z",
        **res.to_dict(),
    }
    assert REPORT_FIELDS | {"event", "time"} <= set(event)
    assert set(event) <= REPORT_FIELDS | RESULT_EXTRAS | {"event", "time"}


class Recording(NullProgress):
    """Keeps what it is told, hook by hook."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        self.calls.append(("started", key, done))

    def file_advanced(self, key: int, n: int) -> None:
        self.calls.append(("advanced", key, n))

    def file_retrying(
        self, key: int, attempts: int, reason: str, delay: float, tried: str
    ) -> None:
        self.calls.append(("retrying", key, attempts))


class Bare:
    """A sink from before the optional hooks: only the five required methods."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def run_started(self, files: int, total_bytes: int | None) -> None:
        self.calls.append("run")

    def file_started(self, key: int, name: str, total: int | None, done: int) -> None:
        self.calls.append("started")

    def file_advanced(self, key: int, n: int) -> None:
        self.calls.append("advanced")

    def file_finished(self, key: int, result: Result) -> None:
        self.calls.append("finished")

    def close(self) -> None:
        self.calls.append("close")


def test_fan_out_tells_every_sink_what_it_can_hear() -> None:
    one, two, bare = Recording(), Recording(), Bare()
    sink = FanOut(one, two, bare)
    sink.run_started(1, None)
    sink.file_started(3, "a", 10, 0)
    sink.file_advanced(3, 4)
    sink.file_retrying(3, 1, "no", 0.5, "http://h.test/a")  # Bare has no such hook
    sink.file_finished(3, Result(Entry("http://h.test/a"), "failed"))
    sink.close()
    want = [("started", 3, 0), ("advanced", 3, 4), ("retrying", 3, 1)]
    assert one.calls == two.calls == want
    assert bare.calls == ["run", "started", "advanced", "finished", "close"]


def test_fan_out_skips_empty_chunk_hooks_and_single_sinks() -> None:
    quiet, bars = NullProgress(), Recording()
    sink = FanOut(quiet, bars)
    assert sink._advanced == [bars.file_advanced]  # per chunk: no empty calls
    assert _hooks((quiet, bars, Bare()), "file_retrying") == [bars.file_retrying]
    assert _hooks((quiet, Bare()), "file_queued") == []
    inner = FanOut(bars, Recording())  # its hooks are attributes, not methods
    assert _hooks((inner,), "file_retrying") == [inner.file_retrying]
    assert fan_out(None, bars) is bars
    assert isinstance(fan_out(None, None), NullProgress)


def test_the_sink_names_a_file_it_never_saw_queued() -> None:
    """A sink used on its own (no queued call) still says which path."""
    got: list[dict[str, Any]] = []
    sink = EventSink(got.append, clock=lambda: 0.0)
    sink.file_started(1, "x.bin", 5, 2)
    assert got == [
        {
            "event": "resumed",
            "time": "1970-01-01T00:00:00.000Z",
            "url": None,
            "path": "x.bin",
            "size": 5,
            "offset": 2,
        }
    ]


def test_a_stream_whose_reader_left_gets_no_more_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A real pipe with its read end closed: one warning, then silence, no raise."""
    read, write = os.pipe()
    os.close(read)
    stream = os.fdopen(write, "w")
    emit = JsonLines(stream, "-")
    emit({"event": "queued"})
    emit({"event": "done"})
    assert isinstance(emit.broken, BrokenPipeError)
    with contextlib.suppress(BrokenPipeError):  # what is left in its buffer
        stream.close()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["--events -: Broken pipe; no more events this run"]


def test_json_lines_are_flushed_one_by_one() -> None:
    buffer = io.StringIO()
    emit = JsonLines(buffer)
    emit({"event": "queued", "path": "caf\u00e9/\udcff"})  # a lone surrogate too
    line = buffer.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert json.loads(line)["path"] == "caf\u00e9/\udcff"


class CountingStream(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_one_turn_of_the_loop_is_flushed_once_at_the_next() -> None:
    """A burst of events costs one flush, made before the loop waits for I/O."""
    import asyncio

    stream = CountingStream()
    emit = JsonLines(stream)
    for n in range(3):
        emit({"event": "queued", "n": n})
    assert stream.flushes == 0
    await asyncio.sleep(0)  # the next turn
    assert stream.flushes == 1
    emit({"event": "done"})
    await asyncio.sleep(0)
    assert stream.flushes == 2
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == [
        "queued",
        "queued",
        "queued",
        "done",
    ]


def test_outside_an_event_loop_each_event_is_flushed_at_once() -> None:
    stream = CountingStream()
    emit = JsonLines(stream)
    emit({"event": "queued"})
    emit({"event": "done"})
    assert stream.flushes == 2


# -- real runs ---------------------------------------------------------------


def by_path(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    files: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        files[event["path"]].append(event)
    return files


def check_shapes(events: list[dict[str, Any]]) -> None:
    """Every event has the head fields and its kind's; each file ends once, last."""
    for event in events:
        kind = event["event"]
        if kind in ENDINGS:
            assert set(event) >= HEAD | REPORT_FIELDS, event
            assert set(event) <= HEAD | REPORT_FIELDS | RESULT_EXTRAS, event
        else:
            assert set(event) == HEAD | set(EVENT_FIELDS[kind]), event
        assert event["time"].endswith("Z")
    for path, seq in by_path(events).items():
        assert seq[0]["event"] == "queued", (path, seq)
        assert [e["event"] in ENDINGS for e in seq].count(True) == 1, (path, seq)
        assert seq[-1]["event"] in ENDINGS, (path, seq)


def kinds(seq: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in seq]


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "ok.bin": make_bytes(200_000, "ok"),
        "flaky.bin": make_bytes(50_000, "flaky"),
        "drop.bin": make_bytes(3_000_000, "drop"),
        "have.bin": make_bytes(20_000, "have"),
    }


@pytest.fixture
def faulty(origin: FileServer, files: dict[str, bytes]) -> FileServer:
    """ok.bin; flaky.bin answers 503 once; drop.bin drops after 1 MB once;
    have.bin is meant to be on disk already; missing.bin is a 404."""
    for name, data in files.items():
        origin.set_file(name, data)
    origin.faults["flaky.bin"] = Faults(fail_status=503, fail_times=1)
    origin.faults["drop.bin"] = Faults(drop_after=1_000_000, drop_times=1)
    return origin


def faulty_entries(origin: FileServer, files: dict[str, bytes]) -> list[Entry]:
    names = [*files, "missing.bin"]
    return [
        Entry(origin.url(n), size=len(files["have.bin"]) if n == "have.bin" else None)
        for n in names
    ]


def check_faulty_run(
    events: list[dict[str, Any]], dest: Path, files: dict[str, bytes]
) -> None:
    check_shapes(events)
    seq = by_path(events)
    assert kinds(seq["ok.bin"]) == ["queued", "started", "done"]
    assert kinds(seq["flaky.bin"]) == [
        "queued",
        "throttled",
        "retry",
        "started",
        "done",
    ]
    # a body cut short is a push-back too: the host may take fewer connections
    assert kinds(seq["drop.bin"]) == [
        "queued",
        "started",
        "throttled",
        "retry",
        "resumed",
        "done",
    ]
    assert kinds(seq["have.bin"]) == ["queued", "skipped"]
    assert kinds(seq["missing.bin"]) == ["queued", "failed"]
    throttled, retry = seq["flaky.bin"][1:3]
    assert throttled["status"] == 503
    assert throttled["kind"] == "rate"
    assert throttled["reason"] == retry["reason"] == "server answered 503"
    assert retry["attempts"] == 1
    assert retry["delay"] >= 0
    assert seq["flaky.bin"][-1]["attempts"] == 2
    cut, retry, resumed = seq["drop.bin"][2:5]
    assert (cut["kind"], cut["status"], cut["retry_after"]) == (
        "connections",
        None,
        None,
    )
    assert resumed["offset"] == 1_000_000
    assert resumed["size"] == len(files["drop.bin"])
    assert "cut short" in retry["reason"]
    assert cut["reason"] == retry["reason"]
    assert seq["missing.bin"][-1]["error"] == "server answered 404"
    for name, data in files.items():
        assert file_sha256(dest / name) == sha256(data), name
    assert not (dest / "missing.bin").exists()


async def test_library_events_for_a_retry_a_resume_a_skip_and_a_failure(
    faulty: FileServer, files: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "have.bin").write_bytes(files["have.bin"])
    events: list[dict[str, Any]] = []
    results: dict[str, Result] = {}
    entries = faulty_entries(faulty, files)
    async with Downloader(
        tmp_path, retries=2, retry_wait=0.01, split=1, on_event=events.append
    ) as dl:
        async for result in dl.stream(entries):
            results[result.path] = result
    check_faulty_run(events, tmp_path, files)
    for path, seq in by_path(events).items():  # the stream's results, field by field
        assert seq[-1] == result_event(results[path], 0) | {"time": seq[-1]["time"]}


async def test_get_events_file(
    faulty: FileServer, files: dict[str, bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "have.bin").write_bytes(files["have.bin"])
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": e.url, "size": e.size} for e in faulty_entries(faulty, files)],
    )
    log = tmp_path / "events.jsonl"
    code, out, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--split", "1", "--events", log
    )
    assert code == 1, err
    assert out == ""
    events = [json.loads(line) for line in log.read_text().splitlines()]
    check_faulty_run(events, dest, files)


async def test_get_events_to_stdout_keeps_stdout_json_only(
    faulty: FileServer, files: dict[str, bytes], tmp_path: Path
) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "have.bin").write_bytes(files["have.bin"])
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": e.url, "size": e.size} for e in faulty_entries(faulty, files)],
    )
    report = tmp_path / "report.json"
    code, out, err = await run_cli(
        "get",
        "-i",
        manifest,
        "-d",
        dest,
        "-s",
        "1",
        "--events",
        "-",
        "--report",
        report,
    )
    assert code == 1, err
    assert out.endswith("\n")
    events = [json.loads(line) for line in out.splitlines()]  # nothing but JSON
    check_faulty_run(events, dest, files)
    assert "FAILED     missing.bin" in err  # the human lines went to stderr
    assert "1 failed" in err
    endings = sorted(
        (
            {k: v for k, v in e.items() if k not in ("event", "time")}
            for e in events
            if e["event"] in ENDINGS
        ),
        key=lambda r: r["path"],
    )
    results = json.loads(report.read_text())["results"]
    assert endings == sorted(results, key=lambda r: r["path"])  # one source


async def test_a_pipeline_can_tail_the_events_while_the_run_goes_on(
    origin: FileServer, tmp_path: Path
) -> None:
    """Each line is in the file as it happens, not when the run ends."""
    import asyncio

    origin.faults["big.bin"] = Faults(rate=1_000_000)  # 3 MB: about 3 s
    log = tmp_path / "events.jsonl"
    proc = await start_cli(
        "get", origin.url("big.bin"), "-d", tmp_path / "d", "-s", "1", "--events", log
    )
    seen: list[str] = []
    for _ in range(200):
        text = log.read_text() if log.exists() else ""
        seen = [json.loads(line)["event"] for line in text.splitlines()]
        if "started" in seen or proc.returncode is not None:
            break
        await asyncio.sleep(0.02)
    running = proc.returncode is None
    code, _, err = await finish(proc)
    assert code == 0, err
    assert running, "the run ended before its started event could be read"
    assert seen == ["queued", "started"]
    assert file_sha256(tmp_path / "d" / "big.bin") == sha256(origin.files["big.bin"])
    ended = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert ended == ["queued", "started", "done"]


async def test_throttled_carries_the_hosts_retry_after(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["small.bin"] = Faults(fail_status=429, fail_times=1, retry_after="1")
    events: list[dict[str, Any]] = []
    async with Downloader(tmp_path, retries=1, on_event=events.append) as dl:
        await dl.download([origin.url("small.bin")])
    check_shapes(events)
    assert kinds(events) == ["queued", "throttled", "retry", "started", "done"]
    host = origin.base_url.removeprefix("http://")
    assert events[1] | {"time": 0} == {
        "event": "throttled",
        "time": 0,
        "url": origin.url("small.bin"),
        "path": "small.bin",
        "host": host,
        "status": 429,
        "kind": "rate",
        "reason": "server answered 429",
        "retry_after": 1.0,
    }
    assert events[2]["delay"] >= 1.0  # the wait honours what the host said
    assert file_sha256(tmp_path / "small.bin") == sha256(origin.files["small.bin"])


async def test_waiting_for_another_process_is_an_event(
    origin: FileServer, tmp_path: Path
) -> None:
    """A part another holder has locked: ``waiting``, then the file as usual."""
    import asyncio

    from downloader._storage import FilePaths, PartLock

    (tmp_path / "blob.bin.part").write_bytes(b"")  # so the run takes the lock first
    events: list[dict[str, Any]] = []
    held = PartLock(FilePaths.of(tmp_path, "blob.bin"))  # flock: another holder
    async with Downloader(tmp_path, on_event=events.append) as dl:
        run = asyncio.create_task(dl.download([origin.url("blob.bin")]))
        for _ in range(200):
            if "waiting" in kinds(events):
                break
            await asyncio.sleep(0.01)
        held.__exit__(None, None, None)  # it lets go
        await run
    check_shapes(events)
    assert kinds(events) == ["queued", "waiting", "started", "done"]
    assert "waiting: another downloader process" in events[1]["reason"]
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_a_stall_is_throttled_without_a_status(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["small.bin"] = Faults(stall_after=1_000, stall_seconds=5)
    events: list[dict[str, Any]] = []
    async with Downloader(
        tmp_path, retries=1, retry_wait=0.01, timeout=0.5, on_event=events.append
    ) as dl:
        await dl.download([origin.url("small.bin")])
    check_shapes(events)
    assert kinds(events) == [
        "queued",
        "started",
        "throttled",
        "retry",
        "resumed",
        "done",
    ]
    assert events[2]["status"] is None
    assert events[2]["kind"] == "connections"
    assert events[2]["retry_after"] is None
    assert events[2]["reason"] == events[3]["reason"]
    assert events[4]["offset"] == 1_000
    assert file_sha256(tmp_path / "small.bin") == sha256(origin.files["small.bin"])


async def test_a_refresh_run_says_unchanged_and_done(
    origin: FileServer, tmp_path: Path
) -> None:
    """A status added after the events (``unchanged``) is its own event, with
    the result's fields; a file changed upstream is fetched again: ``done``."""
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    urls = [origin.url("small.bin"), origin.url("blob.bin")]
    async with Downloader(dest, lock=lock) as dl:
        await dl.download(urls)
    origin.set_file("blob.bin", make_bytes(300_000, "blob, new"))
    events: list[dict[str, Any]] = []
    async with Downloader(dest, lock=lock, refresh=True, on_event=events.append) as dl:
        await dl.download(urls)
    check_shapes(events)
    seq = by_path(events)
    assert kinds(seq["small.bin"]) == ["queued", "unchanged"]
    assert seq["small.bin"][-1]["status"] == "unchanged"
    assert kinds(seq["blob.bin"]) == ["queued", "started", "done"]
    assert seq["blob.bin"][-1]["sha256"] == sha256(origin.files["blob.bin"])
    for name in ("small.bin", "blob.bin"):
        assert file_sha256(dest / name) == sha256(origin.files[name])


async def test_download_passes_on_event_through(
    origin: FileServer, tmp_path: Path
) -> None:
    """The sync front door takes ``on_event`` like ``Downloader`` (in a thread:
    ``download()`` runs its own event loop)."""
    import asyncio

    events: list[dict[str, Any]] = []
    url = origin.url("blob.bin")
    await asyncio.to_thread(
        downloader.download, [url], tmp_path, on_event=events.append
    )
    assert kinds(events) == ["queued", "started", "done"]
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ("--events", "{tmp}/no/such/dir/e.jsonl"),
            "error: --events {tmp}/no/such/dir/e.jsonl: No such file or directory",
            id="unwritable-path",
        ),
        pytest.param(
            ("--events", "{tmp}"),
            "error: --events {tmp}: Is a directory",
            id="a-directory",
        ),
        pytest.param(
            ("--events", "-", "--cluster", "local:1"),
            "error: --events does not work with --cluster yet: use --report",
            id="with-cluster",
        ),
    ],
)
async def test_unusable_events_option_is_exit_2_before_any_request(
    origin: FileServer, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    filled = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, out, err = await run_cli(
        "get", origin.url("small.bin"), "-d", tmp_path / "d", *filled
    )
    assert code == 2
    assert out == ""
    assert err.strip() == message.replace("{tmp}", str(tmp_path))
    assert origin.requests_for("small.bin") == []
