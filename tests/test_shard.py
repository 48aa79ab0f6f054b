"""--shard K/N: a stable partition of a manifest, whatever its order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

import downloader
from downloader import _cli
from downloader._shard import Shard, shard_of
from downloader.testing import FileServer, make_bytes
from tests.conftest import file_sha256, sha256

PATHS = [
    f"set{i % 7}/{'ü' if i % 3 == 0 else 'u'}/file {i:04d}.bin" for i in range(600)
]


def write_jsonl(path: Path, entries: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def planned(manifest: Path, shard: str, capsys: pytest.CaptureFixture[str]) -> set[str]:
    """The paths `downloader plan --shard` lists (through the real CLI)."""
    assert _cli.main(["plan", "-i", str(manifest), "--shard", shard]) == 0
    out = capsys.readouterr().out.splitlines()
    return {line.split(None, 1)[1] for line in out}


def test_shard_of_is_pinned() -> None:
    # Shards of one job array may run different versions: the hash must not move.
    assert [shard_of(p, 7) for p in ("a.bin", "x/y/z.tar", "ü/ß.txt")] == [3, 6, 3]
    assert shard_of("a.bin", 1) == 0


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_shards_partition_a_manifest_exactly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], count: int
) -> None:
    entries = [
        {"url": f"http://127.0.0.1:9/{i}", "path": p} for i, p in enumerate(PATHS)
    ]
    manifest = write_jsonl(tmp_path / "m.jsonl", entries)
    shuffled = entries[:]
    random.Random(count).shuffle(shuffled)
    other_order = write_jsonl(tmp_path / "shuffled.jsonl", shuffled)

    shards = [planned(manifest, f"{k}/{count}", capsys) for k in range(count)]

    assert sum(len(s) for s in shards) == len(PATHS)  # no entry twice
    assert set().union(*shards) == set(PATHS)  # none missing
    assert all(shards)  # 600 entries: every shard gets some
    for k, owned in enumerate(shards):  # the manifest order does not matter
        assert planned(other_order, f"{k}/{count}", capsys) == owned


def test_shard_sees_a_duplicate_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two entries for one path hash alike, so the shard owning them sees both.
    lines = [{"url": f"http://127.0.0.1:9/{i}", "path": p} for i, p in enumerate(PATHS)]
    lines.append({"url": "http://127.0.0.1:9/again", "path": PATHS[5]})
    manifest = write_jsonl(tmp_path / "m.jsonl", lines)
    owner = shard_of(PATHS[5], 3)

    code = _cli.main(["plan", "-i", str(manifest), "--shard", f"{owner}/3"])

    assert code == 2
    err = capsys.readouterr().err
    assert f"m.jsonl:{len(lines)}:" in err
    assert f"already the output of {manifest}:6" in err


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("3/3", "shard 3/3 does not exist"),
        ("1/0", "shard 1/0 does not exist"),
        ("-1/2", "want a shard as K/N"),
        ("2", "want a shard as K/N"),
        ("a/b", "want a shard as K/N"),
    ],
)
def test_bad_shard_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], given: str, said: str
) -> None:
    manifest = write_jsonl(tmp_path / "m.jsonl", [{"url": "http://127.0.0.1:9/a"}])
    with pytest.raises(SystemExit) as stop:
        _cli.main(["get", "-i", str(manifest), f"--shard={given}"])
    assert stop.value.code == 2
    assert said in capsys.readouterr().err


def test_shard_parse_accepts_the_library_forms() -> None:
    assert Shard.parse("1/4") == Shard.parse((1, 4)) == Shard(1, 4)
    assert str(Shard.parse(" 2 / 5 ")) == "2/5"
    with pytest.raises(ValueError, match="does not exist"):
        Shard.parse((4, 4))


async def test_shards_of_a_job_array_fetch_every_file_once(
    aiohttp_server: object, tmp_path: Path
) -> None:
    files = {f"f{i:02d}.bin": make_bytes(20_000 + i, i) for i in range(24)}
    server = FileServer(files=files)
    test_server = await aiohttp_server(server.app())  # type: ignore[operator]
    server.base_url = str(test_server.make_url("")).rstrip("/")
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": server.url(name), "path": f"out/{name}", "sha256": sha256(data)}
            for name, data in files.items()
        ],
    )
    dest = tmp_path / "data"

    counts = []
    for k in range(3):
        async with downloader.Downloader(dest, jobs=4) as dl:
            report = await dl.download(manifest, shard=f"{k}/3")
        assert report.ok
        assert {r.path for r in report.results} == {
            f"out/{n}" for n in files if shard_of(f"out/{n}", 3) == k
        }
        counts.append(len(report.results))

    assert sum(counts) == len(files)
    for name, data in files.items():
        assert file_sha256(dest / "out" / name) == sha256(data)
        assert len([r for r in server.log if r.name == name]) == 1  # fetched once


async def test_sharded_progress_counts_only_the_shard(
    aiohttp_server: object, tmp_path: Path
) -> None:
    files = {f"g{i}.bin": make_bytes(1000, i) for i in range(30)}
    server = FileServer(files=files)
    test_server = await aiohttp_server(server.app())  # type: ignore[operator]
    server.base_url = str(test_server.make_url("")).rstrip("/")
    manifest = write_jsonl(
        tmp_path / "m.jsonl",
        [{"url": server.url(n), "size": 1000} for n in files],
    )
    seen: list[tuple[int, int | None]] = []

    class Sink(downloader.NullProgress):
        def run_started(self, files: int, total_bytes: int | None) -> None:
            seen.append((files, total_bytes))

    owned = sum(1 for n in files if shard_of(n, 2) == 1)
    async with downloader.Downloader(tmp_path / "d", progress=Sink()) as dl:
        report = await dl.download(manifest, shard=(1, 2))

    assert seen == [(owned, owned * 1000)]
    assert len(report.results) == owned
    for result in report.results:
        assert file_sha256(tmp_path / "d" / result.path) == sha256(files[result.path])
