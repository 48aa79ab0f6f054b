"""--shard K/N: a stable partition of a manifest, whatever its order."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import downloader
from downloader import ManifestError, _cli
from downloader._manifest.fields import _to_entry, quick_path
from downloader._manifest.paths import _PLAIN_PATH, check_path
from downloader._manifest.shard import Shard, shard_of
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
    assert [shard_of(p, 7) for p in ("a.bin", "x/y/z.tar", "ü/ß.txt")] == [3, 6, 1]
    assert shard_of("a.bin", 1) == 0
    # Names one file on macOS/Windows share a shard: no two shards write it.
    assert shard_of("A.BIN", 7) == 3
    assert shard_of("Ü/SS.txt", 7) == 1
    assert shard_of("u\u0308/ß.txt", 7) == 1  # decomposed ü


def test_a_shard_warns_about_paths_only_case_tells_apart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lines = [{"url": f"http://127.0.0.1:9/{i}", "path": p} for i, p in enumerate(PATHS)]
    lines.append({"url": "http://127.0.0.1:9/upper", "path": PATHS[9].upper()})
    manifest = write_jsonl(tmp_path / "m.jsonl", lines)
    owner = shard_of(PATHS[9], 5)

    assert _cli.main(["plan", "-i", str(manifest), "--shard", f"{owner}/5"]) == 0
    err = caplog.text
    assert f"m.jsonl:{len(lines)}: path {PATHS[9].upper()!r}" in err
    assert "differ only in letter case" in err


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


def test_a_bad_entry_stops_the_shard_that_owns_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Each shard checks its own entries in full; lines no shard can place
    # (not JSON at all) stop every shard.
    lines = [{"url": f"http://127.0.0.1:9/{i}", "path": p} for i, p in enumerate(PATHS)]
    lines[7]["sha256"] = "not-hex"
    manifest = write_jsonl(tmp_path / "m.jsonl", lines)
    owner = shard_of(PATHS[7], 4)

    for k in range(4):
        code = _cli.main(["plan", "-i", str(manifest), "--shard", f"{k}/4"])
        err = capsys.readouterr().err
        if k == owner:
            assert code == 2
            assert "m.jsonl:8:" in err
        else:
            assert code == 0, err

    del lines[7]["sha256"]
    write_jsonl(manifest, lines)
    with manifest.open("a") as f:
        f.write("{not json\n")
    for k in range(4):
        assert _cli.main(["plan", "-i", str(manifest), "--shard", f"{k}/4"]) == 2
        assert f"m.jsonl:{len(lines) + 1}: not valid JSON" in capsys.readouterr().err


_text = st.lists(
    st.sampled_from([*"ab/.%2e ü\\:\t~?#\xa0\u2003\u3000", "%2F", "..", "//", " "]),
    max_size=8,
).map("".join)
_url = st.one_of(
    st.builds(lambda p: f"http://h/{p}", _text),
    st.builds(lambda p: f" http://h/{p} ", _text),
    _text,
)
_item = st.one_of(
    _url,
    st.fixed_dictionaries(
        {"url": _url},
        optional={"path": st.one_of(_text, st.none(), st.integers()), "x": _text},
    ),
)


@given(item=_item, default_path=st.one_of(st.none(), _text))
def test_quick_path_agrees_with_the_full_check(
    item: object, default_path: str | None
) -> None:
    # A shard skips an entry on quick_path alone: it must never disagree
    # with the path the full check gives, or the entry would be lost.
    defaults = None if default_path is None else {"path": default_path}
    quick = quick_path(item, defaults)
    try:
        entry = _to_entry(item, defaults, "m", 1)
    except ManifestError:
        return  # refused: the owning shard (or every shard) reports it
    assert quick is None or quick == entry.path
    if isinstance(item, dict) and isinstance(item.get("path"), str):
        assert quick == entry.path  # the common case stays on the fast path


@given(st.lists(st.sampled_from([*"a.Z9_-/ü:\\ ", "..", "//"]), max_size=12))
def test_the_fast_path_check_only_takes_normal_paths(chars: list[str]) -> None:
    # check_path returns plain ASCII paths as they are (millions per shard):
    # only ones the full rules would leave unchanged may take that shortcut.
    path = "".join(chars)
    if _PLAIN_PATH.fullmatch(path):
        parts = path.split("/")
        assert "" not in parts
        assert "." not in parts
        assert ".." not in parts
        assert not any(c in path for c in ":\\ ")
        assert check_path(path) == path
