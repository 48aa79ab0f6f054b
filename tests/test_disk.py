"""The destination misbehaves: full disk, read-only, a directory in the way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from downloader import Checksum, Downloader, Entry
from downloader._storage import FilePaths, ResumeState, save_state
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import count_flushes, file_sha256, gets, sha256


def assert_no_room(error: str | None, needed: str, free: str, dest: Path) -> None:
    """The error names the room needed and the room free (patterns) on ``dest``."""
    pattern = rf"needs {needed}, only {free} free on {re.escape(str(dest))}"
    assert re.fullmatch(pattern, error or ""), error


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs mounted for the test (needs root, as CI has)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


async def test_full_disk_fails_that_file_clearly_and_keeps_the_rest(
    origin: FileServer, small_disk: Path
) -> None:
    origin.set_file("huge.bin", make_bytes(3_000_000, "huge"))
    # No Content-Length, so no free-space check can refuse it up front (the
    # next test): the disk fills during the writes.
    origin.faults["huge.bin"] = Faults(no_length=True)
    entries = [origin.url("huge.bin"), origin.url("small.bin")]
    async with Downloader(small_disk, jobs=1, retries=2) as dl:
        report = await dl.download(entries)

    by_path = {r.path: r for r in report.results}
    huge = by_path["huge.bin"]
    assert huge.status == "failed"
    assert "No space left on device" in (huge.error or "")
    assert huge.attempts == 1  # a disk error is not retried against the server
    assert not (small_disk / "huge.bin").exists()
    assert (small_disk / "huge.bin.part").exists()  # kept for a later resume
    assert by_path["small.bin"].status in ("downloaded", "failed")
    if by_path["small.bin"].status == "downloaded":
        assert file_sha256(small_disk / "small.bin") == sha256(
            origin.files["small.bin"]
        )


async def test_a_length_the_small_disk_cannot_hold_is_refused_up_front(
    origin: FileServer, small_disk: Path
) -> None:
    origin.set_file("huge.bin", make_bytes(3_000_000, "huge"))
    async with Downloader(small_disk, jobs=1, retries=2) as dl:
        report = await dl.download([origin.url("huge.bin"), origin.url("small.bin")])

    by_path = {r.path: r for r in report.results}
    huge = by_path["huge.bin"]
    assert huge.status == "failed"
    assert_no_room(huge.error, r"2\.9 MiB", r"[\d.]+ KiB", small_disk)
    assert huge.attempts == 1
    assert not list(small_disk.glob("huge.bin*"))  # not a byte written
    assert by_path["small.bin"].status == "downloaded"
    assert file_sha256(small_disk / "small.bin") == sha256(origin.files["small.bin"])


async def test_read_only_destination_fails_each_file_clearly(
    origin: FileServer, tmp_path: Path
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions; a read-only mount would do")
    dest = tmp_path / "ro"
    dest.mkdir()
    dest.chmod(0o500)
    try:
        async with Downloader(dest) as dl:
            report = await dl.download([origin.url("small.bin")])
    finally:
        dest.chmod(0o700)
    assert report.results[0].status == "failed"
    assert "Permission denied" in (report.results[0].error or "")


def remount_read_only(mount: Path) -> None:
    done = subprocess.run(
        ["mount", "-o", "remount,ro", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"cannot remount read-only: {done.stderr.decode().strip()}")


async def test_read_only_mount_fails_each_file_clearly(
    origin: FileServer, small_disk: Path
) -> None:
    remount_read_only(small_disk)
    async with Downloader(small_disk) as dl:
        report = await dl.download([origin.url("small.bin")])

    result = report.results[0]
    assert result.status == "failed"
    assert "Read-only file system" in (result.error or "")
    assert not (small_disk / "small.bin").exists()


async def test_directory_in_the_way_fails_before_any_request(
    origin: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "small.bin").mkdir()
    async with Downloader(tmp_path) as dl:
        report = await dl.download([Entry(origin.url("small.bin"))])

    assert report.results[0].status == "failed"
    assert "is a directory" in (report.results[0].error or "")
    assert origin.log == []


async def test_one_stream_flushes_to_disk_as_it_goes(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without flushes along the way, the fsync before the rename wrote the whole
    # file at once: the slowest part of a big download on a real disk.
    flushed = count_flushes(monkeypatch, 256 * 1024)
    data = make_bytes(3_000_000, "flushed")
    origin.set_file("flushed.bin", data)
    origin.faults["flushed.bin"] = Faults(rate=4_000_000)  # arrives over ~0.75 s
    async with Downloader(tmp_path, split=1) as dl:
        report = await dl.download([origin.url("flushed.bin")])

    assert report.results[0].status == "downloaded", report.results[0].error
    assert file_sha256(tmp_path / "flushed.bin") == sha256(data)
    assert len(flushed) >= 2  # along the way, not only at the end
    assert min(flushed) < len(data)


@pytest.mark.parametrize("split", [1, 4])
async def test_a_length_the_disk_cannot_hold_fails_before_any_byte_is_written(
    origin: FileServer, tmp_path: Path, split: int
) -> None:
    """A server's Content-Length is a claim: check it against the free space."""
    origin.set_file("liar.bin", make_bytes(1_500_000, "liar"))
    origin.faults["liar.bin"] = Faults(lie_length=10**15)  # with ETag, Accept-Ranges
    dest = tmp_path / "d"
    async with Downloader(dest, split=split, retries=2, retry_wait=0.01) as dl:
        report = await dl.download([origin.url("liar.bin")])

    result = report.results[0]
    assert result.status == "failed"
    assert_no_room(result.error, r"909\.5 TiB", r"[\d.]+ [KMGT]?i?B", dest)
    assert result.attempts == 1  # the disk will not grow: no retry
    assert list(dest.iterdir()) == []  # no part, no state: nothing was written


