"""Hostile manifests: any bytes in any format parse, or fail with FILE:LINE."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from downloader import ManifestError
from downloader._manifest import FORMATS, check_manifests, iter_manifest

EXTENSION = {
    "jsonl": ".jsonl",
    "csv": ".csv",
    "tsv": ".tsv",
    "json": ".json",
    "urls": ".txt",
    "parquet": ".parquet",  # hostile bytes: never a parquet file, always located
}
LOCATED = re.compile(
    r"^.+\.(jsonl|csv|tsv|json|txt|parquet)(\.gz|\.xz|\.bz2)?(:\d+)?: .+"
)
COMPRESS = {".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress}

# Text that looks like manifests: fields, separators, quotes, traversal, CR/LF,
# NULs, percent-encodings, odd unicode, and valid URLs for some of it to parse.
fragments = st.sampled_from(
    [
        '{"url": "http://h.test/a.bin"',
        '{"url": "https://h.test/%2e%2e"}',
        '"path": "../x"',
        '"path": "a\\\\b"',
        '"path": "/etc/passwd"',
        '"path": "C:x"',
        '"size": -1',
        '"size": "12"',
        '"checksum": "sha256:zz"',
        '"md5": "0cc175b9c0f1b6a831c399e269772661"',
        '"headers": {"X": "a\\r\\nInjected: 1"}',
        '"path": "a\\ud800"',  # a lone surrogate: valid JSON, not UTF-8
        '{"url": "http://h.test/\\udc80"}',
        '"mirrors": ["ftp://h/x"]',
        "}",
        "]",
        "[",
        ",",
        "\t",
        "\n",
        "\r\n",
        "\x00",
        "url,path,sha256",
        "http://h.test/f.bin  out/f.bin",
        "# comment",
        '"',
        "\ufeff",
        "\u202e",
        "%00",
        "..",
        "ÿ",
        '{"defaults": {}, "files": [',
    ]
)
manifest_text = st.lists(st.one_of(fragments, st.text(max_size=8)), max_size=30).map(
    "".join
)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(text=manifest_text, fmt=st.sampled_from(FORMATS), raw=st.binary(max_size=40))
def test_any_input_parses_or_fails_with_file_and_line(
    text: str, fmt: str, raw: bytes
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{EXTENSION[fmt]}"
        path.write_bytes(text.encode("utf-8", "surrogatepass") + raw)
        try:
            check_manifests([path])
            entries = [entry for _, entry in iter_manifest(path)]
        except ManifestError as exc:
            message = str(exc)
            entries = []
        else:
            message = ""
        if message:
            assert LOCATED.match(message), message
            assert str(path) in message
        for entry in entries:  # what parses is safe to use
            assert entry.url.startswith(("http://", "https://"))
            assert ".." not in entry.path.split("/")
            assert not entry.path.startswith("/")
            assert "\x00" not in entry.path
            entry.path.encode()  # UTF-8 all through: it can be a file name
            entry.url.encode()
            for name, value in entry.headers.items():
                assert "\r" not in name + value
                assert "\n" not in name + value


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    text=manifest_text,
    fmt=st.sampled_from([f for f in FORMATS if f != "parquet"]),
    suffix=st.sampled_from(sorted(COMPRESS)),
    cut=st.integers(min_value=0, max_value=60),
    raw=st.binary(max_size=20),
)
def test_any_compressed_input_parses_or_fails_with_file_and_line(
    text: str, fmt: str, suffix: str, cut: int, raw: bytes
) -> None:
    """Hostile text, compressed, then cut short or trailed by junk bytes."""
    packed = COMPRESS[suffix](text.encode("utf-8", "surrogatepass"))
    packed = packed[: len(packed) - cut] + raw if cut else packed + raw
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"m{EXTENSION[fmt]}{suffix}"
        path.write_bytes(packed)
        try:
            check_manifests([path])
            entries = [entry for _, entry in iter_manifest(path)]
        except ManifestError as exc:
            message = str(exc)
            entries = []
        else:
            message = ""
        if message:
            assert LOCATED.match(message), message
            assert str(path) in message
        for entry in entries:
            assert entry.url.startswith(("http://", "https://"))


def test_cli_never_prints_a_traceback_for_hostile_manifests(tmp_path: Path) -> None:
    hostile = {
        "binary.jsonl": b"\x00\xff\xfe{{{\n",
        "deep.json": b"[" * 5000 + b"]" * 5000,
        "crlf.jsonl": json.dumps(
            {"url": "http://h.test/a", "headers": {"X": "1\r\nHost: evil"}}
        ).encode(),
        "encoded.txt": b"http://h.test/%2e%2e\n",
        "huge-line.jsonl": b'{"url": "http://h.test/' + b"a" * 2_000_000 + b'"}\n',
        "traversal.csv": b"url,path\nhttp://h.test/a,../../x\n",
        "surrogate.jsonl": b'{"url": "http://h.test/a", "path": "\\ud800"}\n',
    }
    for name, content in hostile.items():
        path = tmp_path / name
        path.write_bytes(content)
        done = subprocess.run(
            [sys.executable, "-m", "downloader", "plan", "-i", str(path), "-d",
             str(tmp_path / "d")],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, (name, done.stderr)
        assert "Traceback" not in done.stderr, (name, done.stderr)
        assert f"{name}" in done.stderr, (name, done.stderr)
