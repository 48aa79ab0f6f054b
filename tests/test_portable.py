"""Output paths that work here but not everywhere, and names too long for any disk.

Windows device names (``con.txt``) and paths that differ only in letter case or
Unicode form (``A.bin``, ``a.bin``) are warnings: on Linux they are fine files,
so the run goes on, but the user learns at check time, naming FILE:LINE, that
the same manifest breaks on Windows or macOS. Names longer than a filesystem
allows are errors (exit 2) before any request, not an OSError at write time.
"""

from __future__ import annotations

import itertools
import logging
import re
from pathlib import Path

import pytest

from downloader._exceptions import ManifestError
from downloader._manifest import (
    MAX_WARNINGS_SHOWN,
    check_entries,
    check_manifests,
    check_manifests_stats,
    check_path,
)
from downloader._manifest.paths import (
    NAME_MAX,
    PATH_MAX,
    SIDECAR,
    fold,
    length_problem,
    part_problem,
    windows_problem,
)
from downloader._models import Entry
from downloader.testing import FileServer, make_bytes

from .test_cli import assert_bytes, jsonl, run_cli

U = "http://h.test/f.bin"
ROOM = NAME_MAX - len(SIDECAR)  # the longest final file name: 240 bytes
E_ACUTE = "\u00e9"  # é, composed
E_DECOMPOSED = "e\u0301"  # é as e + combining acute: NFC makes it E_ACUTE


# -- the pure checks -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("con", "reserved device name"),
        ("CON", "reserved device name"),
        ("data/con.txt", "'con.txt' is a reserved device name"),
        ("Nul.tar.gz", "reserved device name"),
        ("aux", "reserved device name"),
        ("prn.csv", "reserved device name"),
        ("com1", "reserved device name"),
        ("COM9.log", "reserved device name"),
        ("lpt1/x", "'lpt1' is a reserved device name"),
        ("LPT9", "reserved device name"),
        ("com\u00b9", "reserved device name"),  # superscript one: Windows agrees
        ("con .txt", "reserved device name"),  # Windows drops the space
        ("conin$", "reserved device name"),
        ("a/b./c", "'b.' ends in a dot"),
        ("name.", "ends in a dot"),
        ("...", "ends in a dot"),
        ("a /b", "'a ' ends in a space"),
        ("x ", "ends in a space"),
        ("what?.txt", "one of the characters"),
        ("a:b", "one of the characters"),
        ('say "hi"', "one of the characters"),
        ("a|b", "one of the characters"),
        ("<x>", "one of the characters"),
        ("*.bin", "one of the characters"),
    ],
)
def test_windows_problem(path: str, reason: str) -> None:
    problem = windows_problem(path)
    assert problem is not None
    assert reason in problem


@pytest.mark.parametrize(
    "path",
    [
        "console.txt",
        "icon",
        "com10",
        "com0",
        "lpt",
        "con-x",
        "nul_",
        "auxiliary/x",
        "data/a.b.c",
        ".hidden",
        "a b/c d.txt",
        "ü 名前.bin",
    ],
)
def test_windows_accepts(path: str) -> None:
    assert windows_problem(path) is None


def test_the_fast_filter_never_hides_a_problem() -> None:
    """Every path of up to four of these pieces: the filter only saves time."""
    pieces = ["con", "Com1", "lpt\u00b9", "nul", "AUX", "prn", "conin$", "x"]
    pieces += [".", " ", "/", "?", ":", "a.b", "e\u0301"]
    for n in range(1, 5):
        for path in map("".join, itertools.product(pieces, repeat=n)):
            exact = next(filter(None, map(part_problem, path.split("/"))), None)
            assert windows_problem(path) == exact, path


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("A.bin", "a.bin"),
        ("Data/X", "data/x"),
        (E_ACUTE, E_DECOMPOSED),
        ("STRASSE", "stra\u00dfe"),  # casefold: ß is ss
        ("\u00c9t\u00e9", "e\u0301te\u0301"),  # É composed vs é decomposed
    ],
)
def test_fold_matches_what_macos_and_windows_treat_as_one(a: str, b: str) -> None:
    assert a != b
    assert fold(a) == fold(b)


