"""Server digests (Repr-Digest, Content-Digest, x-goog-hash, x-amz-checksum-sha256).

Tables for the parsers and the choices in ``_policy/digests.py``; then real
downloads from ``FileServer`` sending right and wrong digests, bytes checked.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from downloader import Downloader, Entry
from downloader._integrity import Checksum
from downloader._policy.digests import (
    ServerDigest,
    checksum_request,
    expected_digest,
    parse_amz_sha256,
    parse_digest_field,
    parse_goog_hash,
    server_digests,
    with_server_digest,
)
from downloader.testing import Faults, FileServer

from .conftest import file_sha256, gets, sha256

DATA = b"hello world"
SHA256_B64 = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
SHA256_HEX = hashlib.sha256(DATA).hexdigest()
SHA512_B64 = base64.b64encode(hashlib.sha512(DATA).digest()).decode()
MD5_B64 = base64.b64encode(hashlib.md5(DATA).digest()).decode()
MD5_HEX = hashlib.md5(DATA).hexdigest()


def _algos(found: Sequence[ServerDigest]) -> list[tuple[str, str]]:
    return [(d.algorithm, d.hexdigest) for d in found]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"sha-256=:{SHA256_B64}:", [("sha256", SHA256_HEX)]),
        (f"SHA-256=:{SHA256_B64}:", [("sha256", SHA256_HEX)]),  # lenient on case
        (f"sha-256=:{SHA256_B64}:;note=1", [("sha256", SHA256_HEX)]),  # parameter
        (
            f"sha-512=:{SHA512_B64}:, sha-256=:{SHA256_B64}:",
            [("sha512", hashlib.sha512(DATA).hexdigest()), ("sha256", SHA256_HEX)],
        ),
        (f"md5=:{MD5_B64}:", []),  # deprecated in RFC 9530: not trusted
        (f"crc32c=:AAAAAA==:, sha-256=:{SHA256_B64}:", [("sha256", SHA256_HEX)]),
        (f"sha-256={SHA256_B64}", []),  # not a byte sequence
        ("sha-256=:not base64!:", []),
        (f"sha-256=:{MD5_B64}:", []),  # 16 bytes is no sha-256
        ("sha-256=::", []),
        ("", []),
        (",,,=", []),
        ("sha-256", []),
    ],
)
def test_digest_field_table(value: str, expected: list[tuple[str, str]]) -> None:
    assert _algos(parse_digest_field(value, "Repr-Digest", whole=True)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"crc32c=n03x6A==,md5={MD5_B64}", [("md5", MD5_HEX)]),
        (f"md5={MD5_B64}", [("md5", MD5_HEX)]),
        ("crc32c=n03x6A==", []),  # no stdlib CRC-32C: ignored
        ("md5=short", []),
        ("md5=", []),
        ("nonsense", []),
    ],
)
def test_goog_hash_table(value: str, expected: list[tuple[str, str]]) -> None:
    assert _algos(parse_goog_hash(value)) == expected


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (SHA256_B64, None, [("sha256", SHA256_HEX)]),
        (SHA256_B64, "FULL_OBJECT", [("sha256", SHA256_HEX)]),
        (SHA256_B64, "COMPOSITE", []),  # a checksum of parts' checksums
        (SHA256_B64 + "-3", None, []),  # a multipart upload's
        (MD5_B64, None, []),
        ("!!", None, []),
    ],
)
def test_amz_sha256_table(
    value: str, kind: str | None, expected: list[tuple[str, str]]
) -> None:
    assert _algos(parse_amz_sha256(value, kind)) == expected


def _getall(headers: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    lowered = {k.lower(): v for k, v in headers.items()}
    return lambda name: lowered.get(name.lower(), [])


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, []),
        ({"Repr-Digest": [f"sha-256=:{SHA256_B64}:"]}, [("Repr-Digest", True)]),
        ({"Content-Digest": [f"sha-256=:{SHA256_B64}:"]}, [("Content-Digest", False)]),
        # a content coding: the body is not the file's bytes as a whole
        (
            {
                "Content-Digest": [f"sha-256=:{SHA256_B64}:"],
                "Content-Encoding": ["gzip"],
            },
            [],
        ),
        (
            {
                "Repr-Digest": [f"sha-256=:{SHA256_B64}:"],
                "Content-Encoding": ["gzip"],
            },
            [("Repr-Digest", True)],
        ),
        # GCS sends two x-goog-hash headers
        (
            {"x-goog-hash": ["crc32c=n03x6A==", f"md5={MD5_B64}"]},
            [("x-goog-hash", True)],
        ),
        # stored gzip, served decoded (decompressive transcoding): not ours
        (
            {
                "x-goog-hash": [f"md5={MD5_B64}"],
                "x-goog-stored-content-encoding": ["gzip"],
            },
            [],
        ),
        (
            {
                "x-goog-hash": [f"md5={MD5_B64}"],
                "x-goog-stored-content-encoding": ["gzip"],
                "Content-Encoding": ["gzip"],
            },
            [("x-goog-hash", True)],
        ),
        (
            {"x-amz-checksum-sha256": [SHA256_B64]},
            [("x-amz-checksum-sha256", True)],
        ),
        (
            {
                "x-amz-checksum-sha256": [SHA256_B64],
                "x-amz-checksum-type": ["COMPOSITE"],
            },
            [],
        ),
        ({"Repr-Digest": ["garbage"], "x-goog-hash": ["garbage"]}, []),
    ],
)
def test_server_digests_table(
    headers: dict[str, list[str]], expected: list[tuple[str, bool]]
) -> None:
    found = server_digests(_getall(headers))
    assert [(d.header, d.whole) for d in found] == expected


REPR = ServerDigest("sha256", "a" * 64, "Repr-Digest", True)
CONTENT = ServerDigest("sha512", "b" * 128, "Content-Digest", False)
GOOG = ServerDigest("md5", "c" * 32, "x-goog-hash", True)


@pytest.mark.parametrize(
    ("digests", "whole_body", "expected"),
    [
        ((), True, None),
        ((REPR,), True, ("sha256", "the Repr-Digest header")),
        ((REPR,), False, ("sha256", "the Repr-Digest header")),
        ((CONTENT,), True, ("sha512", "the Content-Digest header")),
        ((CONTENT,), False, None),  # a 206: its body is not the whole file
        ((GOOG, REPR, CONTENT), True, ("sha512", "the Content-Digest header")),
        ((GOOG, REPR, CONTENT), False, ("sha256", "the Repr-Digest header")),
        ((GOOG,), False, ("md5", "the x-goog-hash header")),
    ],
)
def test_expected_digest_table(
    digests: tuple[ServerDigest, ...],
    whole_body: bool,
    expected: tuple[str, str] | None,
) -> None:
    got = expected_digest(digests, whole_body=whole_body)
    assert (None if got is None else (got.algorithm, got.source)) == expected


def test_the_manifest_checksum_wins_over_a_server_digest() -> None:
    own = Checksum("md5", "d" * 32)
    entry = Entry("http://h.test/a.bin", checksum=own)
    assert with_server_digest(entry, (REPR,), whole_body=True).checksum is own
    bare = Entry("http://h.test/a.bin")
    got = with_server_digest(bare, (REPR,), whole_body=True).checksum
    assert got == Checksum("sha256", "a" * 64)


@pytest.mark.parametrize(
    ("url", "headers", "asked"),
    [
        ("https://bucket.s3.amazonaws.com/a.bin", {}, True),
        ("https://s3.us-east-1.amazonaws.com/bucket/a.bin", {}, True),
        ("https://bucket.s3-accelerate.amazonaws.com/a.bin", {}, True),
        ("https://bucket.s3.dualstack.eu-west-1.amazonaws.com/a", {}, True),
        # presigned (SigV4, SigV2): an unsigned x-amz-* header gets a 403
        (
            "https://b.s3.amazonaws.com/a?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-SignedHeaders=host&X-Amz-Signature=abc",
            {},
            False,
        ),
        ("https://b.s3.amazonaws.com/a?AWSAccessKeyId=K&Signature=s", {}, False),
        # signed by the caller's Authorization header: the same
        ("https://b.s3.amazonaws.com/a", {"authorization": "AWS4-HMAC..."}, False),
        ("https://b.s3.amazonaws.com/a", {"X-Amz-Checksum-Mode": "ENABLED"}, False),
        # not S3
        ("https://ec2.us-east-1.amazonaws.com/a", {}, False),
        ("https://example.org/a.bin", {}, False),
        ("https://s3.example.org/a.bin", {}, False),
        ("https://amazonaws.com.evil.test/s3/a", {}, False),
        ("http://127.0.0.1:8080/a.bin", {}, False),
    ],
)
def test_checksum_request_table(url: str, headers: dict[str, str], asked: bool) -> None:
    got = checksum_request(url, headers)
    assert got == ({"x-amz-checksum-mode": "ENABLED"} if asked else {})


# -- over HTTP ----------------------------------------------------------------


def _entry(origin: FileServer, name: str, **kw: object) -> Entry:
    return Entry(origin.url(name), path=name, **kw)  # type: ignore[arg-type]


async def _get(tmp_path: Path, entry: Entry, **options: object):  # type: ignore[no-untyped-def]
    async with Downloader(tmp_path, retry_wait=0.01, **options) as dl:  # type: ignore[arg-type]
        report = await dl.download([entry])
    return report.results[0]


@pytest.mark.parametrize(
    ("header", "algorithm"),
    [
        ("Repr-Digest", "sha256"),
        ("Content-Digest", "sha512"),
        ("x-goog-hash", "md5"),
    ],
)
@pytest.mark.parametrize("name", ["small.bin", "big.bin"])  # one body / a part
async def test_a_right_server_digest_is_verified(
    origin: FileServer, tmp_path: Path, header: str, algorithm: str, name: str
) -> None:
    origin.faults[name] = Faults(digests=(header,))
    result = await _get(tmp_path, _entry(origin, name), split=1)
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / name) == sha256(origin.files[name])
    want = hashlib.new(algorithm, origin.files[name]).hexdigest()
    assert result.checksum == f"{algorithm}:{want}"


@pytest.mark.parametrize("header", ["Repr-Digest", "Content-Digest", "x-goog-hash"])
@pytest.mark.parametrize("name", ["small.bin", "big.bin"])
async def test_a_wrong_server_digest_is_retried_then_fails_naming_the_header(
    origin: FileServer, tmp_path: Path, header: str, name: str
) -> None:
    origin.faults[name] = Faults(digests=(header,), wrong_digests=99)
    result = await _get(tmp_path, _entry(origin, name), retries=2, split=1)
    assert result.status == "failed"
    assert result.error is not None
    assert "checksum mismatch" in result.error
    assert f"(from the {header} header)" in result.error
    assert len(gets(origin, name)) == 3  # the first try and two retries
    assert list(tmp_path.iterdir()) == []  # nothing published, no part kept


async def test_a_corrupt_transfer_is_retried_and_then_succeeds(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["blob.bin"] = Faults(digests=("Repr-Digest",), wrong_digests=1)
    result = await _get(tmp_path, _entry(origin, "blob.bin"), retries=2)
    assert result.status == "downloaded", result.error
    assert result.attempts == 2
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_a_split_download_is_verified_by_repr_digest(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["big.bin"] = Faults(digests=("Repr-Digest",), wrong_digests=99)
    entry = _entry(origin, "big.bin")
    result = await _get(tmp_path, entry, retries=0, split=3, min_split_size=256 * 1024)
    assert result.status == "failed"
    assert "(from the Repr-Digest header)" in (result.error or "")
    assert not (tmp_path / "big.bin").exists()


async def test_repr_digest_verifies_a_resumed_file_once_whole(
    origin: FileServer, tmp_path: Path
) -> None:
    """The 206 of a resume carries Repr-Digest: the whole file is checked,
    the bytes kept from before included (a wrong one fails it)."""
    name = "big.bin"
    origin.faults[name] = Faults(digests=("Repr-Digest",), drop_after=1_000_000)
    result = await _get(tmp_path, _entry(origin, name), split=1)
    assert result.status == "downloaded", result.error
    assert result.attempts == 2
    assert "Range" in gets(origin, name)[1].headers
    assert file_sha256(tmp_path / name) == sha256(origin.files[name])
    assert result.checksum == f"sha256:{sha256(origin.files[name])}"


async def test_content_digest_is_not_checked_against_a_resumed_range(
    origin: FileServer, tmp_path: Path
) -> None:
    """Content-Digest of a 206 is of its range only; the file is still right."""
    name = "big.bin"
    origin.faults[name] = Faults(digests=("Content-Digest",), drop_after=1_000_000)
    result = await _get(tmp_path, _entry(origin, name), split=1)
    assert result.status == "downloaded", result.error
    assert result.checksum is None  # nothing covered the whole file
    assert file_sha256(tmp_path / name) == sha256(origin.files[name])


async def test_the_manifest_checksum_is_the_authority(
    origin: FileServer, tmp_path: Path
) -> None:
    """A wrong header does not fail bytes that match the user's checksum."""
    name = "blob.bin"
    origin.faults[name] = Faults(digests=("Repr-Digest",), wrong_digests=99)
    right = Checksum("sha256", sha256(origin.files[name]))
    result = await _get(tmp_path, _entry(origin, name, checksum=right))
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / name) == sha256(origin.files[name])


