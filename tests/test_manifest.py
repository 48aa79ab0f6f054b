"""Manifest parsing, validation, line numbers, duplicates and laziness."""

from __future__ import annotations

import io
import itertools
import json
import re
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from downloader._exceptions import ManifestError
from downloader._integrity import Checksum
from downloader._manifest import (
    FORMATS,
    check_entries,
    check_manifests,
    check_path,
    coerce_entries,
    entry_from_fields,
    format_for,
    iter_manifest,
    spool_stdin,
)
from downloader._models import Entry

U = "http://h.test/f.bin"
SHA = "ab" * 32
SHA2 = "cd" * 32
MD5 = "0f" * 16


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def triples(path: Path, fmt: str | None = None) -> list[tuple[int, str, str]]:
    return [(n, e.url, e.path) for n, e in iter_manifest(path, fmt=fmt)]


# -- check_path ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty path"),
        ("..", "'..'"),
        ("../x", "'..'"),
        ("a/../b", "'..'"),
        ("a/..", "'..'"),
        ("./..", "'..'"),
        ("/abs", "absolute"),
        ("//x", "absolute"),
        ("C:\\x", "Windows drive"),
        ("c:x", "Windows drive"),
        ("C:/x", "Windows drive"),
        ("a\\b", "backslash"),
        ("\\\\server\\share", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control character"),
        ("a\rb", "control character"),
        ("a\tb", "control character"),
        ("a\x1bb", "control character"),
        ("a\ud800b", "lone surrogate"),  # JSON "\ud800": no UTF-8 for it
        (".", "names no file"),
        ("./.", "names no file"),
        ("a/", "ends in '/'"),
        ("./", "ends in '/'"),
    ],
)
def test_check_path_rejects(path: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_path(path)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("a", "a"),
        ("a//b", "a/b"),
        ("./a", "a"),
        ("a/./b", "a/b"),
        ("a/b/c.txt", "a/b/c.txt"),
        ("...", "..."),
        ("..a", "..a"),
        ("a..b/c", "a..b/c"),
        ("a b/ü 名前.bin", "a b/ü 名前.bin"),
        ("xy:z", "xy:z"),  # one letter before ":" is a drive, more is a name
        ("a/c:x", "a/c:x"),
    ],
)
def test_check_path_normalises(path: str, normal: str) -> None:
    assert check_path(path) == normal


def test_check_path_rejects_non_string() -> None:
    with pytest.raises(ValueError, match="path must be a string"):
        check_path(5)  # type: ignore[arg-type]