def test_fold_keeps_different_names_apart() -> None:
    assert fold("a/b") != fold("a_b")
    assert fold("e") != fold(E_ACUTE)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a" * (ROOM + 1), f"file name 'aaa{'a' * 29}...' is {ROOM + 1} bytes"),
        ("d/" + "a" * (ROOM + 1), f"at most {ROOM}"),
        (E_ACUTE * (ROOM // 2 + 1), f"is {ROOM + 2} bytes long"),  # bytes, not chars
        ("d" * (NAME_MAX + 1) + "/x", f"folder name 'ddd{'d' * 29}...' is 256 bytes"),
        ("/".join(["d" * 200] * 20) + "/x", f"at most {PATH_MAX:,} are allowed"),
    ],
)
def test_too_long_is_rejected(path: str, reason: str) -> None:
    problem = length_problem(path)
    assert problem is not None
    assert reason in problem
    with pytest.raises(ValueError, match=re.escape(reason)):
        check_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "a" * ROOM,
        E_ACUTE * (ROOM // 2),
        "d" * NAME_MAX + "/x",  # folders have no .part beside them
        "/".join(["d" * 100] * 39) + "/x",  # 3,941 bytes
    ],
)
def test_long_but_possible_is_accepted(path: str) -> None:
    assert length_problem(path) is None
    assert check_path(path) == path


def test_a_long_name_from_the_url_is_rejected_too(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text(f"http://h.test/{'n' * 300}.bin\n")
    with pytest.raises(ManifestError, match=r"m\.txt:1: no path given .* 304 bytes"):
        check_manifests([manifest])


# -- warnings while checking -------------------------------------------------


def write_jsonl(tmp_path: Path, paths: list[str], name: str = "m.jsonl") -> Path:
    return jsonl(tmp_path / name, [{"url": U, "path": p} for p in paths])


def test_windows_names_are_warnings_with_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = write_jsonl(tmp_path, ["ok.bin", "data/con.txt", "fine/x", "b."])
    with caplog.at_level(logging.WARNING):
        stats = check_manifests_stats([manifest])

    assert stats.count == 4
    assert stats.warning_count == 2
    assert stats.warnings == (
        f"{manifest}:2: path 'data/con.txt' will not work on Windows: "
        "'con.txt' is a reserved device name",
        f"{manifest}:4: path 'b.' will not work on Windows: 'b.' ends in a dot",
    )
    assert [r.getMessage() for r in caplog.records] == list(stats.warnings)
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_warnings_are_bounded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    manifest = write_jsonl(tmp_path, [f"{i}/aux.txt" for i in range(1000)])
    with caplog.at_level(logging.WARNING):
        stats = check_manifests_stats([manifest])

    assert stats.warning_count == 1000
    assert len(stats.warnings) == MAX_WARNINGS_SHOWN
    assert stats.warnings[-1].startswith(f"{manifest}:{MAX_WARNINGS_SHOWN}: ")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == MAX_WARNINGS_SHOWN + 1
    assert messages[-1] == f"... and {1000 - MAX_WARNINGS_SHOWN} more such warnings"


def test_case_collision_is_a_warning_naming_both_lines(tmp_path: Path) -> None:
    a = write_jsonl(tmp_path, ["x", "Data/A.bin", "y"], "a.jsonl")
    b = write_jsonl(tmp_path, ["data/a.bin", "z", "DATA/a.BIN"], "b.jsonl")
    stats = check_manifests_stats([a, b])

    assert stats.count == 6
    assert stats.warning_count == 2
    first, second = stats.warnings
    assert first.startswith(f"{b}:1: path 'data/a.bin' and path 'Data/A.bin' ({a}:2)")
    assert "differ only in letter case or Unicode form" in first
    assert "one file on macOS and Windows" in first
    assert second.startswith(f"{b}:3: path 'DATA/a.BIN' and path 'Data/A.bin' ({a}:2)")


def test_unicode_form_collision_is_a_warning(tmp_path: Path) -> None:
    composed, decomposed = f"caf{E_ACUTE}.txt", f"caf{E_DECOMPOSED}.txt"
    manifest = write_jsonl(tmp_path, [composed, decomposed])
    stats = check_manifests_stats([manifest])

    assert stats.warning_count == 1
    assert stats.warnings[0].startswith(f"{manifest}:2: path {decomposed!r}")
    assert f"({manifest}:1)" in stats.warnings[0]


def test_exact_repeat_stays_an_error_among_case_collisions(tmp_path: Path) -> None:
    manifest = write_jsonl(tmp_path, ["a.bin", "A.bin", "b", "a.bin"])
    with pytest.raises(ManifestError, match=r"m\.jsonl:4: path 'a.bin' .*m\.jsonl:1"):
        check_manifests([manifest])


def test_the_second_pass_runs_only_when_folded_digests_meet(tmp_path: Path) -> None:
    calls: list[str] = []

    def counting(path: str) -> int:
        calls.append(path)
        return hash(path)

    manifest = write_jsonl(tmp_path, ["a.bin", "B.bin"])
    assert check_manifests([manifest], _digest=counting) == 2
    assert calls == ["a.bin", "b.bin"]  # one pass, over the folded paths

    calls.clear()
    manifest = write_jsonl(tmp_path, ["a.bin", "A.bin", "c"])
    stats = check_manifests_stats([manifest], _digest=counting)
    assert stats.warning_count == 1
    assert calls == ["a.bin", "a.bin", "c"] * 2  # a second pass to tell them apart


def test_entries_given_in_code_warn_too(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        check_entries([Entry(U, path="x/PRN"), Entry(U, path="a"), Entry(U, path="A")])
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("<entries>:1: path 'x/PRN' will not work on Windows")
    assert messages[1].startswith("<entries>:3: path 'A' and path 'a' (<entries>:2)")


# -- through the command line ------------------------------------------------


async def test_get_warns_but_downloads_windows_names_and_case_twins(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.set_file("upper.bin", make_bytes(5_000, "upper"))
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin"), "path": "data/con.txt"},
            {"url": origin.url("blob.bin"), "path": "Data/A.bin"},
            {"url": origin.url("upper.bin"), "path": "Data/a.bin"},
        ],
    )
    dest = tmp_path / "d"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "--no-progress")

    assert code == 0, err
    assert (
        f"WARNING: {manifest}:1: path 'data/con.txt' will not work on Windows: "
        "'con.txt' is a reserved device name"
    ) in err
    assert (
        f"WARNING: {manifest}:3: path 'Data/a.bin' and path 'Data/A.bin' "
        f"({manifest}:2) differ only in letter case"
    ) in err
    assert_bytes(dest, origin, "small.bin", "data/con.txt")
    assert_bytes(dest, origin, "blob.bin", "Data/A.bin")
    assert_bytes(dest, origin, "upper.bin", "Data/a.bin")


