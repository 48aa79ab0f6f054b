"""Small files published in groups: one thread hop syncs every file waiting."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest

from downloader import Checksum, Downloader, Entry, _storage
from downloader._exceptions import StorageError
from downloader._storage import FilePaths, lock, writer
from downloader._storage.commit import (
    GroupSync,
    NoTmpfile,
    publish_fresh,
    publish_small,
)
from downloader._storage.filesystems import (
    filesystem_at,
    kept_in_memory,
    parse_mountinfo,
)
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, sha256

ON_DISK = [("/", "ext4")]  # a mount table that makes every fsync count


async def test_files_waiting_at_once_share_one_thread_hop(tmp_path: Path) -> None:
    syncs = GroupSync(ON_DISK)
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
    syncs = GroupSync(ON_DISK)
    good = [os.open(tmp_path / f"g{i}", os.O_WRONLY | os.O_CREAT) for i in range(3)]
    bad, other_end = os.pipe()  # fsync of a pipe fails with EINVAL
    try:
        results = await asyncio.gather(
            *(syncs.sync(fd) for fd in [good[0], bad, good[1], good[2]]),
            return_exceptions=True,
        )
    finally:
        for fd in [*good, bad, other_end]:
            os.close(fd)
    assert results[0] is None
    assert results[2] is None
    assert results[3] is None
    assert isinstance(results[1], OSError)
    assert syncs.hops == 1


async def test_a_cancelled_waiter_returns_only_after_its_fsync(tmp_path: Path) -> None:
    """The caller closes the fd when sync returns: never while a thread syncs it."""
    syncs = GroupSync(ON_DISK)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    waiter = asyncio.create_task(syncs.sync(fd))
    await asyncio.sleep(0)  # the waiter has handed its fd over
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert syncs.hops == 1
    assert syncs._runner is None  # its group had finished: fd is free to close
    os.close(fd)
    later = os.open(tmp_path / "g", os.O_WRONLY | os.O_CREAT)
    try:
        await syncs.sync(later)  # the group still works afterwards
    finally:
        os.close(later)
    assert syncs.hops == 2


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
    entries = _serve(origin, bodies)
    async with Downloader(tmp_path, jobs=16, per_host=16) as dl:
        dl._syncs = GroupSync(ON_DISK)  # whatever tmp_path is on
        report = await dl.download(entries)
        hops = dl._syncs.hops
    assert report.ok
    assert report.summary.counts["downloaded"] == 200
    _assert_whole(tmp_path, bodies, "s")
    assert hops < 200  # 16 at a time: files wait for the same hop


async def test_on_a_memory_filesystem_no_fsync_and_no_hop(tmp_path: Path) -> None:
    syncs = GroupSync([("/", "ext4"), (str(tmp_path), "tmpfs")])
    paths = FilePaths.of(tmp_path, "f.bin")
    body = make_bytes(3000)
    await publish_small(paths, [body], None, syncs)
    assert syncs.hops == 0
    assert file_sha256(paths.final) == sha256(body)


MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw,size=24684084k
31 27 0:30 / /mnt/my\040disk rw - xfs /dev/sdb rw
32 27 0:31 / /data rw - ext4 /dev/sdc rw
33 32 0:32 / /data rw - tmpfs tmpfs rw
40 27 0:40 / /weird rw shared:5 master:2 - fuse.sshfs host:/x rw
"""


def test_parse_mountinfo() -> None:
    assert parse_mountinfo(MOUNTINFO + "garbage line\n\n") == [
        ("/proc", "proc"),
        ("/", "ext4"),
        ("/dev/shm", "tmpfs"),
        ("/mnt/my disk", "xfs"),
        ("/data", "ext4"),
        ("/data", "tmpfs"),
        ("/weird", "fuse.sshfs"),
    ]


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "ext4"),
        ("/home/u/data", "ext4"),
        ("/dev/shm", "tmpfs"),
        ("/dev/shm/out/a", "tmpfs"),
        ("/dev/shmem", "ext4"),  # a prefix of the name is not inside it
        ("/mnt/my disk/f", "xfs"),
        ("/data/x", "tmpfs"),  # mounted over the ext4 one: the later line wins
        ("/weird/y", "fuse.sshfs"),
    ],
)
def test_filesystem_at(path: str, kind: str) -> None:
    assert filesystem_at(path, parse_mountinfo(MOUNTINFO)) == kind