async def test_a_lying_length_that_fits_never_grows_the_part_past_what_arrived(
    origin: FileServer, tmp_path: Path
) -> None:
    """A split part is never sized ahead to the announced length (no sparse giant)."""
    data = make_bytes(1_500_000, "fits")
    origin.set_file("liar.bin", data)
    origin.faults["liar.bin"] = Faults(lie_length=64_000_000, rate=2_000_000)
    dest = tmp_path / "d"
    largest = 0

    async def watch() -> None:
        nonlocal largest
        while True:
            for path in dest.glob("*"):
                with contextlib.suppress(FileNotFoundError):
                    largest = max(largest, path.stat().st_size)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    try:
        async with Downloader(
            dest, split=4, min_split_size=1_000_000, retries=2, retry_wait=0.01
        ) as dl:
            report = await dl.download([origin.url("liar.bin")])
    finally:
        watcher.cancel()

    result = report.results[0]
    assert result.status == "failed"
    assert "body cut short at byte 1,500,000" in (result.error or ""), result.error
    assert any("Range" in r.headers for r in gets(origin, "liar.bin")), "no split"
    assert 0 < largest <= len(data)  # never more than the bytes that arrived
    assert not (dest / "liar.bin").exists()


async def test_a_resume_that_cannot_fit_is_refused_up_front_with_a_checksum_too(
    origin: FileServer, small_disk: Path
) -> None:
    data = make_bytes(3_000_000, "resume huge")
    origin.set_file("huge.bin", data)
    entry = Entry(origin.url("huge.bin"), checksum=Checksum("sha256", sha256(data)))
    async with aiohttp.ClientSession() as session, session.head(entry.url) as answer:
        etag = answer.headers["ETag"]
    paths = FilePaths.of(small_disk, "huge.bin")
    paths.part.write_bytes(data[:100_000])  # an earlier run's first bytes
    save_state(paths.state, ResumeState(entry.url, etag, len(data)))
    async with Downloader(small_disk, retries=2) as dl:
        report = await dl.download([entry])

    result = report.results[0]
    assert result.status == "failed"
    assert_no_room(result.error, r"2\.8 MiB", r"[\d.]+ KiB", small_disk)
    assert paths.part.read_bytes() == data[:100_000]  # kept for a later resume
    assert gets(origin, "huge.bin")[-1].headers["Range"] == "bytes=100000-"
