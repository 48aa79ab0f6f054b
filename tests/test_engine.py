"""The worker pool, retries, mirrors, redirects and the library API (SPEC 4-6)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

import downloader
from downloader import Checksum, Downloader, DownloadFailed, Entry, ManifestError
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256


async def test_many_files_with_few_workers(origin: FileServer, tmp_path: Path) -> None:
    for i in range(40):
        origin.set_file(f"many/{i}.bin", make_bytes(5_000 + i, i))
    entries = [
        {"url": origin.url(f"many/{i}.bin"), "path": f"out/{i}.bin"} for i in range(40)
    ]
    async with Downloader(tmp_path, jobs=3) as dl:
        report = await dl.download(entries)

    assert report.summary.counts["downloaded"] == 40
    assert report.ok
    for i in range(40):
        data = origin.files[f"many/{i}.bin"]
        assert file_sha256(tmp_path / f"out/{i}.bin") == sha256(data)
    assert origin.max_in_flight <= 3


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
async def test_retryable_status_is_retried(
    origin: FileServer, tmp_path: Path, status: int
) -> None:
    origin.faults["blob.bin"] = Faults(fail_status=status, fail_times=2)
    async with Downloader(tmp_path, retries=2) as dl:
        report = await dl.download([origin.url("blob.bin")])

    result = report.results[0]
    assert result.status == "downloaded"
    assert result.attempts == 3
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_429_retry_after_is_honoured(origin: FileServer, tmp_path: Path) -> None:
    origin.faults["small.bin"] = Faults(fail_status=429, fail_times=1, retry_after="1")
    began = time.monotonic()
    async with Downloader(tmp_path) as dl:
        report = await dl.download([origin.url("small.bin")])

    assert report.results[0].status == "downloaded"
    assert time.monotonic() - began >= 0.95  # waited as asked, not the 0.5 s backoff
    first, second = gets(origin, "small.bin")
    assert (first.status, second.status) == (429, 200)


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_other_4xx_fails_without_retry(
    origin: FileServer, tmp_path: Path, status: int
) -> None:
    origin.faults["small.bin"] = Faults(fail_status=status, fail_times=10)
    async with Downloader(tmp_path, retries=3) as dl:
        report = await dl.download([origin.url("small.bin")])

    result = report.results[0]
    assert result.status == "failed"
    assert result.error == f"server answered {status}"
    assert len(gets(origin, "small.bin")) == 1
    assert not (tmp_path / "small.bin").exists()


async def test_retries_exhausted_fails_with_last_error(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["small.bin"] = Faults(fail_status=503, fail_times=100)
    async with Downloader(tmp_path, retries=2) as dl:
        report = await dl.download([origin.url("small.bin")])

    assert report.results[0].status == "failed"
    assert report.results[0].attempts == 3
    assert len(gets(origin, "small.bin")) == 3


async def test_stalled_body_times_out_and_resumes(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["blob.bin"] = Faults(
        stall_after=100_000, stall_seconds=5, rate=2_000_000
    )
    async with Downloader(tmp_path, timeout=0.5) as dl:
        report = await dl.download([origin.url("blob.bin")])

    assert report.results[0].status == "downloaded"
    assert gets(origin, "blob.bin")[1].headers["Range"] == "bytes=100000-"
    assert origin.bytes_sent("blob.bin") == len(origin.files["blob.bin"])
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_mirror_used_when_url_fails(origin: FileServer, tmp_path: Path) -> None:
    entry = Entry(
        origin.url("missing.bin"), path="blob.bin", mirrors=(origin.url("blob.bin"),)
    )
    async with Downloader(tmp_path) as dl:
        report = await dl.download([entry])

    assert report.results[0].status == "downloaded"
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_a_url_that_keeps_making_progress_is_kept_over_its_mirror(
    origin: FileServer, tmp_path: Path
) -> None:
    """Switching mirrors after a try that moved would restart from zero where the
    mirror's validators differ: stay while the URL gets further each time."""
    data = make_bytes(3_000_000, "mirrored")
    origin.set_file("a.bin", data)
    origin.set_file("b.bin", data)
    origin.faults["a.bin"] = Faults(drop_after=1_000_000, drop_times=2)
    origin.faults["b.bin"] = Faults(
        no_validators=True, drop_after=1_000_000, drop_times=100
    )
    entry = Entry(origin.url("a.bin"), path="f.bin", mirrors=(origin.url("b.bin"),))
    async with Downloader(tmp_path, retries=2, retry_wait=0.01, split=1) as dl:
        report = await dl.download([entry])

    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / "f.bin") == sha256(data)
    assert result.attempts == 3
    assert gets(origin, "b.bin") == []
    assert origin.bytes_sent() == len(data)  # every try resumed


