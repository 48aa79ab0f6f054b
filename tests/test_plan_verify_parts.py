"""``plan`` and ``verify`` count the bytes a partial download really holds.

A split download's ``.part`` is a sparse file of the whole length from its first
byte, so its size says nothing about progress: the ``.part.state`` segments do.
The downloads here are real (a throttled ``FileServer``, a real ``get`` killed
with SIGKILL); ``plan`` and ``verify`` run as the user runs them, and their
figures are checked against the state on disk and what the server sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from downloader._models import Entry
from downloader._offline import inspect
from downloader._policy import held_bytes
from downloader._progress import format_bytes
from downloader._storage import FilePaths, ResumeState, save_state
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256
from .test_cli import run_cli, start_cli

MB = 1_000_000
NAME = "seg.bin"
SIZE = 6 * MB
SPLIT = ("-s", "4", "--min-split-size", "1M")

# --- the rule, as a table -------------------------------------------------------


def split_state(*segments: tuple[int, int, int]) -> ResumeState:
    return ResumeState(
        url="http://h/f", validator='"e"', size=segments[-1][2], segments=segments
    )


ONE_STREAM = ResumeState(url="http://h/f", validator='"e"', size=1000)


@pytest.mark.parametrize(
    ("part_size", "state", "held"),
    [
        pytest.param(-1, None, 0, id="no-part"),
        pytest.param(0, ONE_STREAM, 0, id="empty-part"),
        pytest.param(400, None, 400, id="one-stream-without-state"),
        pytest.param(400, ONE_STREAM, 400, id="one-stream-holds-its-size"),
        pytest.param(1000, split_state((0, 0, 1000)), 0, id="split-nothing-yet"),
        pytest.param(
            1000,
            split_state(
                (0, 100, 250), (250, 300, 500), (500, 500, 750), (750, 1000, 1000)
            ),
            100 + 50 + 0 + 250,
            id="split-four-segments",
        ),
        pytest.param(
            1000, split_state((0, 500, 500), (500, 1000, 1000)), 1000, id="split-all-in"
        ),
        pytest.param(
            600,
            split_state((0, 500, 500), (500, 800, 1000)),
            500 + 100,
            id="split-part-cut-short-counts-only-what-is-there",
        ),
    ],
)
def test_held_bytes(part_size: int, state: ResumeState | None, held: int) -> None:
    assert held_bytes(part_size, state) == held


@pytest.mark.parametrize(
    ("part_size", "action", "have"),
    [
        pytest.param(1000, "resume", 150, id="full-size-part-resumes-its-segments"),
        pytest.param(550, "resume", 150, id="part-grown-as-bytes-arrived-resumes"),
        pytest.param(549, "restart", 0, id="part-lacking-saved-bytes-restarts"),
        pytest.param(1001, "restart", 0, id="part-longer-than-the-file-restarts"),
    ],
)
def test_split_part_verdict_agrees_with_get(
    tmp_path: Path, part_size: int, action: str, have: int
) -> None:
    """``get`` resumes segments only when the part holds every byte they claim."""
    paths = FilePaths.of(tmp_path, "f.bin")
    with paths.part.open("wb") as f:
        f.truncate(part_size)
    save_state(paths.state, split_state((0, 100, 500), (500, 550, 1000)))
    verdict = inspect(tmp_path, Entry("http://h/f", path="f.bin"))
    assert (verdict.action, verdict.have) == (action, have), verdict


# --- real downloads through the command line -------------------------------------


def read_segments(state: Path) -> list[tuple[int, int, int]] | None:
    try:
        raw = json.loads(state.read_text())
    except (OSError, ValueError):
        return None
    return [tuple(s) for s in raw.get("segments") or []] or None


async def kill_once_saved(
    args: tuple[Any, ...], saved: Path, enough: Any, within: float = 20.0
) -> None:
    """Start ``get``; SIGKILL it once ``enough(saved)`` is true."""
    proc = await start_cli(*args)
    deadline = time.monotonic() + within
    try:
        while not enough(saved):
            if proc.returncode is not None or time.monotonic() > deadline:
                pytest.fail(f"{saved} never got far enough before the kill")
            await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.communicate()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def data(origin: FileServer) -> bytes:
    """A 6 MB file at 0.5 MB/s per connection: four connections take ~3 s."""
    body = make_bytes(SIZE, "plan-verify-parts")
    origin.set_file(NAME, body)
    origin.faults[NAME] = Faults(rate=MB // 2)
    return body


def manifest_for(tmp_path: Path, origin: FileServer, body: bytes) -> Path:
    path = tmp_path / "m.jsonl"
    entry = {"url": origin.url(NAME), "path": NAME, "sha256": sha256(body)}
    path.write_text(json.dumps(entry) + "\n")
    return path


async def interrupted_split(origin: FileServer, tmp_path: Path, body: bytes) -> Path:
    """A split ``get`` killed once its state records > 1 MB saved; the dest."""
    dest = tmp_path / "d"
    manifest = manifest_for(tmp_path, origin, body)

    def enough(state: Path) -> bool:
        segments = read_segments(state)
        return segments is not None and sum(s - a for a, s, _ in segments) > MB

    args = ("get", "-i", manifest, "-d", dest, *SPLIT, "-q")
    await kill_once_saved(args, dest / (NAME + ".part.state"), enough)
    assert not (dest / NAME).exists()
    return dest


async def plan_and_verify(
    origin: FileServer, tmp_path: Path, dest: Path
) -> tuple[str, str, str]:
    """Run both commands; (plan's line for NAME, plan's summary, verify's line)."""
    manifest = tmp_path / "m.jsonl"
    before = len(origin.log)
    code, out, err = await run_cli("plan", "-i", manifest, "-d", dest)
    assert code == 0, out + err
    assert "Traceback" not in err
    (plan_line,) = [ln for ln in out.splitlines() if NAME in ln]
    (plan_summary,) = [ln for ln in err.splitlines() if ln.startswith("plan:")]
    code, out, err = await run_cli("verify", "-i", manifest, "-d", dest)
    assert code == 1, out + err  # a partial download is not a good file
    assert "Traceback" not in err
    (verify_line,) = [ln for ln in out.splitlines() if NAME in ln]
    assert len(origin.log) == before  # neither command touched the network
    return plan_line, plan_summary, verify_line


async def rerun_get(
    origin: FileServer, tmp_path: Path, dest: Path, body: bytes
) -> None:
    """The next ``get`` finishes the file, byte for byte."""
    origin.faults[NAME].rate = 8 * MB
    manifest = tmp_path / "m.jsonl"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, *SPLIT)
    assert code == 0, err
    assert file_sha256(dest / NAME) == sha256(body)
    assert not list(dest.glob("*.part*"))