@pytest.mark.parametrize(
    ("kind", "noop"),
    [
        ("tmpfs", True),
        ("ramfs", True),
        ("ext4", False),
        ("xfs", False),
        ("nfs4", False),
        ("fuse.sshfs", False),
        ("overlay", False),
        (None, False),  # unknown: sync
    ],
)
def test_kept_in_memory(kind: str | None, noop: bool) -> None:
    assert kept_in_memory(kind) is noop


# --- new small files without a lock (O_TMPFILE, then linkat) ------------------

needs_tmpfile = pytest.mark.skipif(
    not hasattr(os, "O_TMPFILE"), reason="O_TMPFILE is Linux only"
)


@needs_tmpfile
async def test_a_fresh_file_gets_only_its_final_name(tmp_path: Path) -> None:
    paths = FilePaths.of(tmp_path, "sub/f.bin")
    body = make_bytes(40_000)
    digest = await publish_fresh(paths, [body[:100], body[100:]], None, GroupSync())
    assert digest is None
    assert file_sha256(paths.final) == sha256(body)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["f.bin"]


@needs_tmpfile
async def test_a_fresh_file_never_replaces_a_name_that_exists(tmp_path: Path) -> None:
    paths = FilePaths.of(tmp_path, "f.bin")
    paths.final.write_bytes(b"someone else's")
    with pytest.raises(NoTmpfile):
        await publish_fresh(paths, [b"ours"], None, GroupSync())
    assert paths.final.read_bytes() == b"someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def _serve(origin: FileServer, bodies: dict[str, bytes]) -> list[Entry]:
    for name, body in bodies.items():
        origin.set_file(name, body)
    return [Entry(origin.url(name), name) for name in bodies]


def _assert_whole(dest: Path, bodies: dict[str, bytes], folder: str = "") -> None:
    """Every file holds its bytes, and nothing else is left in ``folder``."""
    for name, body in bodies.items():
        assert file_sha256(dest / name) == sha256(body)
    assert sorted(p.name for p in (dest / folder).iterdir()) == sorted(
        name.rsplit("/", 1)[-1] for name in bodies
    )


async def _run(dest: Path, entries: list[Entry], **options: object) -> None:
    async with Downloader(dest, jobs=8, per_host=8, **options) as dl:  # type: ignore[arg-type]
        report = await dl.download(entries)
    assert report.ok


def _count_locks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    taken: list[str] = []
    real = _storage.PartLock

    def counting(paths: FilePaths) -> _storage.PartLock:
        taken.append(paths.final_name)
        return real(paths)

    monkeypatch.setattr(lock, "PartLock", counting)  # LazyLock makes them there
    return taken


