"""Kill the real CLI at random moments, again and again; the job still finishes.

Twenty SIGKILLs at random times (during transfers, checkpoints, renames: wherever
they land), then three SIGINTs and three SIGTERMs, alternating, each at a random
moment of a transfer and each followed by a rerun (they must exit 130 and 143),
then a clean run. No final file is ever wrong; at the end every file has the
right sha256 and the server has sent less than 1.5x the dataset: resumes reuse
what earlier runs fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import sys
from pathlib import Path

import pytest

from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, sha256

KILLS = 20
STOPS = [(signal.SIGINT, 130), (signal.SIGTERM, 143)] * 3  # alternating
FILE_SIZE = 4_000_000
RATE = 100_000  # bytes/s per connection: the kills leave most of the data to do


async def start_cli(manifest: Path, dest: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "downloader", "get", "-i", str(manifest),
        "-d", str(dest), "-j", "4", "-s", "2", "--min-split-size", "1M", "-q",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def wait_for_bytes(origin: FileServer, proc: asyncio.subprocess.Process) -> None:
    """Until this run has received bytes: its signal handlers are in place."""
    before = origin.bytes_sent()
    for _ in range(500):  # 10 s
        if origin.bytes_sent() > before:
            return
        assert proc.returncode is None, "the run ended before any transfer"
        await asyncio.sleep(0.02)
    pytest.fail("no bytes flowed for 10 s")


def assert_no_wrong_final_file(dest: Path, files: dict[str, bytes]) -> None:
    for name, data in files.items():
        if (dest / name).exists():
            assert file_sha256(dest / name) == sha256(data), name


async def test_kill_loop_finishes_with_right_bytes_and_reuses_them(
    origin: FileServer, tmp_path: Path
) -> None:
    rng = random.Random(20261125)
    files = {f"k{i}.bin": make_bytes(FILE_SIZE, f"kill {i}") for i in range(4)}
    lines = []
    for i, (name, data) in enumerate(files.items()):
        origin.set_file(name, data)
        origin.faults[name] = Faults(rate=RATE)
        # Only the first carries a checksum: it may be split; the others run on
        # one stream (without a checksum they still resume through their ETag).
        entry = {"url": origin.url(name), "path": name}
        if i == 0:
            entry["sha256"] = sha256(data)
        lines.append(json.dumps(entry) + "\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(lines))
    dest = tmp_path / "d"

    for _ in range(KILLS):
        proc = await start_cli(manifest, dest)
        await asyncio.sleep(rng.uniform(0.6, 1.3))
        with contextlib.suppress(ProcessLookupError):  # it may have just finished
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert_no_wrong_final_file(dest, files)  # at any moment

    for signum, code in STOPS:  # each run resumes what the last one stopped
        done = [name for name in files if (dest / name).exists()]
        assert len(done) < len(files), f"no work left for {signum.name}"
        proc = await start_cli(manifest, dest)
        await wait_for_bytes(origin, proc)
        await asyncio.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signum)
        _, err = await proc.communicate()
        assert proc.returncode == code, (signum.name, err.decode())
        assert "Run the same command again to resume" in err.decode()
        assert_no_wrong_final_file(dest, files)

    for name in files:
        origin.faults[name].rate = None
    proc = await start_cli(manifest, dest)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()

    total = sum(len(d) for d in files.values())
    for name, data in files.items():
        assert file_sha256(dest / name) == sha256(data)
    assert not list(dest.glob("*.part*"))
    sent = origin.bytes_sent()
    print(f"kill loop: {KILLS} SIGKILLs + {len(STOPS) // 2} SIGINTs + "
          f"{len(STOPS) // 2} SIGTERMs; {sent:,} bytes sent "
          f"for {total:,} bytes of files ({sent / total:.2f}x)")  # fmt: skip
    assert sent < 1.5 * total