# -- entry_from_fields -----------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "missing url"),
        ({"url": ""}, "missing url"),
        ({"url": None}, "missing url"),
        ({"url": "   "}, "empty url"),
        ({"url": 5}, "url must be a string"),
        ({"url": "ftp://h/x"}, "unsupported scheme 'ftp'"),
        ({"url": "file:///etc/passwd"}, "unsupported scheme 'file'"),
        ({"url": "h.test/x"}, "no scheme"),
        ({"url": "http:///x"}, "has no host"),
        ({"url": "http://h/a b"}, "whitespace"),
        ({"url": "http://h/a\r\nb"}, "whitespace or a control character"),
        ({"url": "http://h/a\udc80"}, "url 'http://h/a\\udc80' is not valid Unicode"),
        ({"url": "http://h/a\ud800", "path": "x"}, "lone surrogate"),
        ({"url": "http://h:99999/x"}, "malformed url"),
        ({"url": U, "mirrors": ["ftp://m/x"]}, "unsupported scheme 'ftp' in mirror"),
        ({"url": U, "mirrors": "http://m/x gopher://m/x"}, "scheme 'gopher'"),
        ({"url": U, "mirrors": [5]}, "mirror must be a string"),
        ({"url": U, "mirrors": 5}, "mirrors must be a list"),
        ({"url": U, "checksum": "sha256:xyz"}, "malformed sha256 checksum"),
        ({"url": U, "checksum": "abc"}, "needs an ALGO: prefix"),
        ({"url": U, "checksum": "crc32:abcd"}, "unsupported checksum algorithm"),
        ({"url": U, "checksum": 5}, "checksum must be a string"),
        ({"url": U, "sha256": "ab"}, "malformed sha256 checksum"),
        ({"url": U, "md5": SHA}, "malformed md5 checksum"),
        ({"url": U, "sha1": "zz" * 20}, "malformed sha1 checksum"),
        ({"url": U, "checksum": SHA, "sha256": SHA2}, "conflicting checksums"),
        ({"url": U, "md5": MD5, "checksum": "md5:" + "1" * 32}, "conflicting"),
        ({"url": U, "size": -1}, "size must be a non-negative integer"),
        ({"url": U, "size": "abc"}, "size must be a non-negative integer"),
        ({"url": U, "size": "-3"}, "size must be a non-negative integer"),
        ({"url": U, "size": "1.5"}, "size must be a non-negative integer"),
        ({"url": U, "size": 1.5}, "size must be a non-negative integer"),
        ({"url": U, "size": True}, "size must be a non-negative integer"),
        ({"url": U, "headers": "nope"}, "not a JSON object"),
        ({"url": U, "headers": "[1]"}, "headers must be an object"),
        ({"url": U, "headers": ["A: b"]}, "headers must be an object"),
        ({"url": U, "headers": {"A": 1}}, "must be strings"),
        ({"url": U, "headers": {"X\r\nEvil": "v"}}, "CR or LF"),
        ({"url": U, "headers": {"X": "a\r\nEvil: 1"}}, "CR or LF"),
        ({"url": U, "headers": {"X": "a\nb"}}, "CR or LF"),
        ({"url": U, "headers": {"X Y": "v"}}, "invalid header name"),
        ({"url": U, "headers": {"": "v"}}, "invalid header name"),
        ({"url": U, "headers": {"X": "a\x00"}}, "control character"),
        ({"url": U, "headers": {"X": "a\udfff"}}, "lone surrogate"),
        ({"url": U, "sah256": SHA}, "unknown field 'sah256'"),
        ({"url": U, "sah256": SHA}, "did you mean 'sha256'"),
        ({"url": U, "URL": U}, "known fields: url, mirrors, path"),
        ({"url": U, "path": "../x"}, "'..'"),
        ({"url": U, "path": "/etc/x"}, "absolute"),
        ({"url": U, "path": 5}, "path must be a string"),
        ({"url": "http://h/dir/"}, "no path given and the URL ends in '/'"),
        ({"url": "http://h"}, "no path given and the URL has no path"),
        ({"url": "http://h/%2e%2e"}, "'..'"),
        ({"url": "http://h/%2E%2E"}, "'..'"),
        ({"url": "http://h/a%5Cb"}, "backslash"),
        ({"url": "http://h/a%00"}, "NUL"),
        ({"url": "http://h/%0a"}, "control character"),
    ],
)
def test_entry_from_fields_rejects(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        entry_from_fields(fields)


def test_entry_from_fields_rejects_non_mapping() -> None:
    with pytest.raises(ValueError, match="must be an object"):
        entry_from_fields(["url", U])  # type: ignore[arg-type]


def test_unknown_default_field_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown field 'sise'"):
        entry_from_fields({"url": U}, defaults={"sise": 3})


@pytest.mark.parametrize(
    ("fields", "checksum"),
    [
        ({"checksum": SHA}, Checksum("sha256", SHA)),
        ({"checksum": SHA.upper()}, Checksum("sha256", SHA)),
        ({"checksum": "md5:" + MD5}, Checksum("md5", MD5)),
        ({"md5": MD5}, Checksum("md5", MD5)),
        ({"sha256": SHA}, Checksum("sha256", SHA)),
        ({"sha512": "e" * 128}, Checksum("sha512", "e" * 128)),
        ({"checksum": "blake2b:" + "f" * 128}, Checksum("blake2b", "f" * 128)),
        ({"checksum": SHA, "sha256": SHA}, Checksum("sha256", SHA)),  # agree
        ({"md5": MD5, "sha256": SHA}, Checksum("sha256", SHA)),  # strongest kept
        ({"sha1": "1" * 40, "md5": MD5}, Checksum("sha1", "1" * 40)),
        ({"checksum": ""}, None),
        ({}, None),
    ],
)
def test_entry_checksum(fields: dict[str, Any], checksum: Checksum | None) -> None:
    assert entry_from_fields({"url": U, **fields}).checksum == checksum


def test_entry_from_fields_full() -> None:
    entry = entry_from_fields(
        {
            "url": " http://h.test/dir/a%20b.txt?x=1 ",
            "mirrors": ["https://m.test/a", "http://n.test/a"],
            "size": "123",
            "headers": '{"Authorization": "Bearer t", "X-A": "1\\t2"}',
        }
    )
    assert entry == Entry(
        url="http://h.test/dir/a%20b.txt?x=1",
        path="a b.txt",
        mirrors=("https://m.test/a", "http://n.test/a"),
        size=123,
        headers={"Authorization": "Bearer t", "X-A": "1\t2"},
    )
    assert entry.headers == {"Authorization": "Bearer t", "X-A": "1\t2"}


@pytest.mark.parametrize(
    ("fields", "attr", "value"),
    [
        (
            {"mirrors": "http://m/a  https://n/a"},
            "mirrors",
            ("http://m/a", "https://n/a"),
        ),
        ({"mirrors": ""}, "mirrors", ()),
        ({"size": 0}, "size", 0),
        ({"size": " 7 "}, "size", 7),
        ({"size": ""}, "size", None),
        ({"path": "./x//y"}, "path", "x/y"),
        ({"path": ""}, "path", "f.bin"),
        ({"headers": ""}, "headers", {}),
    ],
)
def test_entry_field_spellings(fields: dict[str, Any], attr: str, value: Any) -> None:
    assert getattr(entry_from_fields({"url": U, **fields}), attr) == value


def test_defaults_fill_unset_fields_only() -> None:
    defaults = {"size": 5, "headers": {"A": "b"}, "mirrors": ["http://m/x"]}
    plain = entry_from_fields({"url": U}, defaults=defaults)
    assert (plain.size, dict(plain.headers), plain.mirrors) == (
        5,
        {"A": "b"},
        ("http://m/x",),
    )
    own = entry_from_fields({"url": U, "size": 7, "mirrors": ""}, defaults=defaults)
    assert own.size == 7
    assert own.mirrors == ("http://m/x",)  # an empty cell is "not set"


def test_entry_checksum_replaces_checksum_defaults() -> None:
    entry = entry_from_fields(
        {"url": U, "md5": MD5}, defaults={"checksum": "sha256:" + SHA}
    )
    assert entry.checksum == Checksum("md5", MD5)
    default = entry_from_fields({"url": U}, defaults={"sha256": SHA})
    assert default.checksum == Checksum("sha256", SHA)


# -- formats ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fmt", "expected"),
    [
        ("m.jsonl", None, "jsonl"),
        ("m.NDJSON", None, "jsonl"),
        ("m.csv", None, "csv"),
        ("m.tsv", None, "tsv"),
        ("m.json", None, "json"),
        ("m.txt", None, "urls"),
        ("manifest", None, "urls"),
        ("m.jsonl.txt", None, "urls"),
        ("m.txt", "JSONL", "jsonl"),
        ("m.json", "urls", "urls"),
    ],
)
def test_format_for(name: str, fmt: str | None, expected: str) -> None:
    assert format_for(name, fmt) == expected
    assert expected in FORMATS


