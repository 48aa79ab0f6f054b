"""--checksums FILE: sha256sum / md5sum / b2sum files verify the entries they name.

Tables for the line parser in ``_manifest/sums.py``; then the command line
and the library over real HTTP (bytes checked), and bad sums files (exit 2,
FILE:LINE, no request made).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import downloader
from downloader import Entry, ManifestError
from downloader._integrity import Checksum
from downloader._manifest.sums import SumsFile, name_hint, parse_line, split_spec
from downloader.testing import FileServer

from .conftest import file_sha256, sha256
from .test_cli import jsonl, leftovers, run_cli

H64 = "ab" * 32
H32 = "cd" * 16
H40 = "ef" * 20
H128 = "01" * 64


@pytest.mark.parametrize(
    ("line", "hint", "expected"),
    [
        (f"{H64}  a.iso", None, ("a.iso", "sha256", H64)),  # text mode
        (f"{H64} *a.iso", None, ("a.iso", "sha256", H64)),  # binary marker
        (f"{H64} a.iso", None, ("a.iso", "sha256", H64)),  # one space (BSD -r)
        (f"{H64.upper()}  a.iso", None, ("a.iso", "sha256", H64)),
        (f"{H64}  ./sub/a b.iso\r\n", None, ("sub/a b.iso", "sha256", H64)),
        (f"{H32}  a.iso", None, ("a.iso", "md5", H32)),
        (f"{H40}  a.iso", None, ("a.iso", "sha1", H40)),
        (f"{H128}  a.iso", "sha512", ("a.iso", "sha512", H128)),
        (f"{H128}  a.iso", "blake2b", ("a.iso", "blake2b", H128)),
        (f"SHA256 (a.iso) = {H64}", None, ("a.iso", "sha256", H64)),
        (f"MD5 (dir/a.iso) = {H32}", "sha256", ("dir/a.iso", "md5", H32)),  # tag wins
        (f"BLAKE2b (a.iso) = {H128}", None, ("a.iso", "blake2b", H128)),
        (f"SHA512 (a (1).iso) = {H128}", None, ("a (1).iso", "sha512", H128)),
        (f"\\{H64}  back\\\\slash\\nnewline", None, None),  # escaped: refused below
        ("", None, None),
        ("   \n", None, None),
        ("# a comment", None, None),
    ],
)
def test_parse_line_table(
    line: str, hint: str | None, expected: tuple[str, str, str] | None
) -> None:
    if line.startswith("\\"):  # the name unescapes to a backslash: not portable
        with pytest.raises(ValueError, match=r"backslash|control character"):
            parse_line(line, hint)
        return
    got = parse_line(line, hint)
    assert (None if got is None else (got[0], got[1].algorithm, got[1].hexdigest)) == (
        expected
    )


@pytest.mark.parametrize(
    ("line", "hint", "reason"),
    [
        ("just some words", None, "not a checksum line"),
        (f"{H64}", None, "not a checksum line"),  # no path
        (f"{H64}  ", None, "not a checksum line"),
        (f"{H128}  a.iso", None, "sha512 or blake2b"),  # ambiguous, no hint
        ("abc  a.iso", None, "3 hex digits"),
        (f"{H32}  a.iso", "sha256", "want 64 hex digits"),  # the file's name says
        (f"SHA384 (a.iso) = {H64}", None, "unsupported algorithm 'SHA384'"),
        (f"BLAKE2b-256 (a.iso) = {H64}", None, "unsupported algorithm"),
        (f"{H64}  ../escape.iso", None, "'..'"),
        (f"{H64}  /etc/passwd", None, "absolute"),
        (f"{H64}  a/../../b", None, "'..'"),
        (f"{H64} *C:/x.iso", None, "drive"),
    ],
)
def test_parse_line_refuses(line: str, hint: str | None, reason: str) -> None:
    with pytest.raises(ValueError, match=reason.replace("(", r"\(")):
        parse_line(line, hint)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("SHA256SUMS", "sha256"),
        ("SHA512SUMS", "sha512"),
        ("MD5SUMS", "md5"),
        ("SHA1SUMS", "sha1"),
        ("b2sums.txt", "blake2b"),
        ("B2SUMS", "blake2b"),
        ("x.iso.sha512", "sha512"),
        ("release.blake2", "blake2b"),
        ("sha256sum.txt", "sha256"),
        ("checksums.txt", None),
        ("SUMS", None),
    ],
)
def test_name_hint_table(name: str, hint: str | None) -> None:
    assert name_hint(f"some/dir/{name}") == hint


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("SHA256SUMS", (None, "SHA256SUMS")),
        ("sha512:B2SUMS", ("sha512", "B2SUMS")),
        ("BLAKE2B:sums", ("blake2b", "sums")),
        ("C:/sums", (None, "C:/sums")),  # a drive, not an algorithm
        ("odd:name", (None, "odd:name")),
        ("sha256:", (None, "sha256:")),
    ],
)
def test_split_spec_table(spec: str, expected: tuple[str | None, str]) -> None:
    assert split_spec(spec) == expected


def _sums(tmp_path: Path, text: str, name: str = "SHA256SUMS") -> SumsFile:
    path = tmp_path / name
    path.write_text(text)
    return SumsFile(path)


def test_sums_file_errors_name_file_and_line(tmp_path: Path) -> None:
    sums = _sums(tmp_path, f"{H64}  a.iso\n\nnot a line\n")
    with pytest.raises(ManifestError, match=r"SHA256SUMS:3: not a checksum line"):
        sums.load()


def test_one_path_with_two_digests_is_an_error(tmp_path: Path) -> None:
    other = "cd" * 32
    sums = _sums(tmp_path, f"{H64}  a.iso\n{H64}  ./a.iso\n{other}  a.iso\n")
    with pytest.raises(ManifestError, match=r"SHA256SUMS:3: .* another digest at .*:1"):
        sums.load()


def test_apply_and_conflict(tmp_path: Path) -> None:
    sums = _sums(tmp_path, f"{H64}  a.iso\n{H64} *sub/b.iso\n")
    got = sums.apply(Entry("http://h.test/a.iso")).checksum
    assert got == Checksum("sha256", H64)
    assert got is not None
    assert got.source == f"{tmp_path / 'SHA256SUMS'}:1"
    assert sums.apply(Entry("http://h.test/c.iso")).checksum is None  # not named
    own = Checksum("md5", H32)  # another algorithm: the manifest's stays
    assert sums.apply(Entry("http://h.test/a.iso", checksum=own)).checksum is own
    same = Entry("http://h.test/a.iso", checksum=Checksum("sha256", H64))
    assert sums.conflict(same) is None
    other = Entry(
        "http://x/b.iso", path="sub/b.iso", checksum=Checksum("sha256", H32 * 2)
    )
    assert "differs from" in (sums.conflict(other) or "")


# -- over HTTP ----------------------------------------------------------------


def _write_sums(dest: Path, origin: FileServer, names: list[str], **wrong: str) -> Path:
    """A SHA256SUMS (in ``dest``) for ``names``; ``wrong[name]`` is a bad digest."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = [
        f"{wrong.get(n.replace('.', '_'), sha256(origin.files[n]))} *{n}\n"
        for n in names
    ]
    path = dest / "SHA256SUMS"
    path.write_text("".join(lines))
    return path


