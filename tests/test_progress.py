"""Progress sinks: human lines, log output and tqdm bars on a plain stream."""

from __future__ import annotations

import io

import pytest

import downloader
from downloader import Checksum, Entry, LogProgress, NullProgress, TqdmProgress
from downloader._progress import describe, format_bytes

SHA = "ab" * 32
KIB = 1024
MIB = 1024 * KIB


def result(
    status: str = "downloaded", path: str = "data/f.bin", **kwargs: object
) -> downloader.Result:
    entry = Entry(url=f"http://h.test/{path}", path=path)
    return downloader.Result(entry, status, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        pytest.param(0, "0 B", id="zero"),
        pytest.param(1, "1 B", id="one"),
        pytest.param(1023, "1023 B", id="just-under-kib"),
        pytest.param(KIB, "1.0 KiB", id="kib"),
        pytest.param(1536, "1.5 KiB", id="kib-and-half"),
        pytest.param(MIB - KIB, "1023.0 KiB", id="just-under-mib"),
        pytest.param(MIB, "1.0 MiB", id="mib"),
        pytest.param(10 * MIB + MIB // 4, "10.2 MiB", id="ten-mib"),
        pytest.param(1024 * MIB, "1.0 GiB", id="gib"),
        pytest.param(1024**4, "1.0 TiB", id="tib"),
        pytest.param(1024**5, "1024.0 TiB", id="beyond-tib"),
        pytest.param(12.6, "13 B", id="float-bytes"),
        pytest.param(2048.0, "2.0 KiB", id="float-kib"),
    ],
)
def test_format_bytes(n: float, text: str) -> None:
    assert format_bytes(n) == text


@pytest.mark.parametrize(
    ("res", "text"),
    [
        pytest.param(
            result("downloaded", bytes=2 * MIB, size=2 * MIB, elapsed_s=2.0),
            "downloaded data/f.bin (2.0 MiB in 2.0s, 1.0 MiB/s)",
            id="downloaded",
        ),
        pytest.param(
            result("downloaded", bytes=500, size=None, elapsed_s=0.0),
            "downloaded data/f.bin (500 B in 0.0s, 0 B/s)",
            id="downloaded-unknown-size-instant",
        ),
        pytest.param(
            result(
                "downloaded",
                bytes=MIB,
                size=3 * MIB,
                elapsed_s=1.0,
                checksum=f"sha256:{SHA}",
            ),
            "downloaded data/f.bin (3.0 MiB in 1.0s, 1.0 MiB/s, "
            "resumed: 1.0 MiB fetched, sha256 ok)",
            id="resumed-with-checksum",
        ),
        pytest.param(
            result("downloaded", bytes=KIB, size=KIB, elapsed_s=0.5, checksum="md5:x"),
            "downloaded data/f.bin (1.0 KiB in 0.5s, 2.0 KiB/s, md5 ok)",
            id="downloaded-with-checksum",
        ),
        pytest.param(
            result("skipped", size=KIB),
            "skipped    data/f.bin (already complete)",
            id="skipped",
        ),
        pytest.param(
            result("failed", error="server answered 404", attempts=1),
            "FAILED     data/f.bin: server answered 404",
            id="failed",
        ),
        pytest.param(
            result("failed", error="body cut short at byte 6 of 75", attempts=3),
            "FAILED     data/f.bin: body cut short at byte 6 of 75 (3 tries)",
            id="failed-after-tries",
        ),
    ],
)
def test_describe(res: downloader.Result, text: str) -> None:
    assert describe(res) == text
    assert "\n" not in describe(res)


FINISHED = [
    result("downloaded", path="a.bin", bytes=10, size=10, elapsed_s=0.1),
    result("skipped", path="b.bin", size=20),
    result("failed", path="c.bin", error="checksum mismatch: expected x got y"),
    result("downloaded", path="d.bin", bytes=5, size=30, elapsed_s=0.1),
]