def test_format_for_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="unknown manifest format 'yaml'"):
        format_for("m.txt", "yaml")


@pytest.mark.parametrize(
    ("name", "content", "fmt", "expected"),
    [
        (
            "m.jsonl",
            '{"url": "http://h/a"}\n\n  \n"http://h/b"\r\n'
            '{"url": "http://h/c", "path": "x/c"}',
            None,
            [(1, "http://h/a", "a"), (4, "http://h/b", "b"), (5, "http://h/c", "x/c")],
        ),
        (
            "m.ndjson",
            '\ufeff{"url": "http://h/a"}\n{"url": "http://h/b", "path": "./q"}\n',
            None,
            [(1, "http://h/a", "a"), (2, "http://h/b", "q")],
        ),
        (
            "m.csv",
            "\ufeffurl , path\r\n\r\nhttp://h/a,\r\nhttp://h/b, dir/b \r\n",
            None,
            [(3, "http://h/a", "a"), (4, "http://h/b", "dir/b")],
        ),
        (
            "m.tsv",
            "path\turl\nx/a\thttp://h/a\n\thttp://h/b,c\n",
            None,
            [(2, "http://h/a", "x/a"), (3, "http://h/b,c", "b,c")],
        ),
        (
            "m.json",
            '[\n  {"url": "http://h/a"},\n  "http://h/b",\n\n'
            '  {\n    "url": "http://h/c",\n    "path": "c2"\n  }\n]\n',
            None,
            [(2, "http://h/a", "a"), (3, "http://h/b", "b"), (5, "http://h/c", "c2")],
        ),
        (
            "m.json",
            '{"files": ["http://h/a", {"url": "http://h/b"}]}',
            None,
            [(1, "http://h/a", "a"), (1, "http://h/b", "b")],
        ),
        (
            "m.txt",
            "# comment\n\nhttp://h/a\n  http://h/b \t dir/my file.bin  \n"
            "   # indented comment\nhttp://h/c\tc\n",
            None,
            [
                (3, "http://h/a", "a"),
                (4, "http://h/b", "dir/my file.bin"),
                (6, "http://h/c", "c"),
            ],
        ),
        (
            "manifest",
            "http://h/a\n",
            None,
            [(1, "http://h/a", "a")],
        ),
        (
            "m.txt",
            '{"url": "http://h/a", "path": "p"}\n',
            "jsonl",
            [(1, "http://h/a", "p")],
        ),
        (
            "m.dat",
            "url,path\nhttp://h/a,p\n",
            "csv",
            [(2, "http://h/a", "p")],
        ),
        ("empty.jsonl", "", None, []),
        ("empty.csv", "", None, []),
        ("empty.json", "[]", None, []),
    ],
)
def test_formats(
    tmp_path: Path,
    name: str,
    content: str,
    fmt: str | None,
    expected: list[tuple[int, str, str]],
) -> None:
    assert triples(write(tmp_path, name, content), fmt) == expected


