"""Compressed manifests (.gz, .xz, .bz2, .zst): read as plain; damage as FILE:LINE."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from downloader._exceptions import ManifestError
from downloader._manifest import format_for, iter_manifest
from downloader._manifest.compressed import split_compression
from downloader.testing import FileServer

from .test_cli import run_cli

try:
    import zstandard
except ImportError:  # the zstd extra is absent: .zst tests skip, saying so
    zstandard = None  # type: ignore[assignment]

needs_zstandard = pytest.mark.skipif(
    zstandard is None, reason="zstandard is absent: pip install 'downloader[zstd]'"
)

COMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.compress,
    ".xz": lzma.compress,
    ".bz2": bz2.compress,
    ".zst": lambda data: zstandard.ZstdCompressor().compress(data),
}
SUFFIXES = [
    pytest.param(s, marks=needs_zstandard) if s == ".zst" else s for s in COMPRESS
]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("urls.txt.gz", ("urls.txt", "gzip")),
        ("m.jsonl.xz", ("m.jsonl", "xz")),
        ("m.csv.bz2", ("m.csv", "bzip2")),
        ("m.tsv.zst", ("m.tsv", "zstd")),
        ("M.JSON.GZ", ("M.JSON", "gzip")),
        ("warc.paths.gz", ("warc.paths", "gzip")),
        ("m.jsonl", ("m.jsonl", None)),
        ("m.gzip", ("m.gzip", None)),
        ("gz", ("gz", None)),
    ],
)
def test_split_compression(name: str, expected: tuple[str, str | None]) -> None:
    assert split_compression(name) == expected


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("urls.txt.gz", "urls"),
        ("warc.paths.gz", "urls"),
        ("m.jsonl.xz", "jsonl"),
        ("m.ndjson.zst", "jsonl"),
        ("m.csv.bz2", "csv"),
        ("m.tsv.gz", "tsv"),
        ("m.json.gz", "json"),
        ("m.gz", "urls"),
    ],
)
def test_format_is_judged_under_the_compression(name: str, fmt: str) -> None:
    assert format_for(name) == fmt


PLAIN: dict[str, str] = {
    "urls": "# a comment\nhttps://h.test/a.bin\nhttps://h.test/b.bin sub/b.bin\n",
    "jsonl": '{"url": "https://h.test/a.bin"}\n{"url": "https://h.test/b.bin", '
    '"path": "sub/b.bin"}\n',
    "csv": "url,path\nhttps://h.test/a.bin,\nhttps://h.test/b.bin,sub/b.bin\n",
    "tsv": "url\tpath\nhttps://h.test/a.bin\t\nhttps://h.test/b.bin\tsub/b.bin\n",
    "json": json.dumps(
        [
            {"url": "https://h.test/a.bin"},
            {"url": "https://h.test/b.bin", "path": "sub/b.bin"},
        ]
    ),
}
NAMES = {"urls": "m.txt", "jsonl": "m.jsonl", "csv": "m.csv", "tsv": "m.tsv"}
NAMES["json"] = "m.json"


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("kind", list(PLAIN))
def test_a_compressed_manifest_reads_as_the_plain_one(
    tmp_path: Path, kind: str, suffix: str
) -> None:
    plain = tmp_path / NAMES[kind]
    plain.write_text(PLAIN[kind])
    packed = tmp_path / (NAMES[kind] + suffix)
    packed.write_bytes(COMPRESS[suffix](PLAIN[kind].encode()))

    got = list(iter_manifest(packed))

    assert got == list(iter_manifest(plain))
    assert [e.path for _, e in got] == ["a.bin", "sub/b.bin"]


def _lines(count: int) -> bytes:
    return b"".join(b"https://h.test/f%06d.bin\n" % i for i in range(count))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_a_cut_short_compressed_manifest_names_the_file_and_line(
    tmp_path: Path, suffix: str
) -> None:
    count = 150_000 if suffix == ".bz2" else 60_000  # bzip2: 900 KB blocks
    packed = COMPRESS[suffix](_lines(count))
    manifest = tmp_path / ("urls.txt" + suffix)
    manifest.write_bytes(packed[: len(packed) // 2])

    with pytest.raises(
        ManifestError, match="ends too soon: the file is cut short"
    ) as e:
        list(iter_manifest(manifest))

    assert e.value.source == str(manifest)
    assert e.value.line is not None
    assert 1 < e.value.line < count  # the line reached, not the start or the end
    assert str(e.value).startswith(f"{manifest}:{e.value.line}: ")


@pytest.mark.parametrize(
    ("suffix", "damage"),
    [
        (".gz", b"this is not gzip at all\n"),
        (".xz", b"this is not xz at all\n"),
        (".bz2", b"this is not bzip2 at all\n"),
        pytest.param(".zst", b"this is not zstd at all\n", marks=needs_zstandard),
    ],
)
def test_a_mislabelled_manifest_is_a_manifest_error(
    tmp_path: Path, suffix: str, damage: bytes
) -> None:
    manifest = tmp_path / ("urls.txt" + suffix)
    manifest.write_bytes(damage)

    with pytest.raises(ManifestError, match="not readable as") as e:
        list(iter_manifest(manifest))

    assert e.value.line == 1


def test_a_gz_failing_its_crc_is_a_manifest_error(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(_lines(20_000)))
    packed[-8] ^= 0xFF  # the CRC-32 of the data, in the gzip trailer
    manifest = tmp_path / "urls.txt.gz"
    manifest.write_bytes(bytes(packed))

    with pytest.raises(ManifestError) as e:
        list(iter_manifest(manifest))

    assert str(e.value) == (
        f"{manifest}:20001: not readable as gzip: CRC check failed "
        "0x%x != 0x%x (a damaged or mislabelled file?)"
        % (int.from_bytes(packed[-8:-4], "little"), zlib.crc32(_lines(20_000)))
    )


@needs_zstandard
def test_zst_without_zstandard_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "urls.txt.zst"
    manifest.write_bytes(COMPRESS[".zst"](b"https://h.test/a.bin\n"))
    monkeypatch.setitem(sys.modules, "zstandard", None)  # as if not installed

    with pytest.raises(ManifestError, match=r"pip install 'downloader\[zstd\]'"):
        list(iter_manifest(manifest))


async def test_a_corrupt_gz_manifest_exits_2_naming_file_and_line(
    origin: FileServer, tmp_path: Path
) -> None:
    packed = gzip.compress(_lines(20_000))
    manifest = tmp_path / "urls.txt.gz"
    manifest.write_bytes(packed[: len(packed) - 1000])

    code, _, err = await run_cli("get", "-i", manifest, "-d", tmp_path / "d")

    assert code == 2
    assert f"{manifest}:" in err
    assert "gzip data ends too soon" in err
    assert "Traceback" not in err
    assert origin.log == []
