"""``downloader demo``: an offline tour on 127.0.0.1: faults, a resume, checks."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import TextIO

from .._engine import Downloader
from .._manifest import iter_manifest
from .._models import Entry, Report
from .._offline import inspect
from .._progress import LogProgress, ProgressSink, TqdmProgress, format_bytes
from ..testing import Faults, FileServer, make_bytes

DEMO_PORT = 8765
DEMO_HOST = "127.0.0.1"
# (name, size): a small dataset, every byte generated from the name, so the
# bundled manifest's checksums hold on any machine.
DEMO_FILES: tuple[tuple[str, int], ...] = (
    ("images/cat-001.jpg", 1_200_000),
    ("images/cat-002.jpg", 950_000),
    ("images/dog-001.jpg", 1_500_000),
    ("images/dog-002.jpg", 800_000),
    ("audio/bird-song.wav", 2_600_000),
    ("audio/rain.wav", 2_200_000),
    ("text/readme.txt", 12_000),
    ("text/labels.csv", 48_000),
    ("model/weights-part1.bin", 4_000_000),
    ("model/weights-part2.bin", 4_000_000),
)
PER_CONNECTION_RATE = 3_000_000  # bytes/s: slow enough to watch, fast enough to wait
INTERRUPT_AFTER = 1.2  # seconds into the first run

_Say = Callable[..., None]  # say(text=""): one line of the tour


def demo_bytes(name: str, size: int) -> bytes:
    return make_bytes(size, f"downloader-demo:{name}")


def demo_manifest_lines(base_url: str) -> Iterator[str]:
    """The bundled manifest, regenerated (a test keeps the two identical)."""
    for name, size in DEMO_FILES:
        digest = hashlib.sha256(demo_bytes(name, size)).hexdigest()
        entry = {
            "url": f"{base_url}/{name}",
            "path": f"dataset/{name}",
            "size": size,
            "checksum": f"sha256:{digest}",
        }
        yield json.dumps(entry)


def bundled_manifest() -> Path:
    return Path(str(resources.files("downloader") / "demo.jsonl"))


def _free_port(preferred: int) -> int:
    with socket.socket() as s:
        # as aiohttp binds: a previous demo's TIME_WAIT must not push us elsewhere
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((DEMO_HOST, preferred))
        except OSError:
            s.bind((DEMO_HOST, 0))
        return int(s.getsockname()[1])


def _faults() -> dict[str, Faults]:
    """What the demo server does wrong, to show the downloader coping."""
    faults = {name: Faults(rate=PER_CONNECTION_RATE) for name, _ in DEMO_FILES}
    faults["images/dog-001.jpg"].drop_after = 600_000  # connection dropped once
    faults["audio/rain.wav"].fail_times = 2  # 503, then 503, then fine
    faults["audio/rain.wav"].retry_after = "1"
    faults["text/labels.csv"].fail_status = 429  # rate limited once
    faults["text/labels.csv"].fail_times = 1
    faults["text/labels.csv"].retry_after = "1"
    return faults


def run_demo(*, keep: str | None = None, progress: bool = True) -> int:
    """Run the tour; returns the exit status (0 when every check passed)."""
    out = sys.stderr
    tmp = None if keep else tempfile.mkdtemp(prefix="downloader-demo-")
    dest = Path(keep or tmp or ".")
    try:
        return asyncio.run(_tour(dest, out, progress=progress))
    except KeyboardInterrupt:
        out.write("\ndemo interrupted\n")
        return 130
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _entries(port: int) -> list[Entry]:
    entries = [entry for _, entry in iter_manifest(bundled_manifest())]
    if port == DEMO_PORT:
        return entries
    old, new = f"{DEMO_HOST}:{DEMO_PORT}", f"{DEMO_HOST}:{port}"
    return [
        Entry(e.url.replace(old, new, 1), e.path, size=e.size, checksum=e.checksum)
        for e in entries
    ]


def _sink(out: TextIO, progress: bool) -> ProgressSink:
    if progress and out.isatty():
        return TqdmProgress(out, jobs=4)
    return LogProgress(out)


async def _tour(dest: Path, out: TextIO, *, progress: bool) -> int:
    def say(text: str = "") -> None:
        out.write(text + "\n")
        out.flush()

    port = _free_port(DEMO_PORT)
    server = FileServer(
        files={name: demo_bytes(name, size) for name, size in DEMO_FILES},
        faults=_faults(),
    )
    await server.start(DEMO_HOST, port)
    try:
        entries = _entries(port)
        total = sum(e.size or 0 for e in entries)
        _introduce(say, server.base_url, entries, total, dest)
        await _interrupted_run(say, dest, entries, _sink(out, progress))
        say()
        say("2) the same command again resumes where it stopped:")
        async with Downloader(dest, jobs=4, progress=_sink(out, progress)) as dl:
            report = await dl.download(entries)
        _say_report(say, report)
        say()
        ok = _verify(say, dest, entries) and report.ok
        say(
            f"{'all good' if ok else 'PROBLEMS FOUND'}: the second run fetched "
            f"{format_bytes(report.summary.bytes)} of {format_bytes(total)}; "
            "the rest was already on disk."
        )
        say("next: downloader get --help, or see manifests/README.md for real data")
        return 0 if ok else 1
    finally:
        await server.stop()


def _introduce(
    say: _Say, base_url: str, entries: list[Entry], total: int, dest: Path
) -> None:
    say(f"downloader demo: a local server on {base_url} (no internet used)")
    say(
        f"  manifest: {bundled_manifest()} ({len(entries)} files, "
        f"{format_bytes(total)}, sha256 for each)"
    )
    say(f"  destination: {dest}")
    say("  the server throttles each connection to 3 MB/s, drops one connection,")
    say("  answers 503 twice and 429 once (with Retry-After)")
    say()


async def _interrupted_run(
    say: _Say, dest: Path, entries: list[Entry], sink: ProgressSink
) -> None:
    say(f"1) first run, interrupted after {INTERRUPT_AFTER}s as if by Ctrl-C:")
    async with Downloader(dest, jobs=4, progress=sink) as dl:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(dl.download(entries), INTERRUPT_AFTER)
    done, kept, kept_bytes = _partials(dest, entries)
    say(
        f"   interrupted: {done} files complete, {kept} partial files "
        f"kept ({format_bytes(kept_bytes)})"
    )
    for verdict in (inspect(dest, e) for e in entries):
        if verdict.action == "resume":
            say(f"   will resume {verdict.entry.path} {verdict.detail}")


def _verify(say: _Say, dest: Path, entries: list[Entry]) -> bool:
    """Step 3; true when every file checks out and nothing is left over."""
    say("3) verify: every file against its sha256, no network:")
    bad = [v for v in (inspect(dest, e) for e in entries) if v.action != "complete"]
    for verdict in bad:
        say(f"   BAD {verdict.entry.path}: {verdict.action} {verdict.detail}")
    say(f"   {len(entries) - len(bad)} of {len(entries)} files verified")
    leftovers = _leftovers(dest)
    if leftovers:
        say(f"   unexpected leftovers: {leftovers}")
    say()
    return not bad and not leftovers


def _partials(dest: Path, entries: list[Entry]) -> tuple[int, int, int]:
    """(complete files, .part files, bytes in .part files) under ``dest``."""
    done = sum(1 for e in entries if (dest / e.path).exists())
    parts = list(dest.rglob("*.part"))
    return done, len(parts), sum(p.stat().st_size for p in parts)


def _leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*.part*"))


def _say_report(say: object, report: Report) -> None:
    assert callable(say)
    s = report.summary
    resumed = [r for r in report.results if r.size and 0 < r.bytes < r.size]
    say(
        f"   {s.counts.get('downloaded', 0)} downloaded, {s.counts.get('skipped', 0)} "
        f"already complete, {s.counts.get('failed', 0)} failed; "
        f"{len(resumed)} resumed from their .part files"
    )