def test_csv_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "m.csv",
        "url,size,mirrors,sha256,headers\n"
        f'http://h/a,3,http://m/a https://n/a,{SHA},"{{""A"": ""1"", ""B"": ""2""}}"\n'
        "http://h/b,,,,\n",
    )
    (_, a), (_, b) = iter_manifest(path)
    assert a.size == 3
    assert a.mirrors == ("http://m/a", "https://n/a")
    assert a.checksum == Checksum("sha256", SHA)
    assert a.headers == {"A": "1", "B": "2"}
    assert (b.size, b.mirrors, b.checksum, b.headers) == (None, (), None, {})


def test_json_defaults(tmp_path: Path) -> None:
    doc = {
        "defaults": {"size": 10, "headers": {"X-Token": "t"}},
        "files": [{"url": "http://h/a"}, {"url": "http://h/b", "size": 20}],
    }
    path = write(tmp_path, "m.json", json.dumps(doc, indent=2))
    entries = [e for _, e in iter_manifest(path)]
    assert [e.size for e in entries] == [10, 20]
    assert [dict(e.headers) for e in entries] == [{"X-Token": "t"}] * 2


def test_json_defaults_after_files(tmp_path: Path) -> None:
    text = '{"files": [\n"http://h/a"\n],\n"defaults": {"size": 4}}'
    path = write(tmp_path, "m.json", text)
    assert [(n, e.size) for n, e in iter_manifest(path)] == [(2, 4)]


