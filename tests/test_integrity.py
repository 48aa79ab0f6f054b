"""Checksum parsing and file hashing, compared against hashlib."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from downloader import _integrity
from downloader._integrity import ALGORITHMS, Checksum, hash_file

DATA = bytes(range(256)) * 40 + b"tail"  # 10 244 bytes, not block-aligned
DIGESTS = {name: hashlib.new(name, DATA).hexdigest() for name in ALGORITHMS}


def test_algorithm_table_matches_hashlib() -> None:
    for name, length in ALGORITHMS.items():
        assert len(hashlib.new(name).hexdigest()) == length


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
@pytest.mark.parametrize(
    "form",
    ["prefix", "upper-prefix", "spaced-prefix", "keyword", "keyword-upper"],
)
def test_parse_every_algorithm(algorithm: str, form: str) -> None:
    digest = DIGESTS[algorithm]
    if form == "prefix":
        parsed = Checksum.parse(f"{algorithm}:{digest}")
    elif form == "upper-prefix":
        parsed = Checksum.parse(f"{algorithm.upper()}:{digest}")
    elif form == "spaced-prefix":
        parsed = Checksum.parse(f"  {algorithm} : {digest}  ")
    elif form == "keyword":
        parsed = Checksum.parse(digest, algorithm=algorithm)
    else:
        parsed = Checksum.parse(f" {digest} ", algorithm=algorithm.upper())
    assert parsed == Checksum(algorithm, digest)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("ab" * 32, Checksum("sha256", "ab" * 32), id="bare-64-is-sha256"),
        pytest.param(
            "AB" * 32, Checksum("sha256", "ab" * 32), id="bare-upper-normalised"
        ),
        pytest.param(
            "sha256:" + "Ab" * 32, Checksum("sha256", "ab" * 32), id="mixed-case-hex"
        ),
        pytest.param(
            "MD5:" + "0F" * 16, Checksum("md5", "0f" * 16), id="upper-algo-and-hex"
        ),
        pytest.param(
            "\t" + "ab" * 32 + "\n", Checksum("sha256", "ab" * 32), id="bare-whitespace"
        ),
    ],
)
def test_parse_normalises(text: str, expected: Checksum) -> None:
    assert Checksum.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "algorithm", "match"),
    [
        pytest.param("0f" * 16, None, "ALGO: prefix", id="bare-32-hex-needs-prefix"),
        pytest.param("ab" * 20, None, "ALGO: prefix", id="bare-40-hex-needs-prefix"),
        pytest.param("ab" * 64, None, "ALGO: prefix", id="bare-128-ambiguous"),
        pytest.param("", None, "ALGO: prefix", id="empty"),
        pytest.param("sha256:" + "ab" * 31, None, "64 hex", id="sha256-short"),
        pytest.param("sha256:" + "ab" * 33, None, "64 hex", id="sha256-long"),
        pytest.param("md5:" + "ab" * 32, None, "32 hex", id="md5-wrong-length"),
        pytest.param("sha1:" + "ab" * 16, None, "40 hex", id="sha1-wrong-length"),
        pytest.param("sha512:" + "ab" * 32, None, "128 hex", id="sha512-short"),
        pytest.param("blake2b:" + "ab" * 32, None, "128 hex", id="blake2b-short"),
        pytest.param("sha256:", None, "64 hex", id="prefix-only"),
        pytest.param("sha256:" + "zz" * 32, None, "64 hex", id="non-hex"),
        pytest.param("sha256:" + "ab" * 31 + "g0", None, "64 hex", id="one-non-hex"),
        pytest.param("sha256:0x" + "ab" * 31, None, "64 hex", id="0x-prefix"),
        pytest.param("sha256:" + "ab a" * 16, None, "64 hex", id="inner-space"),
        pytest.param("crc32:" + "ab" * 4, None, "unsupported", id="unknown-algo"),
        pytest.param("sha3_256:" + "ab" * 32, None, "unsupported", id="unlisted-algo"),
        pytest.param(":" + "ab" * 32, None, "unsupported", id="empty-algo"),
        pytest.param("ab" * 32, "crc32", "unsupported", id="unknown-keyword-algo"),
        pytest.param("ab" * 16, "sha256", "64 hex", id="keyword-wrong-length"),
    ],
)
def test_parse_rejects(text: str, algorithm: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Checksum.parse(text, algorithm=algorithm)


@pytest.mark.parametrize(
    ("checksum", "text"),
    [
        pytest.param(Checksum("sha256", "ab" * 32), "sha256:" + "ab" * 32, id="sha256"),
        pytest.param(Checksum("md5", "0f" * 16), "md5:" + "0f" * 16, id="md5"),
    ],
)
def test_str_round_trips(checksum: Checksum, text: str) -> None:
    assert str(checksum) == text
    assert Checksum.parse(str(checksum)) == checksum


def test_hasher_is_fresh_each_time() -> None:
    checksum = Checksum.parse(f"sha256:{DIGESTS['sha256']}")
    first = checksum.hasher()
    first.update(DATA)
    assert first.hexdigest() == checksum.hexdigest
    assert checksum.hasher().hexdigest() == hashlib.sha256().hexdigest()


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(DATA)
    return path


@pytest.mark.parametrize("algorithm", list(ALGORITHMS))
def test_hash_file_whole(data_file: Path, algorithm: str) -> None:
    checksum = Checksum(algorithm, DIGESTS[algorithm])
    assert hash_file(data_file, checksum).hexdigest() == DIGESTS[algorithm]


@pytest.mark.parametrize(
    "limit",
    [
        pytest.param(0, id="zero"),
        pytest.param(1, id="one"),
        pytest.param(4096, id="aligned"),
        pytest.param(5000, id="unaligned"),
        pytest.param(len(DATA), id="exact-size"),
        pytest.param(len(DATA) + 1000, id="past-end"),
    ],
)
def test_hash_file_limit(data_file: Path, limit: int) -> None:
    checksum = Checksum("sha256", DIGESTS["sha256"])
    got = hash_file(data_file, checksum, limit=limit).hexdigest()
    assert got == hashlib.sha256(DATA[:limit]).hexdigest()


@pytest.mark.parametrize(
    "limit",
    [pytest.param(None, id="no-limit"), pytest.param(2500, id="limit")],
)
def test_hash_file_across_read_blocks(
    data_file: Path, limit: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_integrity, "READ_BLOCK", 1000)  # many small reads
    checksum = Checksum("md5", DIGESTS["md5"])
    got = hash_file(data_file, checksum, limit=limit).hexdigest()
    assert got == hashlib.md5(DATA[:limit]).hexdigest()


def test_hash_file_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    checksum = Checksum("sha1", "0" * 40)
    assert hash_file(path, checksum).hexdigest() == hashlib.sha1().hexdigest()