async def test_redirect_followed_and_credentials_kept_same_host(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.redirects["old.bin"] = "/blob.bin"
    async with Downloader(tmp_path, headers={"Authorization": "Bearer t"}) as dl:
        report = await dl.download([{"url": origin.url("old.bin"), "path": "b.bin"}])

    assert report.results[0].status == "downloaded"
    assert gets(origin, "blob.bin")[0].headers["Authorization"] == "Bearer t"
    assert file_sha256(tmp_path / "b.bin") == sha256(origin.files["blob.bin"])


async def test_credentials_dropped_on_redirect_to_other_host(
    origin: FileServer, tmp_path: Path
) -> None:
    # 127.0.0.1 and localhost are different origins, both loopback.
    other = origin.url("blob.bin").replace("127.0.0.1", "localhost")
    origin.redirects["away.bin"] = other
    entry = {
        "url": origin.url("away.bin"),
        "path": "b.bin",
        "headers": {"X-Api-Key": "secret"},
    }
    async with Downloader(tmp_path, headers={"Authorization": "Bearer t"}) as dl:
        report = await dl.download([entry])

    assert report.results[0].status == "downloaded"
    assert gets(origin, "away.bin")[0].headers["Authorization"] == "Bearer t"
    final = gets(origin, "blob.bin")[0].headers
    assert "Authorization" not in final
    assert "X-Api-Key" not in final


async def test_redirect_to_other_scheme_fails(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.redirects["ftp.bin"] = "ftp://127.0.0.1/blob.bin"
    async with Downloader(tmp_path) as dl:
        report = await dl.download([{"url": origin.url("ftp.bin"), "path": "x.bin"}])

    assert report.results[0].status == "failed"
    assert "non-http(s)" in (report.results[0].error or "")


async def test_stream_yields_each_result_as_it_finishes(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["big.bin"] = Faults(rate=3_000_000)  # about a second
    async with Downloader(tmp_path, jobs=2) as dl:
        order = [
            r.path
            async for r in dl.stream([origin.url("big.bin"), origin.url("small.bin")])
        ]

    assert order == ["small.bin", "big.bin"]


async def test_limit_rate_caps_throughput(origin: FileServer, tmp_path: Path) -> None:
    began = time.monotonic()
    async with Downloader(tmp_path, limit_rate=1_000_000) as dl:
        await dl.download([origin.url("big.bin")])
    assert time.monotonic() - began >= 2.0  # 3 MB at 1 MB/s, minus the first bucket


async def test_callers_session_is_used_and_left_open(
    origin: FileServer, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession() as session:
        async with Downloader(tmp_path, session=session) as dl:
            report = await dl.download([origin.url("blob.bin")])
        assert not session.closed
    assert report.ok
    assert gets(origin, "blob.bin")[0].headers["Accept-Encoding"] == "identity"
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_raise_on_failure(origin: FileServer, tmp_path: Path) -> None:
    async with Downloader(tmp_path, raise_on_failure=True) as dl:
        with pytest.raises(DownloadFailed) as info:
            await dl.download([origin.url("blob.bin"), origin.url("nope.bin")])
    assert info.value.report.summary.counts["downloaded"] == 1
    assert "nope.bin" in str(info.value)
    assert isinstance(info.value, downloader.DownloadError)


async def test_bad_entries_raise_before_any_request(
    origin: FileServer, tmp_path: Path
) -> None:
    entries = [
        {"url": origin.url("blob.bin"), "path": "a.bin"},
        {"url": origin.url("small.bin"), "path": "a.bin"},
    ]
    async with Downloader(tmp_path) as dl:
        with pytest.raises(ManifestError, match=r"a\.bin"):
            await dl.download(entries)
    assert origin.log == []


async def test_manifest_path_and_report_fields(
    origin: FileServer, tmp_path: Path, write_manifest: Callable[..., Path]
) -> None:
    data = origin.files["blob.bin"]
    manifest = write_manifest(
        [
            {"url": origin.url("blob.bin"), "path": "d/b.bin", "sha256": sha256(data)},
            {"url": origin.url("nope.bin"), "path": "d/n.bin"},
        ]
    )
    async with Downloader(tmp_path / "dest") as dl:
        report = await dl.download(str(manifest))

    by_path = {r.path: r.to_dict() for r in report.results}
    ok, bad = by_path["d/b.bin"], by_path["d/n.bin"]
    assert ok["status"] == "downloaded"
    assert ok["bytes"] == ok["size"] == len(data)
    assert ok["checksum"] == f"sha256:{sha256(data)}"
    assert ok["attempts"] == 1
    assert ok["error"] is None
    assert bad["status"] == "failed"
    assert bad["error"] == "server answered 404"
    summary = report.to_dict()["summary"]
    assert (summary["downloaded"], summary["failed"], summary["files"]) == (1, 1, 2)
    assert summary["bytes"] == len(data)
    assert file_sha256(tmp_path / "dest/d/b.bin") == sha256(data)


def test_sync_download(origin_thread: tuple[FileServer, str], tmp_path: Path) -> None:
    server, _ = origin_thread
    report = downloader.download([server.url("blob.bin")], dest=tmp_path, jobs=2)
    assert report.ok
    assert file_sha256(tmp_path / "blob.bin") == sha256(server.files["blob.bin"])


@pytest.fixture
def origin_thread():
    """A FileServer on its own loop in a thread, for the blocking API."""
    import threading

    server = FileServer(files={"blob.bin": make_bytes(200_000, "t")})
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(10)
    yield server, server.base_url
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


async def test_checksum_entry_object(origin: FileServer, tmp_path: Path) -> None:
    data = origin.files["small.bin"]
    entry = Entry(origin.url("small.bin"), checksum=Checksum.parse(f"md5:{'a' * 32}"))
    async with Downloader(tmp_path, retries=0) as dl:
        report = await dl.download([entry])
    assert report.results[0].status == "failed"
    assert "checksum mismatch" in (report.results[0].error or "")
    assert not (tmp_path / "small.bin").exists()
    assert len(data) == 10_000


async def test_reader_never_runs_far_ahead_of_the_workers(
    origin: FileServer, tmp_path: Path
) -> None:
    """A huge manifest is streamed: entries in memory stay bounded by the queue."""
    jobs = 2
    pulled = 0
    finished = 0
    worst = 0

    def entries() -> Iterator[Entry]:
        nonlocal pulled
        for i in range(200):
            pulled += 1
            yield Entry(origin.url("small.bin"), path=f"copies/{i}.bin")

    async with Downloader(tmp_path, jobs=jobs) as dl:
        async for result in dl._run(entries()):
            assert result.status == "downloaded"
            finished += 1
            worst = max(worst, pulled - finished)

    assert finished == 200
    # queue (2 x jobs) + one in each worker + one in the reader's hand + results queue
    assert worst <= 2 * jobs + jobs + 1 + 2 * jobs
    assert file_sha256(tmp_path / "copies/199.bin") == sha256(origin.files["small.bin"])


async def test_proxy_from_environment_is_used(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The origin doubles as the proxy: a proxied request names the target host in
    # the request line, so 'files.invalid' is never resolved or contacted.
    for name in ("NO_PROXY", "no_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", origin.base_url)
    async with Downloader(tmp_path, retries=0) as dl:
        report = await dl.download(["http://files.invalid/blob.bin"])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert gets(origin, "blob.bin")[0].headers["Host"] == "files.invalid"
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


def use_netrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    """A private .netrc holding ``text``, named by NETRC for the run."""
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text(text)
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))


async def test_netrc_default_entry_never_follows_a_redirect_to_another_host(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``default`` is for the hosts the caller asked for, not for where they
    redirect (an attacker's host, perhaps)."""
    use_netrc(tmp_path, monkeypatch, "default login dee password dpw\n")
    origin.redirects["away.bin"] = origin.url("small.bin").replace(
        "127.0.0.1", "localhost"
    )
    async with Downloader(tmp_path / "d") as dl:
        report = await dl.download([{"url": origin.url("away.bin"), "path": "s.bin"}])

    assert report.ok
    assert gets(origin, "away.bin")[0].headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in gets(origin, "small.bin")[0].headers
    assert file_sha256(tmp_path / "d/s.bin") == sha256(origin.files["small.bin"])


async def test_no_proxy_bypasses_the_proxy(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with Downloader(tmp_path, retries=0) as dl:
        report = await dl.download([origin.url("blob.bin")])
    assert report.results[0].status == "downloaded", report.results[0].error


async def test_netrc_credentials_sent_only_to_their_host(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_netrc(tmp_path, monkeypatch, "machine 127.0.0.1 login alice password s3cret\n")
    origin.redirects["away.bin"] = origin.url("small.bin").replace(
        "127.0.0.1", "localhost"
    )
    async with Downloader(tmp_path / "d") as dl:
        report = await dl.download(
            [origin.url("blob.bin"), {"url": origin.url("away.bin"), "path": "s.bin"}]
        )

    assert report.ok
    assert (
        gets(origin, "blob.bin")[0].headers["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    )
    assert gets(origin, "away.bin")[0].headers["Authorization"].startswith("Basic ")
    assert "Authorization" not in gets(origin, "small.bin")[0].headers
    assert file_sha256(tmp_path / "d/s.bin") == sha256(origin.files["small.bin"])


async def test_absurd_content_length_never_leaves_a_final_file(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["big.bin"] = Faults(lie_length=10**18)
    async with Downloader(tmp_path, retries=1, retry_wait=0.01, timeout=0.5) as dl:
        report = await dl.download([origin.url("big.bin")])

    result = report.results[0]
    assert result.status == "failed"
    assert "needs 867.4 PiB" in (result.error or "") or "needs " in (result.error or "")
    assert "free on" in (result.error or "")
    assert not (tmp_path / "big.bin").exists()


@pytest.mark.parametrize(
    ("name", "size", "lie", "split"),
    [
        pytest.param("small.bin", 10_000, 20_000, 1, id="small-file"),
        pytest.param("blob.bin", 300_000, 2_000_000, 1, id="one-stream"),
        pytest.param("big.bin", 3_000_000, 5_000_000, 4, id="split"),
    ],
)
async def test_body_shorter_than_announced_fails_saying_so(
    origin: FileServer, tmp_path: Path, name: str, size: int, lie: int, split: int
) -> None:
    """The server announces more than it has: the error says so, in plain words.

    It sends its bytes, closes, then answers the resume with 416 ``bytes */SIZE``
    (or, split, a range of a smaller file): the file is SIZE bytes, not the LIE
    it announced. Not "server answered 416"; and no endless re-downloads.
    """
    assert len(origin.files[name]) == size
    origin.faults[name] = Faults(lie_length=lie, rate=20_000_000)  # paced, as a net
    async with Downloader(
        tmp_path, retries=3, retry_wait=0.01, split=split, min_split_size=256 * 1024
    ) as dl:
        report = await dl.download([origin.url(name)])

    result = report.results[0]
    assert result.status == "failed"
    assert result.error == (
        f"body cut short at byte {size:,}: the server announced {lie:,} bytes, but "
        f"asked for the rest it says the file is {size:,} bytes long (its "
        "Content-Length is wrong)"
    )
    assert not (tmp_path / name).exists()
    assert list(tmp_path.iterdir()) == []  # and no part: a rerun starts afresh
    assert gets(origin, name)[-1].status == 416
    assert origin.bytes_sent(name) < 3 * size  # told once, not retried 4 times


async def test_length_that_contradicts_the_manifest_is_refused(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["big.bin"] = Faults(lie_length=100)
    entry = Entry(origin.url("big.bin"), size=len(origin.files["big.bin"]))
    async with Downloader(tmp_path, retries=1, retry_wait=0.01) as dl:
        report = await dl.download([entry])

    result = report.results[0]
    assert result.status == "failed"
    assert "server announces 100 bytes, the manifest says 3000000" in (
        result.error or ""
    )
    assert not (tmp_path / "big.bin").exists()
