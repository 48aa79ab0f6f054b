"""Replies no framework would send, byte for byte: each run ends, nothing wrong is
published. Real CLI processes against a raw TCP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from downloader._policy import unsupported_transfer_coding
from downloader.testing import RawReplyServer

from .conftest import file_sha256, sha256
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


# --- transfer codings and long header lines -----------------------------------


@pytest.mark.parametrize(
    ("values", "refused"),
    [
        ([], None),
        (["chunked"], None),
        (["Chunked"], None),
        (["gzip, chunked"], "gzip"),
        (["chunked, another"], "another"),
        (["gzip", "chunked"], "gzip"),  # two header lines are one list
        (["chunked, chunked"], "chunked"),
        (["identity"], None),  # not a coding since RFC 7230; old servers send it
        (["identity, gzip, chunked"], "gzip"),
        (["chunked;q=1"], "chunked;q=1"),
        ([" , chunked"], None),
    ],
)
def test_unsupported_transfer_coding(values: list[str], refused: str | None) -> None:
    assert unsupported_transfer_coding(values) == refused


CODED = [
    pytest.param(
        head(b"Transfer-Encoding: gzip, chunked")
        + b"a\r\n\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\r\n0\r\n\r\n",
        "gzip",
        id="gzip-chunked",
    ),
    pytest.param(
        head(b"Transfer-Encoding: chunked, another") + b"40\r\n" + b"a" * 64 + b"\r\n",
        "another",
        id="chunked-another",
    ),
]


@pytest.mark.parametrize(("reply", "coding"), CODED)
async def test_a_transfer_coding_we_cannot_undo_fails_the_file(
    raw: list[RawReplyServer], tmp_path: Path, reply: bytes, coding: str
) -> None:
    """RFC 9112 6.1: never publish gzip or chunk framing as the file's bytes."""
    server = await serve(raw, reply)
    dest = tmp_path / "d"
    args = ("get", server.url("f.bin"), "-d", dest, "--retries", "1")
    code, _, err = await finish(await start_cli(*args), within=30)

    host = server.base_url.removeprefix("http://")
    assert code == 1, err
    assert f"FAILED     f.bin: unsupported transfer coding '{coding}' from {host}" in (
        err
    )
    assert "Traceback" not in err
    assert len(server.heads) == 1  # the server's framing will not change: no retry
    assert not dest.exists() or list(dest.iterdir()) == []


async def test_a_header_line_longer_than_8190_bytes_is_read(
    raw: list[RawReplyServer], tmp_path: Path
) -> None:
    body = b"long header, short body\n"
    long_line = b"X-Long: " + b"x" * 18_000  # curl's test 1205 sends 18 KB
    reply = head(long_line, b"Content-Length: %d" % len(body)) + body
    server = await serve(raw, reply)
    dest = tmp_path / "d"
    code, _, err = await finish(await start_cli("get", server.url("f.bin"), "-d", dest))

    assert code == 0, err
    assert file_sha256(dest / "f.bin") == sha256(body)