# -- errors name file and line --------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "line", "reason"),
    [
        (
            "m.jsonl",
            '{"url": "http://h/a"}\n"http://h/b"\n{"url": \n',
            3,
            "not valid JSON",
        ),
        ("m.jsonl", '{"url": "http://h/a"}\n# comment\n', 2, "not valid JSON"),
        ("m.jsonl", "\n\n5\n", 3, "URL string, not int"),
        ("m.jsonl", '"http://h/a"\n{"url": "ftp://h/b"}\n', 2, "scheme 'ftp'"),
        ("m.jsonl", '{"url": "http://h/a", "sah256": "x"}\n', 1, "unknown field"),
        ("m.jsonl", b'"http://h/a"\n"http://h/\xff"\n', 2, "not UTF-8"),
        ("m.csv", "path,size\na,1\n", 1, "no 'url' column"),
        ("m.csv", "url,sah256\n", 1, "unknown field 'sah256'"),
        ("m.csv", "url,path,url\n", 1, "appears twice"),
        ("m.csv", "url,,path\n", 1, "column 2 has no name"),
        ("m.csv", "url,path\nhttp://h/a,a\nhttp://h/b,b,extra\n", 3, "3 cells"),
        ("m.csv", 'url,headers\nhttp://h/a,"{\n}"\nftp://h/b,\n', 4, "'ftp'"),
        ("m.csv", b"url\nhttp://h/a\nhttp://h/\xe9\n", 3, "not UTF-8"),
        ("m.csv", "url,size\nhttp://h/a,big\n", 2, "size must be"),
        ("m.tsv", "url\tpath\nhttp://h/a\t../a\n", 2, "'..'"),
        ("m.txt", "# c\n\nhttp://h/a\nftp://h/b\n", 4, "'ftp'"),
        ("m.txt", "http://h/a /etc/passwd\n", 1, "absolute"),
        ("m.txt", "http://h/\n", 1, "URL ends in '/'"),
        ("m.json", '[\n"http://h/a",\n"http://h/b",\n"ftp://h/c"\n]', 4, "entry 3: "),
        ("m.json", '["http://h/a", "http://h/"]', 1, "entry 2: no path given"),
        ("m.json", '[\n  "http://h/a",\n  [1]\n]', 3, "entry 2: an entry must be"),
        ("m.json", '[\n"http://h/a",\n\n"http://h/b" "x"]', 4, "not valid JSON"),
        ("m.json", b'[\n"http://h/a",\n"http://h/\xff"]', 3, "not UTF-8"),
        ("m.json", '{\n"files": [],\n"default": {}\n}', 3, "unknown key 'default'"),
        (
            "m.json",
            '{\n"files": [],\n"defaults": {"sise": 1}}',
            3,
            "did you mean 'size'",
        ),
        ("m.json", '{"files": [],\n"defaults": []}', 2, "'defaults' must be an object"),
        ("m.json", '{"defaults": {}}', 1, "needs a 'files' list"),
        ("m.json", '{"files": {}}', 1, "needs a 'files' list"),
        ("m.json", '"http://h/a"', 1, "must be a list of entries"),
    ],
)
def test_error_names_file_and_line(
    tmp_path: Path, name: str, content: str | bytes, line: int, reason: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(ManifestError) as info:
        list(iter_manifest(path))
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert reason in info.value.reason
    assert (info.value.source, info.value.line) == (str(path), line)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(ManifestError) as info:
        list(iter_manifest(path))
    assert (info.value.source, info.value.line) == (str(path), None)
    assert info.value.reason == "no such file"
    assert str(info.value) == f"{path}: no such file"


@pytest.mark.parametrize("name", ["d.jsonl", "d.json"])
def test_directory(tmp_path: Path, name: str) -> None:
    (tmp_path / name).mkdir()
    with pytest.raises(ManifestError, match="is a directory") as info:
        list(iter_manifest(tmp_path / name))
    assert info.value.line is None


def test_unknown_format_is_a_manifest_error(tmp_path: Path) -> None:
    path = write(tmp_path, "m.txt", "http://h/a\n")
    with pytest.raises(ManifestError, match="unknown manifest format"):
        list(iter_manifest(path, fmt="xml"))


def test_line_longer_than_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "m.txt", b"http://h/a\n" + b"x" * (2 << 20))
    with pytest.raises(ManifestError, match="longer than") as info:
        list(iter_manifest(path))
    assert info.value.line == 2


