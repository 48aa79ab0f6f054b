"""Names too long for any disk are refused at check time, not at write time.

A name over 255 bytes, or a path over 4000, is an error (exit 2, FILE:LINE)
before any request, not an ENAMETOOLONG OSError once bytes have arrived.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from downloader._exceptions import ManifestError
from downloader._manifest import check_manifests, check_path
from downloader._portable import NAME_MAX, PATH_MAX, SIDECAR, length_problem
from downloader.testing import FileServer

from .test_cli import assert_bytes, jsonl, run_cli

ROOM = NAME_MAX - len(SIDECAR)  # the longest final file name: 240 bytes
E_ACUTE = "\u00e9"  # é: two bytes in UTF-8


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


# -- through the command line ------------------------------------------------


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
