"""Lock files (--lock) and refreshes (--refresh), over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from downloader import Downloader, Entry, ManifestError
from downloader._integrity import Checksum
from downloader._lockfile import read_known
from downloader._policy import Known, conditional_headers, known_from_record
from downloader._policy import lock_record as make_record
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256
from .test_cli import run_cli

SECRET = "s3cr3t-token-value"


def _records(lock: Path) -> dict[str, dict[str, Any]]:
    lines = lock.read_text().splitlines()
    return {r["path"]: r for r in map(json.loads, lines)}


def _entries(origin: FileServer) -> list[Entry]:
    small, blob = origin.files["small.bin"], origin.files["blob.bin"]
    return [
        # small body, its md5 checked: sha256 beside it, from the same bytes
        Entry(
            origin.url("small.bin"),
            checksum=Checksum("md5", hashlib.md5(small).hexdigest()),
            headers={"Authorization": f"Bearer {SECRET}"},
        ),
        Entry(origin.url("blob.bin")),  # no checksum: hashed for the lock only
        Entry(origin.url("big.bin"), size=3_000_000),  # one stream into a part
        Entry(origin.url("moved.bin"), path="moved.bin", size=len(blob)),
    ]


async def _get(dest: Path, entries: Any, lock: Path, **options: Any) -> Any:
    async with Downloader(dest, lock=lock, retry_wait=0, **options) as dl:
        return await dl.download(entries)


# -- lock files ------------------------------------------------------------


async def test_lock_pins_every_complete_file(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.redirects["moved.bin"] = origin.url("blob.bin")
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    report = await _get(dest, _entries(origin), lock, headers={"X-Key": SECRET})

    assert report.ok
    records = _records(lock)
    assert sorted(records) == ["big.bin", "blob.bin", "moved.bin", "small.bin"]
    for path, record in records.items():
        served = "blob.bin" if path == "moved.bin" else path
        assert file_sha256(dest / path) == sha256(origin.files[served])
        assert record["sha256"] == sha256(origin.files[served])
        assert record["size"] == len(origin.files[served])
        state = origin._state[served]
        assert record["etag"] == state.etag
        assert record["last_modified"] == formatdate(state.mtime, usegmt=True)
    # the entry's URL, not where it redirected
    assert records["moved.bin"]["url"] == origin.url("moved.bin")
    # results carry the same fields; no header value anywhere
    assert {r.path: r.sha256 for r in report.results} == {
        p: r["sha256"] for p, r in records.items()
    }
    assert SECRET not in lock.read_text()
    assert SECRET not in json.dumps(report.to_dict())
    assert not lock.with_name("data.lock.tmp").exists()


async def test_a_rerun_rewrites_the_lock_with_skipped_files_too(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in ("small.bin", "blob.bin")]
    await _get(dest, entries, lock)
    first = _records(lock)
    lock.write_text("")  # whatever was there: the rerun writes it whole

    report = await _get(dest, [*entries, Entry(origin.url("big.bin"))], lock)

    assert sorted(r.status for r in report.results) == [
        "downloaded",
        "skipped",
        "skipped",
    ]
    records = _records(lock)
    assert sorted(records) == ["big.bin", "blob.bin", "small.bin"]
    for path in ("small.bin", "blob.bin"):  # hashed from the disk on a skip
        assert records[path]["sha256"] == first[path]["sha256"]
        assert records[path]["sha256"] == sha256(origin.files[path])
    assert records["big.bin"]["sha256"] == sha256(origin.files["big.bin"])


async def test_a_stopped_run_keeps_the_previous_lock(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    lock.write_text("previous\n")
    entries = [Entry(origin.url(n)) for n in ("small.bin", "blob.bin", "big.bin")]
    async with Downloader(dest, lock=lock, jobs=1) as dl:
        results = dl.stream(entries)
        async with contextlib.aclosing(results):
            first = await anext(results)

    assert lock.read_text() == "previous\n"
    written = lock.with_name("data.lock.tmp").read_text().splitlines()
    assert json.loads(written[0])["sha256"] == sha256(origin.files[first.path])
    assert file_sha256(dest / first.path) == sha256(origin.files[first.path])


async def test_the_lock_is_a_manifest_for_get_and_verify(
    origin: FileServer, tmp_path: Path
) -> None:
    lock = tmp_path / "data.lock"
    entries = [Entry(origin.url(n)) for n in ("small.bin", "blob.bin", "big.bin")]
    await _get(tmp_path / "data", entries, lock)

    code, _, err = await run_cli("get", "-i", lock, "-d", tmp_path / "again", "-q")
    assert code == 0, err
    for name in ("small.bin", "blob.bin", "big.bin"):
        assert file_sha256(tmp_path / "again" / name) == sha256(origin.files[name])
    code, _, err = await run_cli("verify", "-i", lock, "-d", tmp_path / "again")
    assert (code, err.strip()) == (0, "verify: 3 ok, 0 bad")


async def test_a_lock_edited_by_hand(origin: FileServer, tmp_path: Path) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in ("small.bin", "blob.bin")]
    await _get(dest, entries, lock)
    lines = lock.read_text().splitlines()

    changed = json.loads(lines[1])
    changed["sha256"] = "0" * 64
    edited = tmp_path / "edited.lock"
    edited.write_text(lines[0] + "\n" + json.dumps(changed) + "\n")
    code, out, err = await run_cli("verify", "-i", edited, "-d", dest)
    assert code == 1, err
    assert out.startswith(f"BAD  {changed['path']}: "), out
    assert "checksum" in out or "sha256" in out, out

    broken = tmp_path / "broken.lock"
    broken.write_text(lines[0] + "\n" + lines[1][:-5] + "\n")
    for command in ("get", "verify"):
        code, _, err = await run_cli(command, "-i", broken, "-d", dest)
        assert code == 2, err
        assert f"{broken}:2: " in err, err


def test_reading_a_lock_back(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    good = {"url": "http://h/a", "path": "a", "size": 3, "sha256": "ab" * 32}
    # A killed writer leaves a last line cut short: skipped, the rest is read.
    lock.write_text(json.dumps(good) + "\n" + json.dumps(good | {"path": "b"})[:20])
    assert read_known(lock) == {"a": Known(3, "ab" * 32)}
    # ...but a bad line with its newline was written so: an error naming it.
    lock.write_text("\n" + json.dumps(good)[:20] + "\n" + json.dumps(good) + "\n")
    with pytest.raises(ManifestError, match=r"x\.lock:2: not a lock record"):
        read_known(lock)
    assert read_known(tmp_path / "none.lock") == {}  # a first run


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        ({"path": "a", "size": 1}, ("a", Known(1))),
        (
            {"path": "a", "etag": '"x"', "last_modified": "Mon", "sha256": "f"},
            ("a", Known(None, "f", '"x"', "Mon")),
        ),
        ({"path": ""}, "needs a path"),
        ({"url": "http://h/a"}, "needs a path"),
        ({"path": "a", "size": -1}, "size must be"),
        ({"path": "a", "size": True}, "size must be"),
        ({"path": "a", "etag": 5}, "etag must be a string"),
        (["a"], "must be an object"),
    ],
)
def test_known_from_record(record: Any, expected: Any) -> None:
    if isinstance(expected, str):
        with pytest.raises(ValueError, match=expected):
            known_from_record(record)
    else:
        assert known_from_record(record) == expected


@pytest.mark.parametrize(
    ("args", "extra", "expected"),
    [
        (("u", "p", 5, "h"), {}, {"url": "u", "path": "p", "size": 5, "sha256": "h"}),
        (("u", "p", 5, None), {}, None),  # no sha256: nothing complete to pin
        (("u", "p", None, "h"), {}, None),
        (
            ("u", "p", 0, "h"),
            {"mirrors": ("m",), "etag": '"e"', "last_modified": "d"},
            {
                "url": "u",
                "path": "p",
                "size": 0,
                "mirrors": ["m"],
                "sha256": "h",
                "etag": '"e"',
                "last_modified": "d",
            },
        ),
    ],
)
def test_lock_record(args: tuple[Any, ...], extra: Any, expected: Any) -> None:
    assert make_record(*args, **extra) == expected


# -- refresh ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "expected"),
    [
        (None, {}),
        (Known(), {}),  # no validator: fetched whole again
        (Known(etag='"e"'), {"If-None-Match": '"e"'}),
        (Known(etag='W/"e"'), {"If-None-Match": 'W/"e"'}),  # weak is fine here
        (Known(last_modified="Tue"), {"If-Modified-Since": "Tue"}),
        (
            Known(etag='"e"', last_modified="Tue"),
            {"If-None-Match": '"e"', "If-Modified-Since": "Tue"},
        ),
    ],
)
def test_conditional_headers(known: Known | None, expected: dict[str, str]) -> None:
    assert conditional_headers(known) == expected


NAMES = ("small.bin", "blob.bin", "big.bin")


async def test_refresh_of_files_not_changed_is_unchanged(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in NAMES]
    await _get(dest, entries, lock)
    before = _records(lock)
    origin.log.clear()

    report = await _get(dest, entries, lock, refresh=True)

    assert [r.status for r in report.results] == ["unchanged"] * 3
    assert report.summary.to_dict()["unchanged"] == 3
    assert report.summary.bytes == 0
    for name in NAMES:
        (request,) = gets(origin, name)
        assert request.headers["If-None-Match"] == origin._state[name].etag
        assert request.status == 304
        assert file_sha256(dest / name) == sha256(origin.files[name])
    assert _records(lock) == before


async def test_refresh_replaces_a_changed_file_once_verified(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in NAMES]
    await _get(dest, entries, lock)
    for name in ("small.bin", "big.bin"):
        origin.set_file(name, make_bytes(len(origin.files[name]) + 7, "new " + name))

    report = await _get(dest, entries, lock, refresh=True)

    statuses = {r.path: r.status for r in report.results}
    assert statuses == {
        "small.bin": "downloaded",
        "blob.bin": "unchanged",
        "big.bin": "downloaded",
    }
    records = _records(lock)
    for name in NAMES:
        assert file_sha256(dest / name) == sha256(origin.files[name])
        assert records[name]["sha256"] == sha256(origin.files[name])
        assert records[name]["etag"] == origin._state[name].etag
    assert not list(dest.glob("*.part*"))


async def test_the_old_copy_stays_whole_while_its_new_version_comes(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url("big.bin"))]
    await _get(dest, entries, lock)
    old = origin.files["big.bin"]
    origin.set_file("big.bin", make_bytes(3_000_000, "new big"))
    origin.faults["big.bin"] = Faults(rate=3_000_000)  # about a second

    task = asyncio.create_task(_get(dest, entries, lock, refresh=True))
    part = dest / "big.bin.part"
    seen_part = False
    while not task.done():
        if part.exists() and part.stat().st_size > 0:
            seen_part = True
            assert (dest / "big.bin").read_bytes() == old  # never half-overwritten
        await asyncio.sleep(0.05)
    report = task.result()

    assert seen_part
    assert report.results[0].status == "downloaded"
    assert file_sha256(dest / "big.bin") == sha256(origin.files["big.bin"])


async def test_a_failed_refresh_keeps_the_old_copy_and_says_so(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in ("small.bin", "blob.bin")]
    await _get(dest, entries, lock)
    before = _records(lock)
    old = origin.files["blob.bin"]
    origin.set_file("blob.bin", make_bytes(300_000, "new blob"))
    origin.faults["blob.bin"] = Faults(fail_times=5, fail_status=500)

    report = await _get(dest, entries, lock, refresh=True, retries=1)

    (failed,) = report.failed
    assert failed.path == "blob.bin"
    assert failed.error is not None
    assert "server answered 500" in failed.error
    assert "the copy already there was kept" in failed.error
    assert file_sha256(dest / "blob.bin") == sha256(old)
    assert not list(dest.glob("blob.bin.part*"))
    assert _records(lock)["blob.bin"] == before["blob.bin"]  # still pinned


async def test_refresh_without_a_validator_fetches_again(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    dest.mkdir()
    (dest / "small.bin").write_bytes(origin.files["small.bin"])  # no lock yet

    report = await _get(dest, [Entry(origin.url("small.bin"))], lock, refresh=True)

    assert report.results[0].status == "downloaded"
    (request,) = gets(origin, "small.bin")
    assert "If-None-Match" not in request.headers
    assert _records(lock)["small.bin"]["etag"] == origin._state["small.bin"].etag


def test_refresh_needs_a_lock(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="refresh needs a lock file"):
        Downloader(tmp_path, refresh=True)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"If-None-Match": "ETAG"}, 304),
        ({"If-None-Match": '"other", ETAG'}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": "LM"}, 304),
        ({"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}, 200),
        ({"If-Modified-Since": "not a date"}, 200),
        # If-None-Match decides when both are sent (RFC 9110 13.2.2)
        ({"If-None-Match": '"other"', "If-Modified-Since": "LM"}, 200),
    ],
)
async def test_the_testing_server_answers_304(
    origin: FileServer, headers: dict[str, str], status: int
) -> None:
    state = origin._state["small.bin"]
    lm = formatdate(state.mtime, usegmt=True)
    sent = {
        k: v.replace("ETAG", state.etag).replace("LM", lm) for k, v in headers.items()
    }
    async with (
        aiohttp.ClientSession() as session,
        session.get(origin.url("small.bin"), headers=sent) as response,
    ):
        body = await response.read()
    assert response.status == status
    assert response.headers["ETag"] == state.etag
    assert body == (origin.files["small.bin"] if status == 200 else b"")


async def test_refresh_from_the_command_line(
    origin: FileServer, tmp_path: Path
) -> None:
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    urls = [origin.url(n) for n in NAMES]
    code, _, err = await run_cli("get", *urls, "-d", dest, "--lock", lock)
    assert code == 0, err
    origin.set_file("blob.bin", make_bytes(1000, "new blob"))

    report = tmp_path / "r.json"
    code, _, err = await run_cli(
        "get", *urls, "-d", dest, "--lock", lock, "--refresh", "--report", report
    )

    assert code == 0, err
    assert "unchanged  small.bin (the server says it has not changed)" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .startswith("1 downloaded, 0 skipped, 2 unchanged, 0 failed")
    ), err
    summary = json.loads(report.read_text())["summary"]
    assert (summary["downloaded"], summary["unchanged"]) == (1, 2)
    assert file_sha256(dest / "blob.bin") == sha256(origin.files["blob.bin"])
    assert _records(lock)["blob.bin"]["sha256"] == sha256(origin.files["blob.bin"])

    # The lock as the manifest pins the bytes: a new version is refused.
    origin.set_file("blob.bin", make_bytes(1000, "newer blob"))
    code, _, err = await run_cli(
        "get", "-i", lock, "-d", dest, "--lock", lock, "--refresh", "--retries", "0"
    )
    assert code == 1, err
    assert "the copy already there was kept" in err, err
    assert file_sha256(dest / "blob.bin") == sha256(make_bytes(1000, "new blob"))


URL = "http://127.0.0.1:9/a"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([URL, "--refresh"], "--refresh needs --lock FILE"),
        ([URL, "--lock", "nowhere/x.lock"], "--lock nowhere/x.lock: no folder nowhere"),
        ([URL, "--lock", "."], "--lock . is a folder"),
        (["--lock", "x.lock", "--retry-failed", "REPORT"], "would pin only the"),
    ],
)
async def test_bad_lock_options_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    report = tmp_path / "run.json"
    report.write_text(
        json.dumps(
            {
                "dest": str(tmp_path.resolve()),
                "results": [{"status": "failed", "entry": {"url": URL, "path": "a"}}],
            }
        )
    )
    args = [str(report) if a == "REPORT" else a for a in args]
    code, _, err = await run_cli("get", "-d", tmp_path, *args)
    assert code == 2
    assert message in err, err


async def test_the_sha256_is_taken_as_the_bytes_pass(
    origin: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not by reading the part again before the rename (the split path does)."""
    from downloader._engine import fetch

    reread: list[Path] = []
    monkeypatch.setattr(fetch, "sha256_file", lambda p: reread.append(p) or "")
    lock, dest = tmp_path / "data.lock", tmp_path / "data"
    entries = [Entry(origin.url(n)) for n in NAMES]
    await _get(dest, entries, lock)

    assert reread == []
    for name, record in _records(lock).items():
        assert (
            record["sha256"] == sha256(origin.files[name]) == file_sha256(dest / name)
        )
