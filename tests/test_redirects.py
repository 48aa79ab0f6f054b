"""Redirects on every request of a file: credentials, segments, expired targets."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from downloader import Checksum, Downloader, Entry
from downloader._policy import (
    ask_entry_again,
    headers_for,
    merge_headers,
    netrc_may_go,
    origin_of,
)
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256

MB = 1_000_000
SECRET = {"Authorization": "Bearer secret"}


# --- pure decisions -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://a.example/x", ("http", "a.example", 80)),
        ("http://a.example:80/x", ("http", "a.example", 80)),
        ("HTTPS://A.example/x", ("https", "a.example", 443)),
        ("https://a.example:8443/x", ("https", "a.example", 8443)),
        ("http://[::1]:81/x", ("http", "::1", 81)),
        ("http://a.example:bad/x", ("http", "a.example", -1)),
    ],
)
def test_origin_of(url: str, expected: tuple[str, str, int]) -> None:
    assert origin_of(url) == expected


@pytest.mark.parametrize(
    ("url", "origin", "sent"),
    [
        pytest.param("http://a/x", "http://a/y", True, id="same-origin"),
        pytest.param("http://a:80/x", "http://a/y", True, id="default-port-spelled"),
        pytest.param("http://b/x", "http://a/y", False, id="other-host"),
        pytest.param("http://a:81/x", "http://a/y", False, id="other-port"),
        pytest.param("http://a/x", "https://a/y", False, id="https-to-http"),
        pytest.param("https://a/x", "http://a/y", False, id="http-to-https"),
        pytest.param("http://A/x", "http://a/y", True, id="host-case"),
        pytest.param("http://a.evil/x", "http://a/y", False, id="suffix-host"),
    ],
)
def test_headers_for(url: str, origin: str, sent: bool) -> None:
    got = headers_for(url, origin, {"Authorization": "g", "X-A": "1"}, {"X-A": "2"})
    assert got == ({"Authorization": "g", "X-A": "2"} if sent else {})


@pytest.mark.parametrize(
    ("url", "origin", "named", "may"),
    [
        pytest.param("https://a/x", "https://a/y", False, True, id="origin-default"),
        pytest.param("http://a/x", "http://a/y", True, True, id="origin-machine"),
        pytest.param("https://b/x", "https://a/y", True, True, id="redirect-machine"),
        pytest.param("https://b/x", "https://a/y", False, False, id="redir-default"),
        pytest.param("http://a/x", "https://a/y", True, False, id="downgrade"),
        pytest.param("http://b/x", "https://a/y", True, False, id="downgrade-away"),
        pytest.param("https://b/x", "http://a/y", True, True, id="upgrade-machine"),
    ],
)
def test_netrc_may_go(url: str, origin: str, named: bool, may: bool) -> None:
    assert netrc_may_go(url, origin, named=named) is may


@pytest.mark.parametrize(
    ("status", "again"),
    [
        *[(400, True), (401, True), (403, True), (404, True), (410, True)],
        *[(416, False), (429, False), (500, False), (503, False), (302, False)],
    ],
)
def test_ask_entry_again(status: int, again: bool) -> None:
    assert ask_entry_again(status) is again


# --- over real HTTP: two hosts ------------------------------------------------


@pytest.fixture
async def far() -> AsyncIterator[FileServer]:
    """A second host: 127.0.0.2, another origin than the fixture's 127.0.0.1."""
    server = FileServer()
    await server.start(host="127.0.0.2")
    try:
        yield server
    finally:
        await server.stop()


async def test_no_credentials_reach_a_redirect_target_on_split_downloads(
    origin: FileServer, far: FileServer, tmp_path: Path
) -> None:
    data = make_bytes(6 * MB, "split behind a redirect")
    far.set_file("seg.bin", data)
    far.faults["seg.bin"] = Faults(rate=2 * MB)  # per connection: worth splitting
    origin.redirects["away.bin"] = far.url("seg.bin")
    entry = Entry(
        origin.url("away.bin"),
        path="seg.bin",
        headers={"X-Api-Key": "entry-secret"},
        checksum=Checksum("sha256", sha256(data)),
    )
    async with Downloader(tmp_path, split=4, min_split_size=MB, headers=SECRET) as dl:
        report = await dl.download([entry])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "seg.bin") == sha256(data)
    asked = gets(origin, "away.bin")
    assert asked[0].headers["Authorization"] == "Bearer secret"
    assert asked[0].headers["X-Api-Key"] == "entry-secret"
    at_target = gets(far, "seg.bin")
    ranged = [r for r in at_target if "Range" in r.headers]
    assert len(ranged) >= 2, "the case must really split"
    for record in at_target:
        assert "Authorization" not in record.headers, record.headers
        assert "X-Api-Key" not in record.headers, record.headers


async def test_a_one_stream_resume_keeps_its_range_across_a_cross_host_redirect(
    origin: FileServer, far: FileServer, tmp_path: Path
) -> None:
    """Range and If-Range are not caller headers: they follow every hop."""
    data = make_bytes(3 * MB, "resume behind a redirect")
    far.set_file("one.bin", data)
    far.faults["one.bin"] = Faults(drop_after=MB)
    origin.redirects["away.bin"] = far.url("one.bin")
    entry = Entry(origin.url("away.bin"), path="one.bin")
    async with Downloader(tmp_path, split=1, headers=SECRET, retries=1) as dl:
        report = await dl.download([entry])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "one.bin") == sha256(data)
    second = gets(far, "one.bin")[1]
    assert second.headers["Range"] == f"bytes={MB}-"
    assert second.headers["If-Range"]
    assert second.status == 206
    assert "Authorization" not in second.headers
    assert far.bytes_sent("one.bin") == len(data)  # nothing fetched twice


