"""Parquet manifests (the parquet extra): fields as columns, rows named in errors."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path
from typing import Any

import pytest

from downloader._exceptions import ManifestError
from downloader._manifest import check_manifests, format_for, iter_manifest
from downloader._manifest.parquet import field_columns
from downloader._models import Entry
from downloader.testing import FileServer

from .conftest import file_sha256, sha256
from .test_cli import run_cli

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError:  # the parquet extra is absent: its tests skip, saying so
    pa = pq = None

needs_pyarrow = pytest.mark.skipif(
    pa is None, reason="pyarrow is absent: pip install 'downloader[parquet]'"
)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("m.parquet", "parquet"), ("M.PARQUET", "parquet"), ("m.parquet.txt", "urls")],
)
def test_a_parquet_file_is_known_by_its_name(name: str, fmt: str) -> None:
    assert format_for(name) == fmt


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["url"], {"url": "url"}),
        (["URL", "TEXT", "WIDTH"], {"url": "URL"}),  # LAION
        (["uid", "url", "text", "original_width"], {"url": "url"}),  # DataComp
        (["url", "URL"], {"url": "url"}),  # the exact name wins
        (["Url", "URL"], {}),  # two in other case: neither is chosen
        (["url", "path", "size", "sha256", "Mirrors"], {
            "url": "url", "path": "path", "size": "size", "sha256": "sha256",
            "mirrors": "Mirrors",
        }),
        (["caption", "key"], {}),
        ([], {}),
    ],
)  # fmt: skip
def test_field_columns(names: list[str], expected: dict[str, str]) -> None:
    assert field_columns(names) == expected


def test_a_compressed_parquet_is_refused_saying_why(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet.gz"
    manifest.write_bytes(gzip.compress(b"PAR1"))

    with pytest.raises(ManifestError, match="compresses its own columns"):
        list(iter_manifest(manifest))


def write_parquet(path: Path, columns: dict[str, Any], **options: Any) -> Path:
    pq.write_table(pa.table(columns), path, **options)
    return path


@needs_pyarrow
def test_a_parquet_manifest_gives_every_field(tmp_path: Path) -> None:
    manifest = write_parquet(
        tmp_path / "m.parquet",
        {
            "url": ["https://h.test/a.bin", "https://h.test/b.bin"],
            "path": ["raw/a.bin", None],
            "size": pa.array([3, None], pa.int64()),
            "sha256": [sha256(b"abc"), None],
            "mirrors": [["https://m.test/a.bin"], None],
            "headers": pa.array(
                [[("X-Token-Name", "v")], None], pa.map_(pa.string(), pa.string())
            ),
            "caption": ["a cat", "a dog"],  # a dataset's own column: not read
        },
    )

    got = list(iter_manifest(manifest))

    assert [row for row, _ in got] == [1, 2]
    a, b = (entry for _, entry in got)
    assert a.path == "raw/a.bin"
    assert a.size == 3
    assert str(a.checksum) == "sha256:" + sha256(b"abc")
    assert a.mirrors == ("https://m.test/a.bin",)
    assert a.headers == {"X-Token-Name": "v"}
    assert b == Entry(url="https://h.test/b.bin", path="b.bin")


@needs_pyarrow
def test_a_laion_style_url_column_in_capitals(tmp_path: Path) -> None:
    manifest = write_parquet(
        tmp_path / "laion.parquet",
        {"URL": ["https://h.test/0.jpg"], "TEXT": ["x"], "WIDTH": [3]},
    )
    assert [e.url for _, e in iter_manifest(manifest)] == ["https://h.test/0.jpg"]


@needs_pyarrow
def test_a_parquet_without_url_names_its_columns(tmp_path: Path) -> None:
    manifest = write_parquet(tmp_path / "m.parquet", {"link": ["x"], "caption": ["y"]})

    with pytest.raises(ManifestError) as e:
        list(iter_manifest(manifest))

    assert str(e.value) == (
        f"{manifest}: no 'url' column (its columns: 'link', 'caption')"
    )


@needs_pyarrow
def test_a_bad_row_names_its_row_number_across_row_groups(tmp_path: Path) -> None:
    urls: list[str | None] = [f"https://h.test/{i}.bin" for i in range(5000)]
    urls[3456] = None  # row 3457, in the fourth row group of 1000
    manifest = write_parquet(tmp_path / "m.parquet", {"url": urls}, row_group_size=1000)
    assert pq.ParquetFile(manifest).num_row_groups == 5

    with pytest.raises(ManifestError) as e:
        list(iter_manifest(manifest))

    assert str(e.value) == f"{manifest}:3457: missing url"


@needs_pyarrow
def test_a_repeated_path_in_parquet_names_both_rows(tmp_path: Path) -> None:
    manifest = write_parquet(
        tmp_path / "m.parquet",
        {
            "url": [
                "https://h.test/a.bin",
                "https://h.test/b.bin",
                "https://o.test/a.bin",
            ]
        },
    )
    with pytest.raises(
        ManifestError, match=r"m\.parquet:3: .*output of .*m\.parquet:1"
    ):
        check_manifests([manifest])


@needs_pyarrow
def test_a_file_that_is_not_parquet(tmp_path: Path) -> None:
    manifest = tmp_path / "m.parquet"
    manifest.write_text("url\nhttps://h.test/a.bin\n")

    with pytest.raises(ManifestError, match="not a readable parquet file"):
        list(iter_manifest(manifest))


@needs_pyarrow
def test_a_damaged_parquet_page_names_the_row_reached(tmp_path: Path) -> None:
    urls = [f"https://h.test/{i:08d}.bin" for i in range(20_000)]
    manifest = write_parquet(
        tmp_path / "m.parquet", {"url": urls}, row_group_size=10_000, compression="none"
    )
    data = bytearray(manifest.read_bytes())
    at = data.index(b"https://h.test/00015000.bin")  # in the second row group
    data[at - 4 : at + 200] = b"\xff" * 204
    manifest.write_bytes(bytes(data))

    with pytest.raises(ManifestError) as e:
        list(iter_manifest(manifest))

    assert e.value.line is not None
    assert e.value.reason.startswith("damaged parquet data at or after this row: ")
    assert 1 < e.value.line <= 15_001  # the rows before it were read fine


@needs_pyarrow
def test_parquet_without_pyarrow_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = write_parquet(tmp_path / "m.parquet", {"url": ["https://h.test/a"]})
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # as if not installed

    with pytest.raises(ManifestError) as e:
        list(iter_manifest(manifest))

    assert str(e.value) == (
        f"{manifest}: reading parquet manifests needs pyarrow: "
        "pip install 'downloader[parquet]'"
    )


@needs_pyarrow
async def test_a_parquet_manifest_downloads_every_row(
    origin: FileServer, tmp_path: Path
) -> None:
    names = ["small.bin", "blob.bin"]
    manifest = write_parquet(
        tmp_path / "m.parquet",
        {
            "url": [origin.url(n) for n in names],
            "path": ["out/" + n for n in names],
            "sha256": [sha256(origin.files[n]) for n in names],
        },
    )
    dest = tmp_path / "data"

    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "-q")

    assert code == 0, err
    for n in names:
        assert file_sha256(dest / "out" / n) == sha256(origin.files[n])


@needs_pyarrow
async def test_a_parquet_without_url_exits_2(
    origin: FileServer, tmp_path: Path
) -> None:
    manifest = write_parquet(
        tmp_path / "m.parquet", {"link": [origin.url("small.bin")]}
    )

    code, _, err = await run_cli("get", "-i", manifest, "-d", tmp_path / "d")

    assert code == 2
    assert f"{manifest}: no 'url' column (its columns: 'link')" in err
    assert origin.log == []