async def test_get_verifies_what_the_sums_file_names(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    sums = _write_sums(dest, origin, ["small.bin", "blob.bin"], blob_bin="00" * 32)
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": origin.url(n)} for n in ("small.bin", "blob.bin", "big.bin")],
    )
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--checksums", sums, "--retries", "1"
    )
    assert code == 1, err
    assert file_sha256(dest / "small.bin") == sha256(origin.files["small.bin"])
    assert file_sha256(dest / "big.bin") == sha256(origin.files["big.bin"])  # unnamed
    assert not (dest / "blob.bin").exists()
    assert f"(from {sums}:2)" in err
    assert "checksum mismatch: expected sha256:" + "00" * 32 in err
    assert leftovers(dest) == []


async def test_verify_and_plan_read_the_sums_file(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": origin.url(n)} for n in ("small.bin", "blob.bin")],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    good = _write_sums(dest, origin, ["small.bin", "blob.bin"])
    code, out, err = await run_cli(
        "verify", "-i", manifest, "-d", dest, "--checksums", good
    )
    assert code == 0, out + err
    assert "2 ok, 0 bad" in err
    (dest / "blob.bin").write_bytes(b"x" + origin.files["blob.bin"][1:])  # rot
    code, out, err = await run_cli(
        "verify", "-i", manifest, "-d", dest, "--checksums", good
    )
    assert code == 1
    assert (
        f"BAD  blob.bin: present but its checksum differs (expected from {good}:2)"
        in out
    )
    code, out, _ = await run_cli(
        "plan", "-i", manifest, "-d", dest, "--checksums", good
    )
    assert "replace  blob.bin" in out
    # without the sums file, nothing tells: the rotten file counts as complete
    code, out, err = await run_cli("verify", "-i", manifest, "-d", dest)
    assert code == 0, out + err
    # get replaces it, verified
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "--checksums", good)
    assert code == 0, err
    assert file_sha256(dest / "blob.bin") == sha256(origin.files["blob.bin"])