async def test_plan_bounds_the_warnings(origin: FileServer, tmp_path: Path) -> None:
    entries = [{"url": origin.url("small.bin"), "path": f"{i}/nul"} for i in range(25)]
    manifest = jsonl(tmp_path / "m.jsonl", entries)
    code, out, err = await run_cli("plan", "-i", manifest, "-d", tmp_path / "d")

    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("WARNING: ")]
    assert len(warnings) == MAX_WARNINGS_SHOWN + 1
    assert warnings[0] == (
        f"WARNING: {manifest}:1: path '0/nul' will not work on Windows: "
        "'nul' is a reserved device name"
    )
    assert (
        warnings[-1] == f"WARNING: ... and {25 - MAX_WARNINGS_SHOWN} more such warnings"
    )
    assert out.count("new ") == 25


async def test_too_long_a_name_exits_2_before_any_request(
    origin: FileServer, tmp_path: Path
) -> None:
    too_long = "n" * (ROOM + 1)
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin"), "path": "ok.bin"},
            {"url": origin.url("blob.bin"), "path": f"d/{too_long}"},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", tmp_path / "d")

    assert code == 2, err
    assert f"{manifest}:2: file name 'nnn" in err
    assert f"is {ROOM + 1} bytes long; at most {ROOM}" in err
    assert "Traceback" not in err
    assert origin.log == []
    assert not (tmp_path / "d").exists()


async def test_too_long_a_path_exits_2(origin: FileServer, tmp_path: Path) -> None:
    deep = "/".join(["d" * 250] * 17) + "/x.bin"  # 4,272 bytes
    manifest = jsonl(
        tmp_path / "m.jsonl", [{"url": origin.url("small.bin"), "path": deep}]
    )
    code, _, err = await run_cli("plan", "-i", manifest, "-d", tmp_path / "d")

    assert code == 2, err
    assert f"{manifest}:1: path is 4,272 bytes long; at most {PATH_MAX:,}" in err


async def test_the_longest_name_allowed_downloads_with_its_part_files(
    origin: FileServer, tmp_path: Path
) -> None:
    """A 240-byte name leaves room for FINAL.part.state.tmp: the limit is exact."""
    name = "n" * ROOM
    dest = tmp_path / "d"
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": origin.url("big.bin"), "path": name}],  # > 1 MiB: state is saved
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "-s", "1")

    assert code == 0, err
    assert_bytes(dest, origin, "big.bin", name)


def test_a_second_pass_does_not_count_sizes_twice(tmp_path: Path) -> None:
    # Case twins make the checker read the manifest again; sizes add up once.
    sized = [("a.bin", 100), ("A.bin", 200), ("b.bin", 300)]
    manifest = jsonl(
        tmp_path / "sized.jsonl", [{"url": U, "path": p, "size": n} for p, n in sized]
    )
    stats = check_manifests_stats([manifest])

    assert stats.warning_count == 1  # the second pass did run
    assert (stats.count, stats.known_bytes, stats.all_sized) == (3, 600, True)
