"""Two runs on one destination both finish: the later one waits, then skips or takes
over (SPEC 3). Real CLI processes against a real HTTP origin."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from downloader._storage import FilePaths, PartBusy, PartLock
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256
from .test_cli import finish, start_cli

MB = 1_000_000


def serve(origin: FileServer, count: int, rate: float) -> dict[str, bytes]:
    files = {f"w{i}.bin": make_bytes(3 * MB // 2, f"wait {i}") for i in range(count)}
    for name, data in files.items():
        origin.set_file(name, data)
        origin.faults[name] = Faults(rate=rate)
    return files


def manifest_of(origin: FileServer, files: dict[str, bytes], path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"url": origin.url(n), "path": n, "sha256": sha256(d)}) + "\n"
            for n, d in files.items()
        )
    )
    return path


async def wait_for(path_glob: Path, pattern: str, within: float = 15) -> None:
    deadline = time.monotonic() + within
    while not list(path_glob.glob(pattern)):
        assert time.monotonic() < deadline, f"no {pattern} in {path_glob}"
        await asyncio.sleep(0.02)


async def test_two_overlapping_runs_both_finish(
    origin: FileServer, tmp_path: Path
) -> None:
    files = serve(origin, 4, rate=2 * MB)
    manifest = manifest_of(origin, files, tmp_path / "m.jsonl")
    dest = tmp_path / "d"
    args = ("get", "-i", manifest, "-d", dest, "-s", "1", "-j", "4", "--retries", "0")
    first = await start_cli(*args, "--report", tmp_path / "first.json")
    await asyncio.sleep(0.3)  # as two cron jobs or two terminals would
    second = await start_cli(*args, "--report", tmp_path / "second.json")
    (code_a, _, err_a), (code_b, _, err_b) = await asyncio.gather(
        finish(first), finish(second)
    )

    assert (code_a, code_b) == (0, 0), (err_a, err_b)
    assert "Traceback" not in err_a + err_b
    assert re.search(r"waiting: another downloader process \(pid \d+\)", err_b)
    for name, data in files.items():
        assert file_sha256(dest / name) == sha256(data)
    assert not list(dest.glob("*.part*"))
    later = json.loads((tmp_path / "second.json").read_text())
    assert {r["status"] for r in later["results"]} == {"skipped"}
    total = sum(len(d) for d in files.values())
    assert origin.bytes_sent() == total  # nothing was fetched twice


async def test_a_waiting_run_takes_over_the_part_of_a_run_that_died(
    origin: FileServer, tmp_path: Path
) -> None:
    files = serve(origin, 1, rate=MB // 2)
    ((name, data),) = files.items()
    manifest = manifest_of(origin, files, tmp_path / "m.jsonl")
    dest = tmp_path / "d"
    args = ("get", "-i", manifest, "-d", dest, "-s", "1", "--retries", "0")
    first = await start_cli(*args)
    await wait_for(dest, "*.part")
    second = await start_cli(*args)
    await asyncio.sleep(1.0)  # the second is waiting on the first's lock by now
    first.send_signal(signal.SIGKILL)
    await first.wait()
    origin.faults[name].rate = None
    code, _, err = await finish(second)

    assert code == 0, err
    assert "waiting: another downloader process" in err
    assert file_sha256(dest / name) == sha256(data)
    last = gets(origin, name)[-1]
    assert re.fullmatch(r"bytes=[1-9]\d*-", last.headers.get("Range", "")), last
    assert last.status == 206  # the dead run's bytes were kept, not fetched again
    assert not list(dest.glob("*.part*"))


async def test_no_wait_fails_a_file_another_process_holds(
    origin: FileServer, tmp_path: Path
) -> None:
    files = serve(origin, 1, rate=MB)
    ((name, data),) = files.items()
    manifest = manifest_of(origin, files, tmp_path / "m.jsonl")
    dest = tmp_path / "d"
    args = ("get", "-i", manifest, "-d", dest, "-s", "1", "--retries", "0")
    first = await start_cli(*args)
    await wait_for(dest, "*.part")
    began = time.monotonic()
    code_b, _, err_b = await finish(await start_cli(*args, "--no-wait"))
    waited = time.monotonic() - began
    code_a, _, err_a = await finish(first)

    assert code_a == 0, err_a
    assert code_b == 1, err_b
    assert waited < 1.0  # ended at once, not when the first run finished
    assert re.search(
        rf"another downloader process \(pid {first.pid}\) is working on .*{name}",
        err_b,
    )
    assert "Traceback" not in err_b
    assert file_sha256(dest / name) == sha256(data)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_waiting_run_stops_at_once_on_a_signal(
    origin: FileServer, tmp_path: Path, sig: signal.Signals
) -> None:
    files = serve(origin, 1, rate=MB // 4)
    manifest = manifest_of(origin, files, tmp_path / "m.jsonl")
    dest = tmp_path / "d"
    args = ("get", "-i", manifest, "-d", dest, "-s", "1")
    first = await start_cli(*args)
    await wait_for(dest, "*.part")
    second = await start_cli(*args)
    await asyncio.sleep(1.0)
    second.send_signal(sig)
    began = time.monotonic()
    code, _, err = await finish(second)
    assert code == (130 if sig == signal.SIGINT else 143), err
    assert time.monotonic() - began < 2.0
    assert "Traceback" not in err
    first.send_signal(signal.SIGKILL)
    await first.wait()


def test_a_forked_process_writes_its_own_pid_into_its_locks(tmp_path: Path) -> None:
    """The pid line is made once per process: a fork must not write its parent's."""
    paths = FilePaths.of(tmp_path, "f.bin")
    ready, go = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            with PartLock(paths):
                os.write(go, b"x")
                time.sleep(5)
        finally:
            os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        lock_file = Path(os.fspath(paths.part) + ".lock")
        assert int(lock_file.read_text()) == child
        with pytest.raises(PartBusy) as busy:
            PartLock(paths)
        assert busy.value.holder == child
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(go)