async def test_the_library_takes_checksums(origin: FileServer, tmp_path: Path) -> None:
    sums = _write_sums(tmp_path / "sums", origin, ["small.bin"], small_bin="11" * 32)
    entries = [origin.url("small.bin"), origin.url("blob.bin")]
    report = await _library(entries, tmp_path / "data", sums)
    by_path = {r.path: r for r in report.results}
    assert by_path["small.bin"].status == "failed"
    assert f"(from {sums}:1)" in (by_path["small.bin"].error or "")
    assert by_path["blob.bin"].status == "downloaded"
    assert file_sha256(tmp_path / "data" / "blob.bin") == sha256(
        origin.files["blob.bin"]
    )
    good = _write_sums(tmp_path / "good", origin, ["small.bin"])
    report = await _library(entries, tmp_path / "data", good)
    assert report.ok
    assert report.results[0].checksum is not None or report.results[1].checksum
    data = tmp_path / "data" / "small.bin"
    assert file_sha256(data) == sha256(origin.files["small.bin"])


async def _library(entries: list[str], dest: Path, sums: Path) -> downloader.Report:
    async with downloader.Downloader(dest, retries=0) as dl:
        return await dl.download(entries, checksums=sums)


def _bad_request_count(origin: FileServer) -> int:
    return len(origin.log)


@pytest.mark.parametrize(
    ("text", "name", "expected"),
    [
        ("not a sums line\n", "SHA256SUMS", "SHA256SUMS:1: not a checksum line"),
        (f"{H64}  ok.bin\n{H64}  ../outside.bin\n", "SHA256SUMS", "SHA256SUMS:2:"),
        (f"{H64}  /etc/passwd\n", "SHA256SUMS", "absolute"),
        (
            f"{H128}  ok.bin\n",
            "SUMS",
            "SUMS:1: a 128-digit digest is sha512 or blake2b",
        ),
        (f"{H32}  ok.bin\n", "SHA256SUMS", "SHA256SUMS:1: malformed sha256 checksum"),
        (b"\xff\xfe  ok.bin\n", "SHA256SUMS", "not UTF-8"),
    ],
)
async def test_a_bad_sums_file_stops_before_any_request(
    origin: FileServer, tmp_path: Path, text: str | bytes, name: str, expected: str
) -> None:
    sums = tmp_path / name
    if isinstance(text, bytes):
        sums.write_bytes(text)
    else:
        sums.write_text(text)
    manifest = jsonl(
        tmp_path / "m.jsonl", [{"url": origin.url("small.bin"), "path": "ok.bin"}]
    )
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "--checksums", sums)
    assert code == 2, err
    assert expected in err
    assert "Traceback" not in err
    assert origin.log == []  # not one request
    assert not dest.exists() or list(dest.iterdir()) == []


async def test_a_sums_file_disagreeing_with_the_manifest_is_an_error(
    origin: FileServer, tmp_path: Path
) -> None:
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{H64}  ok.bin\n")
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": origin.url("small.bin"), "path": "ok.bin", "sha256": "cd" * 32}],
    )
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", tmp_path / "d", "--checksums", sums
    )
    assert code == 2, err
    assert "m.jsonl:1: checksum sha256:" in err
    assert f"at {sums}:1; which one is right?" in err
    assert origin.log == []


async def test_missing_sums_file_and_an_explicit_algorithm(
    origin: FileServer, tmp_path: Path
) -> None:
    manifest = jsonl(tmp_path / "m.jsonl", [{"url": origin.url("small.bin")}])
    code, _, err = await run_cli(
        "get", "-i", manifest, "--checksums", tmp_path / "nope"
    )
    assert code == 2
    assert "--checksums" in err
    assert "no such file" in err
    b2 = tmp_path / "checksums.txt"  # no hint in the name: 128 hex is unclear
    b2.write_text(
        hashlib.blake2b(origin.files["small.bin"]).hexdigest() + "  small.bin\n"
    )
    dest = tmp_path / "d"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "--checksums", b2)
    assert code == 2
    assert "--checksums blake2b:FILE" in err
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--checksums", f"blake2b:{b2}"
    )
    assert code == 0, err
    assert file_sha256(dest / "small.bin") == sha256(origin.files["small.bin"])
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", tmp_path / "d2", "--checksums", f"sha512:{b2}"
    )
    assert code == 1  # the wrong algorithm named: a mismatch, said so
    assert "checksum mismatch: expected sha512:" in err
