"""Compressed manifests (.gz, .xz, .bz2, .zst) -> plain bytes; damage as FILE:LINE."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from pathlib import PurePath
from typing import IO, Any, cast

from .._exceptions import ManifestError

# suffix -> the name users know the compression by
COMPRESSIONS: dict[str, str] = {
    ".gz": "gzip",
    ".xz": "xz",
    ".bz2": "bzip2",
    ".zst": "zstd",
}
ZSTD_HINT = "pip install 'downloader[zstd]'"


def split_compression(name: str) -> tuple[str, str | None]:
    """``urls.txt.gz`` -> ``("urls.txt", "gzip")``; ``m.csv`` -> ``("m.csv", None)``.

    The format is then judged from the name left, so ``m.jsonl.xz`` is JSON Lines.
    """
    suffix = PurePath(name).suffix.lower()
    if suffix in COMPRESSIONS:
        return name[: -len(suffix)], COMPRESSIONS[suffix]
    return name, None


def decompressed(file: IO[bytes], compression: str, source: str) -> IO[bytes]:
    """Read ``file`` through its decompressor; damage is a ManifestError at a line.

    Raises
    ------
    ManifestError
        ``zstd`` without a library to read it.
    """
    return cast(
        IO[bytes],
        _Decompressed(_opener(compression, source)(file), compression, source),
    )


def _opener(compression: str, source: str) -> Callable[[IO[bytes]], IO[bytes]]:
    if compression == "gzip":
        return lambda f: cast(IO[bytes], gzip.GzipFile(fileobj=f, mode="rb"))
    if compression == "xz":
        return lambda f: cast(IO[bytes], lzma.LZMAFile(f))
    if compression == "bzip2":
        return lambda f: cast(IO[bytes], bz2.BZ2File(f))
    return _zstd_opener(source)


def _zstd_opener(source: str) -> Callable[[IO[bytes]], IO[bytes]]:
    try:
        import zstandard  # noqa: F401 - optional extra, loaded only for .zst
    except ImportError:
        msg = f"reading .zst manifests needs the zstandard library: {ZSTD_HINT}"
        raise ManifestError(msg, source=source) from None
    return lambda f: cast(IO[bytes], io.BufferedReader(_ZstdFrames(f)))


class _ZstdFrames(io.RawIOBase):
    """zstd frames, one after another; a file cut inside a frame is an EOFError.

    zstandard's own ``stream_reader`` ends quietly at a cut-short frame, so a
    truncated manifest would pass for a short one; gzip, xz and bzip2 raise
    EOFError there, and so does this.
    """

    def __init__(self, file: IO[bytes]) -> None:
        import zstandard

        self._file = file
        self._context = zstandard.ZstdDecompressor()
        self._frame: Any = None  # the decompressor of the frame being read
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            if not self._fill():
                return 0
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _fill(self) -> bool:
        chunk = self._file.read(1 << 16)
        if not chunk:
            if self._frame is not None:
                msg = "Compressed file ended before the end of its last frame"
                raise EOFError(msg)
            return False
        out = []
        while chunk:
            if self._frame is None:
                self._frame = self._context.decompressobj()
            out.append(self._frame.decompress(chunk))
            chunk = b""
            if self._frame.eof:
                chunk, self._frame = self._frame.unused_data, None
        self._pending = memoryview(b"".join(out))
        return True


def _errors() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [OSError, EOFError, zlib.error, lzma.LZMAError]
    try:
        import zstandard
    except ImportError:
        pass
    else:
        found.append(zstandard.ZstdError)
    return tuple(found)


class _Decompressed:
    """``readline`` and ``read`` of a decompressed stream, counting lines passed on.

    A corrupt or cut-short file then fails as ``FILE:LINE`` (the line being
    read when the damage was found), never with a traceback.
    """

    def __init__(self, stream: IO[bytes], compression: str, source: str) -> None:
        self._stream = stream
        self._compression = compression
        self._source = source
        self._lines = 0
        self._errors = _errors()

    def readline(self, size: int = -1) -> bytes:
        return self._counted(lambda: self._stream.readline(size))

    def read(self, size: int = -1) -> bytes:
        return self._counted(lambda: self._stream.read(size))

    def _counted(self, read: Callable[[], bytes]) -> bytes:
        try:
            data = read()
        except self._errors as exc:
            raise ManifestError(
                damage(self._compression, exc),
                source=self._source,
                line=self._lines + 1,
            ) from None
        self._lines += data.count(b"\n")
        return data

    def close(self) -> None:
        self._stream.close()


def damage(compression: str, exc: BaseException) -> str:
    """Why a compressed manifest cannot be read, in words for its user."""
    if isinstance(exc, EOFError):
        return (
            f"the {compression} data ends too soon: the file is cut short "
            "(an interrupted download?)"
        )
    reason = str(exc) or type(exc).__name__
    return f"not readable as {compression}: {reason} (a damaged or mislabelled file?)"