async def test_amz_checksum_is_sent_only_when_asked_and_then_verified(
    origin: FileServer, tmp_path: Path
) -> None:
    name = "blob.bin"
    origin.faults[name] = Faults(digests=("x-amz-checksum-sha256",), wrong_digests=99)
    plain = await _get(tmp_path / "plain", _entry(origin, name))
    assert plain.status == "downloaded"  # not asked (not S3): nothing to check
    assert "x-amz-checksum-mode" not in gets(origin, name)[0].headers
    asked = await _get(
        tmp_path / "asked",
        _entry(origin, name),
        retries=0,
        headers={"x-amz-checksum-mode": "ENABLED"},
    )
    assert asked.status == "failed"
    assert "(from the x-amz-checksum-sha256 header)" in (asked.error or "")
    origin.faults[name].wrong_digests = 0
    good = await _get(
        tmp_path / "good",
        _entry(origin, name),
        headers={"x-amz-checksum-mode": "ENABLED"},
    )
    assert good.status == "downloaded", good.error
    assert good.checksum == f"sha256:{sha256(origin.files[name])}"
    assert file_sha256(tmp_path / "good" / name) == sha256(origin.files[name])


async def test_a_malformed_digest_header_is_ignored(
    origin: FileServer, tmp_path: Path
) -> None:
    name = "small.bin"
    origin.faults[name] = Faults(
        headers={"Repr-Digest": "sha-256=:!!:", "x-goog-hash": "md5=zz"}
    )
    result = await _get(tmp_path, _entry(origin, name))
    assert result.status == "downloaded", result.error
    assert result.checksum is None
    assert file_sha256(tmp_path / name) == sha256(origin.files[name])