async def test_split_part_reports_the_bytes_it_holds(
    origin: FileServer, data: bytes, tmp_path: Path
) -> None:
    dest = await interrupted_split(origin, tmp_path, data)
    part = dest / (NAME + ".part")
    state = dest / (NAME + ".part.state")
    segments = read_segments(state)
    assert segments is not None
    held = sum(saved - start for start, saved, _ in segments)
    sent = origin.bytes_sent(NAME)
    size_on_disk = part.stat().st_size
    # The part grows as segments write at their offsets: holes between them.
    assert max(saved for _, saved, _ in segments) <= size_on_disk <= SIZE
    assert MB < held < SIZE
    assert held <= sent  # nothing is held that the server did not send
    state_before = state.read_bytes()

    plan_line, plan_summary, verify_line = await plan_and_verify(origin, tmp_path, dest)

    n = len(segments)
    noun = "segment" if n == 1 else "segments"
    assert plan_line.split()[:2] == ["resume", NAME], plan_line
    assert plan_line.endswith(f"({n} {noun}, {held:,} of {SIZE:,} bytes held)"), (
        plan_line
    )
    assert plan_summary.endswith(f"; {format_bytes(held)} reused by resumes"), (
        plan_summary
    )
    assert format_bytes(held) != format_bytes(SIZE)
    assert verify_line == (
        f"BAD  {NAME}: missing (partial download, {held:,} of {SIZE:,} bytes)"
    )
    assert state.read_bytes() == state_before  # plan and verify change nothing
    assert part.stat().st_size == size_on_disk

    origin.log.clear()
    await rerun_get(origin, tmp_path, dest, data)
    ranged = [r for r in gets(origin, NAME) if "Range" in r.headers]
    assert ranged, "the rerun resumed no segment"
    assert origin.bytes_sent(NAME) <= SIZE - held + 2 * MB  # the held bytes were kept


async def test_split_part_of_another_size_is_a_restart_in_plan_and_in_get(
    origin: FileServer, data: bytes, tmp_path: Path
) -> None:
    dest = await interrupted_split(origin, tmp_path, data)
    part = dest / (NAME + ".part")
    claimed = max(s for a, s, _ in read_segments(dest / (NAME + ".part.state")) or [])
    cut = claimed - 1  # the part now lacks a byte its state says was saved
    os.truncate(part, cut)

    plan_line, _, verify_line = await plan_and_verify(origin, tmp_path, dest)

    assert plan_line.split()[:2] == ["restart", NAME], plan_line
    assert plan_line.endswith(
        f"(the part ({cut:,} bytes) lacks bytes its saved segments claim)"
    ), plan_line
    assert verify_line == f"BAD  {NAME}: missing (unusable partial download)"

    origin.log.clear()
    await rerun_get(origin, tmp_path, dest, data)
    first = gets(origin, NAME)[0]
    assert "Range" not in first.headers  # get started over too
    assert first.status == 200


async def test_one_stream_part_holds_its_size(
    origin: FileServer, data: bytes, tmp_path: Path
) -> None:
    origin.faults[NAME].rate = 2 * MB
    dest = tmp_path / "d"
    manifest = manifest_for(tmp_path, origin, data)
    part = dest / (NAME + ".part")

    def enough(path: Path) -> bool:
        return path.is_file() and path.stat().st_size > MB

    await kill_once_saved(("get", "-i", manifest, "-d", dest, "-s", "1"), part, enough)
    assert read_segments(dest / (NAME + ".part.state")) is None
    have = part.stat().st_size
    assert MB < have < SIZE
    assert have <= origin.bytes_sent(NAME)

    plan_line, plan_summary, verify_line = await plan_and_verify(origin, tmp_path, dest)

    assert re.fullmatch(rf"resume\s+{NAME}\s+\(from byte {have:,}\)", plan_line), (
        plan_line
    )
    assert plan_summary.endswith(f"; {format_bytes(have)} reused by resumes")
    assert verify_line == (
        f"BAD  {NAME}: missing (partial download, {have:,} of {SIZE:,} bytes)"
    )
    await rerun_get(origin, tmp_path, dest, data)