@needs_tmpfile
async def test_new_small_files_take_no_lock_and_a_resume_does(
    tmp_path: Path, origin: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = {f"n/{i:02}.bin": make_bytes(5000, seed=i) for i in range(30)}
    entries = _serve(origin, bodies)
    (tmp_path / "n").mkdir()
    (tmp_path / "n/07.bin.part").write_bytes(bodies["n/07.bin"][:1000])  # to resume
    taken = _count_locks(monkeypatch)
    await _run(tmp_path, entries)
    assert taken == [os.path.join(tmp_path, "n/07.bin")]
    _assert_whole(tmp_path, bodies, "n")


async def test_without_tmpfile_small_files_go_through_a_locked_part(
    tmp_path: Path, origin: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(os, "O_TMPFILE", raising=False)
    bodies = {f"{i:02}.bin": make_bytes(5000, seed=i) for i in range(10)}
    entries = _serve(origin, bodies)
    taken = _count_locks(monkeypatch)
    await _run(tmp_path, entries)
    assert len(taken) == 10
    _assert_whole(tmp_path, bodies)


async def test_two_downloaders_on_one_destination_at_once(
    tmp_path: Path, origin: FileServer
) -> None:
    """Both finish, every file is whole, and nothing is left beside them."""
    bodies = {f"t/{i:03}.bin": make_bytes(3000 + i, seed=i) for i in range(150)}
    bodies["t/big.bin"] = make_bytes(2_500_000, seed="big")  # a part, a lock
    entries = _serve(origin, bodies)
    await asyncio.gather(_run(tmp_path, entries), _run(tmp_path, entries[::-1]))
    _assert_whole(tmp_path, bodies, "t")


async def test_a_new_file_looks_for_its_part_once(
    tmp_path: Path, origin: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = {f"{i:02}.bin": make_bytes(2000, seed=i) for i in range(10)}
    entries = _serve(origin, bodies)
    looks: list[str] = []
    real = _storage.part_size

    def counting(path: Path | str) -> int:
        looks.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(_storage, "part_size", counting)
    await _run(tmp_path, entries)
    assert len(looks) == 10
    _assert_whole(tmp_path, bodies)


# --- large files on a memory filesystem: the loop writes the batches itself -----


IN_MEMORY = [("/", "tmpfs")]  # a mount table that puts every folder on tmpfs


def _writers_threads(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    seen: set[str] = set()
    real = writer.PartWriter._write_batch

    def noting(self: writer.PartWriter, batch: list[bytes], offset: int) -> None:
        seen.add(threading.current_thread().name)
        real(self, batch, offset)

    monkeypatch.setattr(writer.PartWriter, "_write_batch", noting)
    return seen


@pytest.mark.parametrize(
    ("mounts", "split", "on_loop"),
    [
        (IN_MEMORY, 1, True),
        (IN_MEMORY, 4, True),
        (ON_DISK, 1, False),
        (ON_DISK, 4, False),
    ],
)
async def test_large_bodies_are_written_on_the_loop_only_in_memory(
    tmp_path: Path,
    origin: FileServer,
    monkeypatch: pytest.MonkeyPatch,
    mounts: list[tuple[str, str]],
    split: int,
    on_loop: bool,
) -> None:
    body = make_bytes(6_000_000, seed="large")
    origin.set_file("large.bin", body)
    origin.faults["large.bin"] = Faults(drop_after=2_500_000)  # one resume too
    threads = _writers_threads(monkeypatch)
    options = {"split": split, "min_split_size": 1_000_000, "retry_wait": 0.01}
    async with Downloader(tmp_path, **options) as dl:  # type: ignore[arg-type]
        dl._syncs = GroupSync(mounts)
        report = await dl.download([Entry(origin.url("large.bin"), "large.bin")])
    assert report.ok
    assert file_sha256(tmp_path / "large.bin") == sha256(body)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["large.bin"]
    assert (threads == {threading.main_thread().name}) is on_loop


async def test_a_checksum_keeps_the_writes_in_threads(
    tmp_path: Path, origin: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hashing 1 MiB batches on the loop would stall it: hashlib runs beside it."""
    body = make_bytes(3_000_000, seed="sum")
    origin.set_file("sum.bin", body)
    threads = _writers_threads(monkeypatch)
    entry = Entry(
        origin.url("sum.bin"), "sum.bin", checksum=Checksum("sha256", sha256(body))
    )
    async with Downloader(tmp_path, split=1) as dl:
        dl._syncs = GroupSync(IN_MEMORY)
        report = await dl.download([entry])
    assert report.ok
    assert file_sha256(tmp_path / "sum.bin") == sha256(body)
    assert threading.main_thread().name not in threads


async def test_ranges_write_in_small_batches(
    tmp_path: Path, origin: FileServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each range holds up to two batches: 16 ranges of 1 MiB batches cost 32 MiB."""
    body = make_bytes(6_000_000, seed="ranges")
    origin.set_file("r.bin", body)
    sizes: list[int] = []
    real = writer.PartWriter._write_batch

    def noting(self: writer.PartWriter, batch: list[bytes], offset: int) -> None:
        sizes.append(sum(len(c) for c in batch))
        real(self, batch, offset)

    monkeypatch.setattr(writer.PartWriter, "_write_batch", noting)
    monkeypatch.setattr(writer, "SLOW_GAP", 10.0)  # batch by size, not by pace
    async with Downloader(tmp_path, split=4, min_split_size=1_000_000) as dl:
        dl._syncs = GroupSync(ON_DISK)
        report = await dl.download([Entry(origin.url("r.bin"), "r.bin")])
    assert report.ok
    assert file_sha256(tmp_path / "r.bin") == sha256(body)
    assert len(sizes) > 1
    assert max(sizes) < writer.BATCH_BYTES  # ranges gather less than one stream
