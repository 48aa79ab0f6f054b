"""Fixtures: a real fault-injecting HTTP server on 127.0.0.1, and byte checks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpServer

from downloader.testing import FileServer, RequestRecord, make_bytes

# The fields of each result in a --report, local or cluster run alike (SPEC 5).
REPORT_FIELDS = frozenset(
    {
        "url",
        "path",
        "status",
        "bytes",
        "size",
        "elapsed_s",
        "attempts",
        "error",
        "checksum",
    }
)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ScheduleTally:
    """What the fault-schedule property test saw (printed after the run)."""

    schedules: int = 0
    files: int = 0
    downloaded: int = 0
    failed: int = 0
    wrong_final_files: int = 0


SCHEDULE_TALLY = ScheduleTally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    t = SCHEDULE_TALLY
    if t.schedules:
        terminalreporter.write_line(
            f"fault schedules: {t.schedules} run, {t.files} files, "
            f"{t.downloaded} downloaded, {t.failed} failed, "
            f"{t.wrong_final_files} wrong final files"
        )


def gets(origin: FileServer, name: str) -> list[RequestRecord]:
    """The GET requests the server saw for ``name``, in arrival order."""
    return [r for r in origin.requests_for(name) if r.method == "GET"]


def file_sha256(path: Path) -> str:
    return sha256(path.read_bytes())


def count_flushes(monkeypatch: pytest.MonkeyPatch, every: int) -> list[int]:
    """Flush parts every ``every`` bytes; the list gets each flushed part's size."""
    from downloader._storage import writer

    flushed: list[int] = []
    real = writer._datasync_quietly

    def counting(path: Path) -> None:
        flushed.append(path.stat().st_size)
        real(path)

    monkeypatch.setattr(writer, "FLUSH_EVERY", every)
    monkeypatch.setattr(writer, "_datasync_quietly", counting)
    return flushed


@pytest.fixture
async def origin(aiohttp_server: AiohttpServer) -> FileServer:
    """Serves ``origin.files``; misbehaves as ``origin.faults[name]`` says.

    Starts with three files: small.bin (10 KB), blob.bin (300 KB), big.bin (3 MB).
    """
    server = FileServer(
        files={
            "small.bin": make_bytes(10_000, "small"),
            "blob.bin": make_bytes(300_000, "blob"),
            "big.bin": make_bytes(3_000_000, "big"),
        }
    )
    test_server = await aiohttp_server(server.app())
    server.base_url = str(test_server.make_url("")).rstrip("/")
    return server


@pytest.fixture
def write_manifest(tmp_path: Path) -> Callable[..., Path]:
    """Write entries (dicts) as a JSONL manifest and return its path."""

    def write(entries: Iterable[dict[str, Any]], name: str = "m.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(e) + "\n" for e in entries))
        return path

    return write