# -- laziness --------------------------------------------------------------


def test_entries_come_before_a_later_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path, "m.jsonl", '"http://h/a"\n"http://h/b"\n{garbage\n')
    entries = iter_manifest(path)
    assert next(entries)[1].url == "http://h/a"
    assert next(entries)[1].url == "http://h/b"
    with pytest.raises(ManifestError, match=":3: not valid JSON"):
        next(entries)


def big_manifest(tmp_path: Path, fmt: str, lines: int) -> Path:
    rows: Iterator[str]
    if fmt == "jsonl":
        rows = (f'{{"url": "http://h.test/f/{i}.bin"}}\n' for i in range(lines))
    elif fmt == "csv":
        rows = itertools.chain(
            ["url,path\n"], (f"http://h.test/f/{i},d/{i}.bin\n" for i in range(lines))
        )
    else:
        rows = (f"http://h.test/f/{i}.bin d/{i}.bin\n" for i in range(lines))
    path = tmp_path / f"big.{fmt}"
    with path.open("w") as f:
        f.writelines(rows)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "txt"])
def test_iter_manifest_is_lazy(tmp_path: Path, fmt: str) -> None:
    path = big_manifest(tmp_path, fmt, 200_000)
    size = path.stat().st_size
    assert size > 5_000_000
    tracemalloc.start()
    try:
        first = list(itertools.islice(iter_manifest(path), 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    start = 2 if fmt == "csv" else 1  # after the header row
    assert [n for n, _ in first] == list(range(start, start + 10))
    assert first[-1][1].url.startswith("http://h.test/f/9")
    assert peak < size // 20, f"peak {peak} bytes for a {size}-byte manifest"


# -- duplicates ------------------------------------------------------------


def test_check_manifests_counts(tmp_path: Path) -> None:
    a = write(tmp_path, "a.jsonl", '"http://h/a"\n"http://h/b"\n')
    b = write(tmp_path, "b.txt", "http://h/c\nhttp://h/d d2\nhttp://h/e\n")
    assert check_manifests([a, str(b)]) == 5


@pytest.mark.parametrize(
    ("second", "line"),
    [
        ("url,path\nhttp://h/q,q\nhttp://other/x,x\n", 3),
        ("url,path\nhttp://h/q,q\nhttp://h/x2,./x\n", 3),  # same after normalising
        ("url\nhttp://other/x\n", 2),  # default path from the URL
    ],
)
def test_duplicate_across_manifests(tmp_path: Path, second: str, line: int) -> None:
    a = write(tmp_path, "a.jsonl", '"http://h/a"\n{"url": "http://h/1", "path": "x"}\n')
    b = write(tmp_path, "b.csv", second)
    with pytest.raises(ManifestError) as info:
        check_manifests([a, b])
    assert str(info.value).startswith(f"{b}:{line}: ")
    assert f"{a}:2" in info.value.reason
    assert "'x'" in info.value.reason


def test_duplicate_within_one_manifest(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "http://h/a\nhttp://h/b\nhttp://h/c b\n")
    with pytest.raises(ManifestError, match=r"a\.txt:3: .*a\.txt:2"):
        check_manifests([a])


def test_same_manifest_twice_is_a_duplicate(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "http://h/a\n")
    with pytest.raises(ManifestError, match=r"a\.txt:1: .*a\.txt:1"):
        check_manifests([a, a])


def test_check_manifests_reports_bad_entry(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "http://h/a\n")
    b = write(tmp_path, "b.jsonl", '"http://h/b"\n"ftp://h/c"\n')
    with pytest.raises(ManifestError, match=r"b\.jsonl:2: .*'ftp'"):
        check_manifests([a, b])


def test_check_manifests_passes_format(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", '{"url": "http://h/a"}\n')
    assert check_manifests([a], fmt="jsonl") == 1
    with pytest.raises(ManifestError, match="scheme"):
        check_manifests([a])  # as a URL list, '{"url":' is not a URL


def test_digest_collision_is_not_reported(tmp_path: Path) -> None:
    calls: list[str] = []

    def weak(path: str) -> int:
        calls.append(path)
        return len(path)  # a.bin and b.bin collide

    a = write(tmp_path, "a.txt", "http://h/a.bin\nhttp://h/b.bin\nhttp://h/cc.bin\n")
    assert check_manifests([a], _digest=weak) == 3
    assert len(calls) == 6  # a second pass, because digests matched


def test_second_pass_only_when_digests_match(tmp_path: Path) -> None:
    calls: list[str] = []

    def counting(path: str) -> int:
        calls.append(path)
        return hash(path)

    a = write(tmp_path, "a.txt", "http://h/a.bin\nhttp://h/b.bin\n")
    assert check_manifests([a], _digest=counting) == 2
    assert calls == ["a.bin", "b.bin"]


def test_duplicate_found_among_colliding_digests(tmp_path: Path) -> None:
    a = write(tmp_path, "a.txt", "http://h/a\nhttp://h/b\nhttp://h/c\nhttp://h/d b\n")
    with pytest.raises(ManifestError, match=r"a\.txt:4: path 'b' .*a\.txt:2"):
        check_manifests([a], _digest=lambda path: 0)


def test_check_entries() -> None:
    check_entries([Entry(url="http://h/a"), Entry(url="http://h/b")])
    entries = [Entry(url="http://h/a"), Entry(url="http://h/b"), Entry("http://x/a")]
    with pytest.raises(ManifestError, match=r"^<entries>:3: .*<entries>:1"):
        check_entries(entries)


def test_check_entries_normalises_and_checks_paths() -> None:
    with pytest.raises(ManifestError, match=r"^<entries>:2: .*<entries>:1"):
        check_entries([Entry(U, path="d/x"), Entry(U, path="d//./x")])
    with pytest.raises(ManifestError, match=r"^<entries>:1: .*'\.\.'"):
        check_entries([Entry(U, path="../x")])


def test_check_entries_refuses_an_iterator() -> None:
    with pytest.raises(TypeError, match="re-iterable"):
        check_entries(iter([Entry(U)]))


# -- coerce_entries --------------------------------------------------------


def test_coerce_entries() -> None:
    got = list(
        coerce_entries(
            [
                "http://h/a",
                {"url": "http://h/b", "size": 3},
                Entry("http://h/c", path="d//c", checksum=Checksum("md5", MD5)),
            ]
        )
    )
    assert got == [
        Entry("http://h/a", path="a"),
        Entry("http://h/b", path="b", size=3),
        Entry("http://h/c", path="d/c", checksum=Checksum("md5", MD5)),
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ("ftp://h/x", "scheme 'ftp'"),
        ({"url": U, "sah256": SHA}, "unknown field"),
        (Entry("file:///etc/passwd"), "scheme 'file'"),
        (Entry(U, path="/etc/passwd"), "absolute"),
        (Entry("http://h/dir/"), "URL ends in '/'"),
        (Entry(U, headers={"X": "a\r\nb"}), "CR or LF"),
        (Entry(U, size=-1), "size"),
        (5, "not int"),
    ],
)
def test_coerce_entries_errors(item: Any, reason: str) -> None:
    items = iter(["http://h/ok", item])
    entries = coerce_entries(items)
    assert next(entries).path == "ok"  # lazy: the good one comes first
    with pytest.raises(ManifestError) as info:
        next(entries)
    assert (info.value.source, info.value.line) == ("<entries>", 2)
    assert reason in info.value.reason


# -- spool_stdin -----------------------------------------------------------


def test_spool_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    data = b'"http://h/a"\n' * 200_000
    path = spool_stdin(io.BytesIO(data), suffix=".jsonl")
    try:
        assert path.parent == tmp_path
        assert path.suffix == ".jsonl"
        assert path.read_bytes() == data
        assert format_for(path) == "jsonl"
    finally:
        path.unlink()


class Broken(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        msg = "stdin went away"
        raise OSError(msg)


def test_spool_stdin_leaves_nothing_on_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(OSError, match="stdin went away"):
        spool_stdin(io.BufferedReader(Broken()), suffix=".txt")
    assert list(tmp_path.iterdir()) == []
