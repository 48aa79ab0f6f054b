"""One Ctrl-C or SIGTERM stops any run promptly, whatever the manifest's length."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, sha256
from .test_cli import finish, start_cli

FILES = 200  # many times the queue (2 per worker), so the reader is blocked on it
SIZE = 1_200_000  # past the small-file path, so a part is kept on disk
STOP_WITHIN = 3.0  # seconds from the signal to the exit


@pytest.mark.parametrize(
    ("sig", "expected", "jobs"),
    [
        (signal.SIGTERM, 143, "4"),
        (signal.SIGINT, 130, "4"),
        (signal.SIGTERM, 143, "8"),
        (signal.SIGINT, 130, "16"),
    ],
)
async def test_one_signal_stops_a_run_longer_than_the_queue(
    origin: FileServer,
    tmp_path: Path,
    sig: signal.Signals,
    expected: int,
    jobs: str,
) -> None:
    data = make_bytes(SIZE, "queue")
    files = {f"q/{i}.bin": data for i in range(FILES)}
    for name in files:
        origin.set_file(name, data)
        origin.faults[name] = Faults(rate=SIZE)  # about a second per file
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(json.dumps({"url": origin.url(n), "path": n}) + "\n" for n in files)
    )
    dest = tmp_path / "d"
    args = ("get", "-i", manifest, "-d", dest, "-j", jobs, "-s", "1")
    proc = await start_cli(*args)
    deadline = time.monotonic() + 15
    while not list(dest.glob("q/*.part")):
        assert time.monotonic() < deadline, "no transfer started"
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.5)
    proc.send_signal(sig)
    signalled = time.monotonic()
    code, _, err = await finish(proc, within=30)
    took = time.monotonic() - signalled

    assert code == expected, err
    assert took < STOP_WITHIN, f"took {took:.1f}s to stop after {sig.name}"
    assert "Traceback" not in err
    assert "same command" in err
    partial = list(dest.glob("q/*.part"))
    assert partial, "the transfers under way keep their parts"

    for name in files:
        origin.faults[name].rate = None
    code, _, err = await finish(await start_cli(*args), within=60)
    assert code == 0, err
    for name, data in files.items():
        assert file_sha256(dest / name) == sha256(data)
    assert not list(dest.glob("q/*.part*"))
