"""Small files published in groups: one thread hop syncs every file waiting."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from downloader import Checksum, Downloader, Entry
from downloader._commit import GroupSync, publish_small
from downloader._storage import FilePaths, StorageError
from downloader.testing import FileServer, make_bytes

from .conftest import file_sha256, sha256


def _closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


async def test_files_waiting_at_once_share_one_thread_hop(tmp_path: Path) -> None:
    syncs = GroupSync()
    bodies = {f"f{i}.bin": make_bytes(1000 + i, seed=i) for i in range(20)}
    paths = {name: FilePaths.of(tmp_path, name) for name in bodies}
    await asyncio.gather(
        *(
            publish_small(paths[name], [body[:300], body[300:]], None, syncs)
            for name, body in bodies.items()
        )
    )
    assert syncs.hops == 1
    for name, body in bodies.items():
        assert file_sha256(paths[name].final) == sha256(body)
        assert not paths[name].part.exists()


async def test_a_failing_fsync_fails_only_its_own_file(tmp_path: Path) -> None:
    syncs = GroupSync()
    good = [os.open(tmp_path / f"g{i}", os.O_WRONLY | os.O_CREAT) for i in range(3)]
    bad, other_end = os.pipe()  # fsync of a pipe fails with EINVAL
    results = await asyncio.gather(
        *(syncs.sync(fd) for fd in [good[0], bad, good[1], good[2]]),
        return_exceptions=True,
    )
    os.close(other_end)
    assert results[0] is None
    assert results[2] is None
    assert results[3] is None
    assert isinstance(results[1], OSError)
    assert all(_closed(fd) for fd in [*good, bad])


async def test_a_cancelled_waiter_still_gets_its_file_closed(tmp_path: Path) -> None:
    syncs = GroupSync()
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    waiter = asyncio.create_task(syncs.sync(fd))
    await asyncio.sleep(0)  # the waiter has handed its fd over
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    for _ in range(100):
        if _closed(fd):
            break
        await asyncio.sleep(0.01)
    assert _closed(fd)
    later = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT)
    await syncs.sync(later)  # the group still works afterwards
    assert _closed(later)


async def test_a_wrong_checksum_writes_nothing(tmp_path: Path) -> None:
    body = make_bytes(5000)
    wrong = Checksum("sha256", hashlib.sha256(b"other").hexdigest())
    paths = FilePaths.of(tmp_path, "f.bin")
    digest = await publish_small(paths, [body], wrong, GroupSync())
    assert digest == sha256(body)
    assert not paths.final.exists()
    assert not paths.part.exists()


async def test_an_unwritable_folder_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")  # a file where a folder must go
    paths = FilePaths.of(tmp_path, "file/f.bin")
    with pytest.raises(StorageError, match=r"f\.bin"):
        await publish_small(paths, [b"abc"], None, GroupSync())


async def test_a_run_of_small_files_syncs_them_in_groups(
    tmp_path: Path, origin: FileServer
) -> None:
    bodies = {f"s/{i:03}.bin": make_bytes(4096, seed=i) for i in range(200)}
    for name, body in bodies.items():
        origin.set_file(name, body)
    entries = [Entry(origin.url(name), name) for name in bodies]
    async with Downloader(tmp_path, jobs=16, per_host=16) as dl:
        report = await dl.download(entries)
        hops = dl._syncs.hops
    assert report.ok
    assert report.summary.counts["downloaded"] == 200
    for name, body in bodies.items():
        assert file_sha256(tmp_path / name) == sha256(body)
    assert hops < 200  # 16 at a time: files wait for the same hop