def drive(sink: downloader.ProgressSink, results: list[downloader.Result]) -> None:
    sink.run_started(len(results), None)
    for key, res in enumerate(results):
        sink.file_started(key, res.path, res.size, 0)
        sink.file_advanced(key, res.bytes)
        sink.file_finished(key, res)
    sink.close()


@pytest.mark.parametrize(
    ("errors_only", "expected"),
    [
        pytest.param(False, [describe(r) for r in FINISHED], id="all"),
        pytest.param(True, [describe(FINISHED[2])], id="errors-only"),
    ],
)
def test_log_progress_one_line_per_file(errors_only: bool, expected: list[str]) -> None:
    stream = io.StringIO()
    drive(LogProgress(stream, errors_only=errors_only), FINISHED)
    assert stream.getvalue().splitlines() == expected
    assert stream.getvalue().endswith("\n")


def test_log_progress_silent_without_failures() -> None:
    stream = io.StringIO()
    drive(LogProgress(stream, errors_only=True), [FINISHED[0], FINISHED[1]])
    assert stream.getvalue() == ""


def test_null_progress_says_nothing() -> None:
    drive(NullProgress(), FINISHED)  # must merely accept every call


@pytest.mark.parametrize(
    ("results", "total_bytes", "jobs", "summary"),
    [
        pytest.param(
            [FINISHED[0], FINISHED[3]], None, 4, "total 2/2 files", id="unknown-total"
        ),
        pytest.param(
            [FINISHED[0], FINISHED[3]], 40, 1, "total 2/2 files", id="known-total"
        ),
        pytest.param(FINISHED, None, 2, "total 4/4 files, 1 failed", id="one-failed"),
        pytest.param([], None, 8, "total 0/0 files", id="no-files"),
    ],
)
def test_tqdm_progress_on_string_stream(
    results: list[downloader.Result], total_bytes: int | None, jobs: int, summary: str
) -> None:
    stream = io.StringIO()
    sink = TqdmProgress(stream, jobs=jobs)
    sink.run_started(len(results), total_bytes)
    for key, res in enumerate(results):
        sink.file_started(key, res.path, res.size, 0)
        sink.file_advanced(key, res.bytes)
        sink.file_finished(key, res)
    sink.close()
    sink.close()  # closing twice is harmless

    out = stream.getvalue()
    assert summary in out
    for res in results:
        if res.status == "failed":
            assert describe(res) in out


def test_tqdm_progress_restart_and_unfinished_files() -> None:
    stream = io.StringIO()
    sink = TqdmProgress(stream, jobs=2)
    sink.run_started(2, None)
    sink.file_started(0, "a.bin", 100, 50)  # resumed at 50
    sink.file_advanced(0, 10)
    sink.file_started(0, "a.bin", 100, 0)  # restarted from zero
    sink.file_advanced(0, 100)
    sink.file_advanced(99, 5)  # unknown key: ignored
    sink.file_finished(0, result("downloaded", path="a.bin", bytes=100, size=100))
    sink.file_started(1, "b.bin", None, 0)  # still in flight at close
    sink.file_advanced(1, 7)
    overall = sink._overall
    assert overall is not None
    assert overall.n == 100 + 7  # the restart took back its 60 bytes
    sink.close()

    assert "total 1/2 files" in stream.getvalue()


def test_sinks_satisfy_protocol() -> None:
    stream = io.StringIO()
    sinks: list[downloader.ProgressSink] = [
        NullProgress(),
        LogProgress(stream),
        TqdmProgress(stream, jobs=1),
    ]
    names = ("run_started", "file_started", "file_advanced", "file_finished", "close")
    for sink in sinks:
        assert all(callable(getattr(sink, name)) for name in names)


def test_checksum_label_comes_from_result() -> None:
    checksum = str(Checksum("sha512", "ab" * 64))
    res = result("downloaded", bytes=1, size=1, elapsed_s=1.0, checksum=checksum)
    assert describe(res).endswith(", sha512 ok)")
