"""Replies no framework would send, byte for byte: each run ends, nothing wrong is
published. Real CLI processes against a raw TCP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from downloader.testing import RawReplyServer

from .test_cli import finish, start_cli

BODY_75 = b"0123456789" * 7 + b"abcde"
ETAG = b'ETag: "same-every-time"\r\n'


def head(*lines: bytes, status: bytes = b"HTTP/1.1 200 OK") -> bytes:
    return status + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


@pytest.fixture
async def raw() -> AsyncIterator[list[RawReplyServer]]:
    started: list[RawReplyServer] = []
    yield started
    for server in started:
        await server.stop()


async def serve(
    raw: list[RawReplyServer],
    reply: bytes,
    *,
    hold_open: bool = False,
    pause_at: int | None = None,
) -> RawReplyServer:
    server = RawReplyServer(reply, hold_open=hold_open, pause_at=pause_at)
    await server.start()
    raw.append(server)
    return server


# --- a body that always stops at the same byte: the run must still end --------

CHUNKED_HEAD = head(b"Transfer-Encoding: chunked", ETAG.strip())
CHUNKED_CUT = CHUNKED_HEAD + b"10\r\n0123456789abcdef\r\n10\r\n0123"
FIRST_CHUNK_END = len(CHUNKED_HEAD) + 22  # the client reads this chunk, then the cut

SAME_BYTE_EVERY_TIME = [
    pytest.param(
        head(b"Content-Length: 75", ETAG.strip(), b"Accept-Ranges: bytes")
        + BODY_75[:6],
        False,
        "body cut short at byte 6 of 75",
        id="length-75-sends-6-with-etag",
    ),
    pytest.param(
        CHUNKED_CUT,
        False,
        "body cut short at byte 20 from",
        id="chunked-cut-before-the-last-chunk",
    ),
    pytest.param(
        head(b"Content-Length: 677654") + b"0123456789",
        False,
        "body cut short at byte 10 of 677,654",
        id="length-677654-sends-10-no-validator",
    ),
    pytest.param(
        head(b"Content-Type: text/plain", status=b"HTTP/1.0 200 OK") + b"never ends",
        True,
        "no data for too long",
        id="http-1.0-no-length-never-closed",
    ),
]


@pytest.mark.parametrize(("reply", "hold_open", "error"), SAME_BYTE_EVERY_TIME)
async def test_a_body_that_stops_at_the_same_byte_every_time_ends_the_run(
    raw: list[RawReplyServer],
    tmp_path: Path,
    reply: bytes,
    hold_open: bool,
    error: str,
) -> None:
    """Fetching bytes already had again is no progress: it uses up the retries."""
    pause_at = FIRST_CHUNK_END if reply == CHUNKED_CUT else None
    server = await serve(raw, reply, hold_open=hold_open, pause_at=pause_at)
    dest = tmp_path / "d"
    args = ("get", server.url("f.bin"), "-d", dest, "--retries", "1", "--timeout", "1")
    began = time.monotonic()
    code, _, err = await finish(await start_cli(*args), within=30)
    took = time.monotonic() - began

    assert code == 1, err
    assert took < 10, f"took {took:.1f}s"
    assert "Traceback" not in err
    assert "FAILED     f.bin: " + error in err, err
    assert "(3 tries)" in err  # the first, then two that made no progress
    assert len(server.heads) == 3
    assert not (dest / "f.bin").exists()