async def _stop_once_segments_saved(dl_task: asyncio.Task[object], state: Path) -> int:
    """Cancel the run (as Ctrl-C does) once its state shows a MB saved."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            raw = json.loads(state.read_text())
            saved = sum(s - a for a, s, _ in raw.get("segments") or [])
            if saved >= MB:
                break
        except (OSError, ValueError):
            pass
        await asyncio.sleep(0.05)
    else:
        pytest.fail(f"{state} never showed a MB saved")
    dl_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dl_task
    raw = json.loads(state.read_text())
    return sum(s - a for a, s, _ in raw["segments"])


async def test_an_expired_redirect_target_is_resolved_again_from_the_entry_url(
    origin: FileServer, far: FileServer, tmp_path: Path
) -> None:
    """Presigned URLs expire: a resume asks the entry URL where the bytes are now."""
    data = make_bytes(6 * MB, "presigned")
    far.set_file("t1.bin", data)
    far.faults["t1.bin"] = Faults(rate=MB // 2)
    origin.redirects["data.bin"] = far.url("t1.bin")
    entry = Entry(
        origin.url("data.bin"),
        path="data.bin",
        checksum=Checksum("sha256", sha256(data)),
    )

    async def run() -> object:
        async with Downloader(tmp_path, split=4, min_split_size=MB, retries=1) as dl:
            return await dl.download([entry])

    held = await _stop_once_segments_saved(
        asyncio.create_task(run()), tmp_path / "data.bin.part.state"
    )
    # T1 expires; the entry URL now sends clients to T2: the same bytes and ETag.
    far.faults["t1.bin"] = Faults(fail_status=403, fail_times=1_000)
    far.set_file("t2.bin", data)
    origin.redirects["data.bin"] = far.url("t2.bin")
    sent_before = far.bytes_sent()
    async with Downloader(tmp_path, split=4, min_split_size=MB, retries=1) as dl:
        report = await dl.download([entry])

    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / "data.bin") == sha256(data)
    assert far.bytes_sent() - sent_before <= len(data) - held  # the bytes were reused
    assert all(r.status == 206 for r in gets(far, "t2.bin"))
    assert not list(tmp_path.glob("*.part*"))


async def test_a_target_that_expires_mid_run_falls_back_to_the_entry_url(
    origin: FileServer, far: FileServer, tmp_path: Path
) -> None:
    """A 403 from a learned target is no verdict on the file: ask the entry again."""
    data = make_bytes(6 * MB, "expires mid-run")
    far.set_file("t1.bin", data)
    far.set_file("t2.bin", data)
    far.faults["t1.bin"] = Faults(rate=2 * MB)
    origin.redirects["data.bin"] = far.url("t1.bin")
    entry = Entry(origin.url("data.bin"), path="data.bin")

    async def expire() -> None:  # once T1 has answered, it answers 403 from now on
        while not gets(far, "t1.bin"):  # noqa: ASYNC110 (the server has no event)
            await asyncio.sleep(0.01)
        far.faults["t1.bin"] = Faults(fail_status=403, fail_times=1_000)
        origin.redirects["data.bin"] = far.url("t2.bin")

    expiring = asyncio.create_task(expire())
    async with Downloader(tmp_path, split=4, min_split_size=MB, retries=0) as dl:
        report = await dl.download([entry])
    await expiring

    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert result.attempts == 1
    assert file_sha256(tmp_path / "data.bin") == sha256(data)
    assert [r.status for r in gets(far, "t1.bin")].count(403) >= 1
    assert all(r.status == 206 for r in gets(far, "t2.bin"))


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        pytest.param([{"A": "1"}, {"B": "2"}], {"A": "1", "B": "2"}, id="disjoint"),
        pytest.param([{"A": "1"}, {"A": "2"}], {"A": "2"}, id="later-wins"),
        pytest.param(
            [{"Authorization": "g"}, {"authorization": "e"}],
            {"authorization": "e"},
            id="case-insensitive",
        ),
        pytest.param(
            [{"Accept-Encoding": "identity"}, {"accept-encoding": "gzip"}, {}],
            {"accept-encoding": "gzip"},
            id="caller-overrides-ours",
        ),
        pytest.param([{"range": "x"}, {"Range": "bytes=5-"}], {"Range": "bytes=5-"}),
    ],
)
def test_merge_headers(layers: list[dict[str, str]], expected: dict[str, str]) -> None:
    assert merge_headers(*layers) == expected


async def test_a_callers_own_session_still_asks_for_raw_bytes_after_a_redirect(
    origin: FileServer, far: FileServer, tmp_path: Path
) -> None:
    """A caller's session advertises gzip by default; we never may (Range + gzip)."""
    data = make_bytes(3 * MB, "own session")
    far.set_file("seg.bin", data)
    far.faults["seg.bin"] = Faults(rate=2 * MB)
    origin.redirects["away.bin"] = far.url("seg.bin")
    entry = Entry(origin.url("away.bin"), path="seg.bin")
    async with (
        aiohttp.ClientSession() as session,
        Downloader(
            tmp_path, session=session, split=4, min_split_size=MB // 2, headers=SECRET
        ) as dl,
    ):
        report = await dl.download([entry])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "seg.bin") == sha256(data)
    at_target = gets(far, "seg.bin")
    assert len(at_target) >= 2
    for record in at_target:
        assert record.headers["Accept-Encoding"] == "identity", record.headers
        assert "Authorization" not in record.headers
