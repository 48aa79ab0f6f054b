"""--base-url: manifests of relative paths (Common Crawl's warc.paths.gz) over HTTP."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path
from typing import Any

import pytest

from downloader import Downloader
from downloader._exceptions import ManifestError
from downloader._manifest import check_base_url, iter_manifest
from downloader._manifest.relative import (
    is_relative,
    join,
    relative_path,
    with_base,
)
from downloader._models import Entry
from downloader.testing import FileServer, make_bytes

from .conftest import file_sha256, sha256
from .test_cli import run_cli

B = "https://data.example.org/"
CC = {  # Common Crawl's layout: a path list, then one folder per segment
    "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz": make_bytes(40_000, "a"),
    "crawl-data/CC-MAIN-2024-10/segments/2/warc/b.warc.gz": make_bytes(70_000, "b"),
}


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://data.commoncrawl.org/", "https://data.commoncrawl.org/"),
        ("https://data.commoncrawl.org", "https://data.commoncrawl.org/"),
        ("http://h:8080/v1", "http://h:8080/v1/"),
        ("http://h/v1//", "http://h/v1/"),
        (" https://h/a/ ", "https://h/a/"),
    ],
)
def test_a_base_url_names_a_folder(given: str, expected: str) -> None:
    assert check_base_url(given) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("data.commoncrawl.org", "must be http:// or https://"),
        ("ftp://h/x/", "must be http:// or https://"),
        ("https:///x", "with a host"),
        ("https://h/x?token=1", "query or a fragment"),
        ("https://h/x#top", "query or a fragment"),
        ("http://h:99999/", "malformed base URL"),
    ],
)
def test_a_bad_base_url_says_why(given: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_base_url(given)


@pytest.mark.parametrize(
    ("url", "relative"),
    [
        ("crawl-data/CC-MAIN-2024-10/x.warc.gz", True),
        ("x.bin", True),
        ("/root/x.bin", True),
        ("//other.host/x.bin", True),
        ("https://h/x.bin", False),
        ("HTTP://h/x.bin", False),
        ("ftp://h/x.bin", False),  # a scheme: the full check refuses it
        ("", False),
        ("   ", False),
        (None, False),
        (42, False),
    ],
)
def test_is_relative(url: object, relative: bool) -> None:
    assert is_relative(url) is relative


@pytest.mark.parametrize(
    ("url", "joined", "path"),
    [
        (
            "crawl-data/a/x.warc.gz",
            B + "crawl-data/a/x.warc.gz",
            "crawl-data/a/x.warc.gz",
        ),
        ("x.bin", B + "x.bin", "x.bin"),
        ("/top/x.bin", "https://data.example.org/top/x.bin", "top/x.bin"),
        ("a/b%20c.bin", B + "a/b%20c.bin", "a/b c.bin"),
        ("a/x.bin?sig=1#f", B + "a/x.bin?sig=1#f", "a/x.bin"),
        ("../x.bin", "https://data.example.org/x.bin", "../x.bin"),  # check refuses
        ("https://elsewhere/x.bin", "https://elsewhere/x.bin", None),
    ],
)
def test_join_and_the_path_kept(url: str, joined: str, path: str | None) -> None:
    assert join(B, url) == joined
    if path is not None:
        assert relative_path(url) == path


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"url": "a/x.bin"}, {"url": B + "a/x.bin", "path": "a/x.bin"}),
        ("a/x.bin", {"url": B + "a/x.bin", "path": "a/x.bin"}),
        ({"url": "a/x.bin", "path": "y.bin"}, {"url": B + "a/x.bin", "path": "y.bin"}),
        ({"url": "a/x.bin", "path": ""}, {"url": B + "a/x.bin", "path": "a/x.bin"}),
        ({"url": "https://h/x.bin"}, {"url": "https://h/x.bin"}),
        (
            {"url": "https://h/x.bin", "mirrors": ["m/x.bin", "https://n/x.bin"]},
            {"url": "https://h/x.bin", "mirrors": [B + "m/x.bin", "https://n/x.bin"]},
        ),
        (
            {"url": "a/x.bin", "mirrors": "m/x.bin https://n/x.bin"},
            {
                "url": B + "a/x.bin",
                "path": "a/x.bin",
                "mirrors": [B + "m/x.bin", "https://n/x.bin"],
            },
        ),
        ({"url": "a/"}, {"url": B + "a/", "path": "a/"}),  # the check refuses it
        ({"url": "?q"}, {"url": B + "?q"}),  # no path: the check refuses it
        ({"path": "x"}, {"path": "x"}),
        ([1, 2], [1, 2]),
        (7, 7),
    ],
)
def test_with_base(item: Any, expected: Any) -> None:
    assert with_base(item, B) == expected


def test_relative_urls_are_joined_and_keep_their_folders(tmp_path: Path) -> None:
    manifest = tmp_path / "warc.paths"
    manifest.write_text(
        "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz\n"
        "https://mirror.test/b.warc.gz\n"
    )

    got = [e for _, e in iter_manifest(manifest, base_url=check_base_url(B))]

    assert got == [
        Entry(
            url=B + "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
            path="crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz",
        ),
        Entry(url="https://mirror.test/b.warc.gz", path="b.warc.gz"),
    ]


def test_a_relative_url_without_a_base_suggests_base_url(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("https://h.test/a.bin\ncrawl-data/x.warc.gz\n")

    with pytest.raises(ManifestError, match=r"m\.txt:2: url .* has no scheme") as e:
        list(iter_manifest(manifest))

    assert "--base-url" in str(e.value)


def test_a_relative_path_climbing_out_is_refused_at_its_line(tmp_path: Path) -> None:
    manifest = tmp_path / "m.txt"
    manifest.write_text("a/x.bin\n../../etc/passwd\n")

    with pytest.raises(ManifestError, match=r"m\.txt:2: .*\.\.") as e:
        list(iter_manifest(manifest, base_url=B))

    assert e.value.line == 2


async def test_a_gz_list_of_relative_paths_with_base_url(
    origin: FileServer, tmp_path: Path
) -> None:
    for name, data in CC.items():
        origin.set_file(name, data)
    manifest = tmp_path / "warc.paths.gz"
    lines = "".join(name + "\n" for name in CC) + origin.url("small.bin") + "\n"
    manifest.write_bytes(gzip.compress(lines.encode()))
    dest = tmp_path / "data"

    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--base-url", origin.base_url + "/", "-q"
    )

    assert code == 0, err
    for name, data in CC.items():
        assert file_sha256(dest / name) == sha256(data)
    assert file_sha256(dest / "small.bin") == sha256(origin.files["small.bin"])
    assert sorted(r.name for r in origin.log if r.method == "GET") == sorted(
        [*CC, "small.bin"]
    )


async def test_plan_reads_relative_paths_with_base_url(
    origin: FileServer, tmp_path: Path
) -> None:
    manifest = tmp_path / "warc.paths.gz"
    manifest.write_bytes(gzip.compress("".join(n + "\n" for n in CC).encode()))

    code, out, err = await run_cli(
        "plan", "-i", manifest, "-d", tmp_path / "data", "--base-url", origin.base_url
    )

    assert code == 0, err
    assert "crawl-data/CC-MAIN-2024-10/segments/1/warc/a.warc.gz" in out + err
    assert origin.log == []


async def test_relative_paths_without_base_url_exit_2(
    origin: FileServer, tmp_path: Path
) -> None:
    manifest = tmp_path / "warc.paths.gz"
    manifest.write_bytes(gzip.compress("".join(n + "\n" for n in CC).encode()))

    code, _, err = await run_cli("get", "-i", manifest, "-d", tmp_path / "d")

    assert code == 2
    assert f"{manifest}:1: url " in err
    assert "give --base-url" in err
    assert "Traceback" not in err
    assert origin.log == []


async def test_a_bad_base_url_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = await run_cli(
        "get", "-i", tmp_path / "m.txt", "--base-url", "data.commoncrawl.org"
    )
    assert code == 2
    assert "--base-url: base URL 'data.commoncrawl.org' must be http://" in err


async def test_the_library_takes_base_url(origin: FileServer, tmp_path: Path) -> None:
    for name, data in CC.items():
        origin.set_file(name, data)
    manifest = tmp_path / "warc.paths.xz"
    manifest.write_bytes(lzma.compress("".join(n + "\n" for n in CC).encode()))

    async with Downloader(tmp_path / "data") as dl:
        report = await dl.download(manifest, base_url=origin.base_url)

    assert report.ok
    for name, data in CC.items():
        assert file_sha256(tmp_path / "data" / name) == sha256(data)


def test_a_shard_sees_the_joined_paths(tmp_path: Path) -> None:
    from downloader._manifest import Shard

    manifest = tmp_path / "m.txt"
    manifest.write_text("".join(f"d{i % 7}/f{i}.bin\n" for i in range(200)))
    every = [e for _, e in iter_manifest(manifest, base_url=B)]
    shards = [Shard.parse(f"{k}/3") for k in range(3)]

    got = [
        [e for _, e in iter_manifest(manifest, base_url=B, in_shard=shard.owns)]
        for shard in shards
    ]

    for shard, entries in zip(shards, got, strict=True):
        assert entries == [e for e in every if shard.owns(e.path)]
    assert sum(map(len, got)) == 200


def test_a_cluster_run_carries_the_base_url(tmp_path: Path) -> None:
    from downloader.distributed import ClusterRun

    manifest = tmp_path / "m.txt"
    manifest.write_text("a/x.bin\n")

    run = ClusterRun(manifest, tmp_path, cluster="local:1", base_url="http://h/v1")

    assert run.sources.base_url == "http://h/v1/"
    assert [e.url for e in run.sources] == ["http://h/v1/a/x.bin"]
