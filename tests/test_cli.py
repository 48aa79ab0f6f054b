"""The command line as users run it: real subprocesses against a real HTTP origin.

The origin server runs in the test's event loop, so every CLI run is started with
``asyncio.create_subprocess_exec`` and awaited (a blocking ``subprocess.run``
would freeze the server). Every download is checked byte for byte on disk.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from downloader import __version__
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import REPORT_FIELDS, file_sha256, sha256

RUN_TIMEOUT = 30.0
FAULT_OPTS = ("--retries", "1", "--timeout", "5")
SLOW = "slow.bin"
SLOW_SIZE = 8_000_000
SLOW_RATE = 2_000_000  # bytes/s per connection: a kill lands mid-transfer


def _child_env() -> dict[str, str]:
    """The user's environment, minus proxies that would intercept 127.0.0.1."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


ENV = _child_env()


# -- helpers ---------------------------------------------------------------


async def start_cli(
    *args: Any, stdin: bytes | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "downloader",
        *map(str, args),
        stdin=asyncio.subprocess.PIPE
        if stdin is not None
        else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )


async def finish(
    proc: asyncio.subprocess.Process,
    stdin: bytes | None = None,
    within: float = RUN_TIMEOUT,
) -> tuple[int, str, str]:
    """Wait for the process; kill it (and fail) if it hangs."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), within)
    except TimeoutError:
        proc.kill()
        await proc.communicate()
        pytest.fail(f"the CLI did not finish within {within}s")
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def run_cli(*args: Any, stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run ``python -m downloader ARGS``; returns (exit code, stdout, stderr)."""
    proc = await start_cli(*args, stdin=stdin)
    return await finish(proc, stdin)


async def wait_for_part(
    path: Path,
    min_bytes: int,
    within: float = 15.0,
    proc: asyncio.subprocess.Process | None = None,
) -> int:
    """Poll until ``path`` holds more than ``min_bytes``; returns its size."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        size = _size(path)
        if size > min_bytes:
            return size
        if proc is not None and proc.returncode is not None:
            pytest.fail(f"the CLI exited ({proc.returncode}) before {path} grew")
        await asyncio.sleep(0.02)
    pytest.fail(f"{path} did not grow past {min_bytes} bytes in {within}s")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def leftovers(dest: Path) -> list[str]:
    """Every ``.part``/``.part.state`` (or its temp file) under ``dest``."""
    return sorted(str(p.relative_to(dest)) for p in dest.rglob("*.part*"))


def assert_bytes(
    dest: Path, origin: FileServer, name: str, path: str | None = None
) -> None:
    final = dest / (path or name)
    assert final.is_file(), f"{final} missing"
    assert file_sha256(final) == sha256(origin.files[name]), f"{final}: wrong bytes"


def jsonl(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def downloaded_lines(stderr: str) -> list[str]:
    return sorted(re.findall(r"^downloaded (\S+) ", stderr, re.MULTILINE))


def summary_line(stderr: str) -> re.Match[str] | None:
    return re.search(
        r"^(\d+) downloaded, (\d+) skipped, (\d+) failed; ", stderr, re.MULTILINE
    )


def gets(origin: FileServer, name: str) -> list[Any]:
    return [r for r in origin.requests_for(name) if r.method == "GET"]


async def etag_of(origin: FileServer, name: str) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.head(origin.url(name)) as response,
    ):
        return response.headers["ETag"]


def serve_slow(origin: FileServer, seed: str = "slow") -> bytes:
    data = make_bytes(SLOW_SIZE, seed)
    origin.set_file(SLOW, data)
    origin.faults[SLOW] = Faults(rate=SLOW_RATE)
    return data


async def killed_mid_transfer(
    args: tuple[Any, ...], part: Path, sig: signal.Signals = signal.SIGKILL
) -> tuple[int, str, str, int]:
    """Start ``get``, wait until ``part`` holds > 1 MB, send ``sig``."""
    proc = await start_cli(*args)
    have = await wait_for_part(part, 1_000_000, proc=proc)
    proc.send_signal(sig)
    code, out, err = await finish(proc)
    return code, out, err, have


# -- 1, 2: get with every kind of input ------------------------------------

THREE = ("small.bin", "blob.bin", "big.bin")


async def test_get_jsonl(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {
                "url": origin.url("small.bin"),
                "sha256": sha256(origin.files["small.bin"]),
            },
            {"url": origin.url("blob.bin"), "size": 300_000},
            {"url": origin.url("big.bin"), "path": "nested/dir/big.bin"},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    assert_bytes(dest, origin, "small.bin")
    assert_bytes(dest, origin, "blob.bin")
    assert_bytes(dest, origin, "big.bin", "nested/dir/big.bin")
    assert leftovers(dest) == []
    assert downloaded_lines(err) == ["blob.bin", "nested/dir/big.bin", "small.bin"]
    match = summary_line(err)
    assert match is not None, err
    assert match.groups() == ("3", "0", "0")
    assert "Traceback" not in err
    assert "\r" not in err  # no progress bars when stderr is not a TTY


def _csv(origin: FileServer, sep: str) -> str:
    rows = [sep.join(["url", "path", "sha256", "size"])]
    for name in THREE:
        data = origin.files[name]
        rows.append(sep.join([origin.url(name), f"c/{name}", sha256(data), ""]))
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize(("fname", "sep"), [("m.csv", ","), ("m.tsv", "\t")])
async def test_get_csv_tsv(
    origin: FileServer, tmp_path: Path, fname: str, sep: str
) -> None:
    manifest = tmp_path / fname
    manifest.write_text(_csv(origin, sep))
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    for name in THREE:
        assert_bytes(dest, origin, name, f"c/{name}")
    assert leftovers(dest) == []
    assert downloaded_lines(err) == sorted(f"c/{n}" for n in THREE)


async def test_get_json_with_defaults(origin: FileServer, tmp_path: Path) -> None:
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps(
            {
                "defaults": {"headers": {"X-Token": "from-defaults"}},
                "files": [
                    {"url": origin.url("small.bin"), "path": "j/small.bin"},
                    {
                        "url": origin.url("blob.bin"),
                        "headers": {"X-Token": "own"},
                        "size": 300_000,
                    },
                ],
            }
        )
    )
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    assert_bytes(dest, origin, "small.bin", "j/small.bin")
    assert_bytes(dest, origin, "blob.bin")
    assert {r.headers.get("X-Token") for r in gets(origin, "small.bin")} == {
        "from-defaults"
    }
    assert {r.headers.get("X-Token") for r in gets(origin, "blob.bin")} == {"own"}
    assert leftovers(dest) == []


def _url_list(origin: FileServer) -> str:
    return (
        "# a URL list: comments and blank lines are ignored\n"
        f"{origin.url('small.bin')}\n"
        "\n"
        f"   {origin.url('blob.bin')}   renamed/blob-copy.bin  \n"
        "   # indented comment\n"
        f"{origin.url('big.bin')}\n"
    )


def _check_url_list(dest: Path, origin: FileServer) -> None:
    assert_bytes(dest, origin, "small.bin")
    assert_bytes(dest, origin, "blob.bin", "renamed/blob-copy.bin")
    assert_bytes(dest, origin, "big.bin")
    assert not (dest / "blob.bin").exists()
    assert leftovers(dest) == []


async def test_get_url_list_txt(origin: FileServer, tmp_path: Path) -> None:
    manifest = tmp_path / "urls.txt"
    manifest.write_text(_url_list(origin))
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    _check_url_list(dest, origin)
    assert downloaded_lines(err) == ["big.bin", "renamed/blob-copy.bin", "small.bin"]


async def test_get_urls_on_command_line(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    code, _, err = await run_cli(
        "get", origin.url("small.bin"), origin.url("blob.bin"), "-d", dest
    )
    assert code == 0, err
    assert_bytes(dest, origin, "small.bin")
    assert_bytes(dest, origin, "blob.bin")
    assert leftovers(dest) == []
    assert downloaded_lines(err) == ["blob.bin", "small.bin"]
    match = summary_line(err)
    assert match is not None
    assert match.groups() == ("2", "0", "0")


async def test_get_stdin_with_format(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    code, _, err = await run_cli(
        "get",
        "-i",
        "-",
        "--format",
        "urls",
        "-d",
        dest,
        stdin=_url_list(origin).encode(),
    )
    assert code == 0, err
    _check_url_list(dest, origin)


@pytest.mark.parametrize("kind", ["jsonl", "csv", "urls"])
async def test_get_stdin_sniffed(origin: FileServer, tmp_path: Path, kind: str) -> None:
    if kind == "jsonl":
        text = "".join(
            json.dumps({"url": origin.url(n), "path": f"c/{n}"}) + "\n" for n in THREE
        )
    elif kind == "csv":
        text = _csv(origin, ",")
    else:
        text = "".join(f"{origin.url(n)} c/{n}\n" for n in THREE)
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", "-", "-d", dest, stdin=text.encode())
    assert code == 0, err
    for name in THREE:
        assert_bytes(dest, origin, name, f"c/{name}")
    assert leftovers(dest) == []


# -- 3: a failure among good files -----------------------------------------


async def test_404_among_good_files(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin")},
            {"url": origin.url("missing.bin")},
            {"url": origin.url("blob.bin")},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, *FAULT_OPTS)
    assert code == 1, err
    assert_bytes(dest, origin, "small.bin")
    assert_bytes(dest, origin, "blob.bin")
    assert not (dest / "missing.bin").exists()
    assert leftovers(dest) == []
    failed = [ln for ln in err.splitlines() if "missing.bin" in ln]
    assert failed, err
    assert any("404" in ln for ln in failed), err
    match = summary_line(err)
    assert match is not None
    assert match.groups() == ("2", "0", "1")
    assert "Traceback" not in err
    assert len(gets(origin, "missing.bin")) == 1  # a 404 is not retried


# -- 4: bad input stops before any request ---------------------------------

GOOD_LINE = '{"url": "%s", "path": "ok.bin"}\n'


@pytest.mark.parametrize(
    ("line2", "expected"),
    [
        ('{"url": "http://h/x.bin", oops}\n', ["m.jsonl:2:", "JSON"]),
        ('{"path": "x.bin"}\n', ["m.jsonl:2:", "missing url"]),
        ('{"url": "ftp://h.test/x.bin"}\n', ["m.jsonl:2:", "ftp"]),
        (
            '{"url": "http://h.test/x.bin", "checksum": "sha256:xyz"}\n',
            ["m.jsonl:2:", "checksum"],
        ),
        (
            '{"url": "http://h.test/x.bin", "sha256": "abc"}\n',
            ["m.jsonl:2:", "checksum"],
        ),
        (
            '{"url": "http://h.test/x.bin", "path": "ok.bin"}\n',
            ["m.jsonl:1", "m.jsonl:2"],
        ),
        (
            '{"url": "http://h.test/x.bin", "path": "/etc/x.bin"}\n',
            ["m.jsonl:2:", "absolute"],
        ),
        (
            '{"url": "http://h.test/x.bin", "path": "a/../../x.bin"}\n',
            ["m.jsonl:2:", ".."],
        ),
    ],
    ids=[
        "unparsable",
        "missing-url",
        "ftp-scheme",
        "bad-checksum",
        "short-sha256",
        "duplicate-path",
        "absolute-path",
        "dotdot-path",
    ],
)
async def test_bad_manifest_exits_2_before_any_request(
    origin: FileServer, tmp_path: Path, line2: str, expected: list[str]
) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(GOOD_LINE % origin.url("small.bin") + line2)
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 2, err
    for text in expected:
        assert text in err, err
    assert "Traceback" not in err
    assert origin.log == []
    assert not (dest / "ok.bin").exists()


async def test_missing_manifest_file(origin: FileServer, tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "-i", tmp_path / "nope.jsonl", "-d", tmp_path)
    assert code == 2, err
    assert "nope.jsonl" in err
    assert "Traceback" not in err
    assert origin.log == []


async def test_get_without_arguments(origin: FileServer, tmp_path: Path) -> None:
    code, _, err = await run_cli("get")
    assert code == 2
    assert "Traceback" not in err
    assert "-i" in err  # says how to give input
    assert "URL" in err
    assert origin.log == []


async def test_not_a_url_on_command_line(origin: FileServer, tmp_path: Path) -> None:
    code, _, err = await run_cli("get", "files.jsonl", "-d", tmp_path)
    assert code == 2
    assert "-i files.jsonl" in err  # the hint
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["plan", "verify"])
async def test_manifest_without_dash_i_on_local_commands(
    tmp_path: Path, command: str
) -> None:
    code, out, err = await run_cli(command, "a.jsonl", "b.csv", "-d", tmp_path)
    assert code == 2
    assert "-i a.jsonl -i b.csv" in err  # says what to type instead
    assert "Traceback" not in err
    assert out == ""


@pytest.mark.parametrize("command", ["get", "plan", "verify"])
async def test_dest_that_is_a_file(
    origin: FileServer, tmp_path: Path, command: str
) -> None:
    (tmp_path / "afile").write_text("not a folder")
    manifest = jsonl(tmp_path / "m.jsonl", [{"url": origin.url("small.bin")}])
    for dest, said in [
        (tmp_path / "afile", f"--dest {tmp_path / 'afile'} is not a folder"),
        (tmp_path / "afile" / "sub", f": {tmp_path / 'afile'} is not a folder"),
    ]:
        code, _, err = await run_cli(command, "-i", manifest, "-d", dest)
        assert code == 2, err
        assert said in err
        assert "Traceback" not in err
    assert origin.log == []


# -- 5: the JSON report ------------------------------------------------------


async def test_report(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    pre = make_bytes(5_000, "pre")
    origin.set_file("pre.bin", pre)
    (dest / "pre.bin").write_bytes(pre)
    small = origin.files["small.bin"]
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin"), "sha256": sha256(small)},
            {"url": origin.url("blob.bin")},
            {"url": origin.url("missing.bin")},
            {"url": origin.url("pre.bin"), "size": len(pre), "sha256": sha256(pre)},
        ],
    )
    report_path = tmp_path / "out" / "report.json"
    report_path.parent.mkdir()
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--report", report_path, *FAULT_OPTS
    )
    assert code == 1, err
    report = json.loads(report_path.read_text())
    assert sorted(p.name for p in report_path.parent.iterdir()) == ["report.json"]
    by_path = {}
    for r in report["results"]:
        assert set(r) >= REPORT_FIELDS, r
        by_path[r["path"]] = r
    assert set(by_path) == {"small.bin", "blob.bin", "missing.bin", "pre.bin"}

    for name in ("small.bin", "blob.bin"):
        r = by_path[name]
        data = origin.files[name]
        assert r["url"] == origin.url(name)
        assert r["status"] == "downloaded"
        assert r["bytes"] == r["size"] == len(data) == (dest / name).stat().st_size
        assert r["error"] is None
        assert r["attempts"] >= 1
        assert isinstance(r["elapsed_s"], float | int)
        assert r["elapsed_s"] >= 0
        assert_bytes(dest, origin, name)
    assert by_path["small.bin"]["checksum"] == f"sha256:{sha256(small)}"
    assert by_path["blob.bin"]["checksum"] is None

    miss = by_path["missing.bin"]
    assert miss["status"] == "failed"
    assert "404" in miss["error"]
    assert miss["bytes"] == 0
    assert miss["attempts"] >= 1
    assert not (dest / "missing.bin").exists()

    skipped = by_path["pre.bin"]
    assert skipped["status"] == "skipped"
    assert skipped["bytes"] == 0
    assert skipped["size"] == len(pre)
    assert skipped["error"] is None
    assert skipped["checksum"] == f"sha256:{sha256(pre)}"
    assert gets(origin, "pre.bin") == []

    summary = report["summary"]
    assert summary["files"] == 4
    assert (summary["downloaded"], summary["skipped"], summary["failed"]) == (2, 1, 1)
    assert summary["bytes"] == sum(r["bytes"] for r in report["results"])
    assert summary["bytes"] == len(small) + len(origin.files["blob.bin"])
    assert summary["seconds"] > 0
    assert summary["mean_rate_bps"] > 0


# -- 6: checksum mismatch ------------------------------------------------------


async def test_checksum_mismatch(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    wrong = "0" * 64
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("blob.bin"), "sha256": wrong},
            {"url": origin.url("small.bin")},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, *FAULT_OPTS)
    assert code == 1, err
    assert f"checksum mismatch: expected sha256:{wrong}" in err
    assert f"got sha256:{sha256(origin.files['blob.bin'])}" in err
    assert not (dest / "blob.bin").exists()
    assert leftovers(dest) == []
    assert_bytes(dest, origin, "small.bin")
    tries = gets(origin, "blob.bin")
    assert len(tries) == 2  # the first try and one retry (--retries 1)
    assert all("Range" not in r.headers for r in tries)  # each from zero
    assert all(r.sent == 300_000 for r in tries)


async def test_server_announcing_more_than_it_sends(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    origin.faults["blob.bin"] = Faults(lie_length=500_000, rate=20_000_000)
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [{"url": origin.url("blob.bin")}, {"url": origin.url("small.bin")}],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, *FAULT_OPTS)
    assert code == 1, err
    assert (
        "blob.bin: body cut short at byte 300,000: the server announced 500,000 "
        "bytes, but asked for the rest it says the file is 300,000 bytes long "
        "(its Content-Length is wrong)"
    ) in err
    assert "server answered 416" not in err
    assert not (dest / "blob.bin").exists()
    assert leftovers(dest) == []
    assert_bytes(dest, origin, "small.bin")


# -- 7, 8, 9: interrupted runs resume ------------------------------------------


async def test_resume_after_kill_9(origin: FileServer, tmp_path: Path) -> None:
    data = serve_slow(origin)
    dest = tmp_path / "data"
    args = ("get", origin.url(SLOW), "-d", dest, *FAULT_OPTS)
    part = dest / (SLOW + ".part")
    code, _, _, _ = await killed_mid_transfer(args, part)
    assert code == -signal.SIGKILL
    assert not (dest / SLOW).exists()
    assert part.is_file()
    kept = part.stat().st_size
    assert 1_000_000 < kept < SLOW_SIZE

    origin.faults[SLOW].rate = None
    etag = await etag_of(origin, SLOW)
    code, _, err = await run_cli(*args)
    assert code == 0, err
    assert file_sha256(dest / SLOW) == sha256(data)
    assert leftovers(dest) == []
    last = gets(origin, SLOW)[-1]
    match = re.fullmatch(r"bytes=(\d+)-", last.headers.get("Range", ""))
    assert match is not None, last.headers
    assert int(match[1]) > 0
    assert int(match[1]) == kept
    assert last.headers.get("If-Range") == etag
    assert last.status == 206
    assert last.sent == SLOW_SIZE - kept
    assert origin.bytes_sent(SLOW) < 1.3 * SLOW_SIZE
    assert "resumed" in err


@pytest.mark.parametrize(
    ("sig", "expected"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
async def test_signal_saves_and_resumes(
    origin: FileServer, tmp_path: Path, sig: signal.Signals, expected: int
) -> None:
    data = serve_slow(origin)
    dest = tmp_path / "data"
    args = ("get", origin.url(SLOW), "-d", dest, *FAULT_OPTS)
    part = dest / (SLOW + ".part")
    code, _, err, _ = await killed_mid_transfer(args, part, sig)
    assert code == expected, err
    assert "resume" in err.lower()
    assert "same command" in err
    assert "Traceback" not in err
    assert not (dest / SLOW).exists()
    assert part.is_file()
    kept = part.stat().st_size
    assert kept > 1_000_000

    origin.faults[SLOW].rate = None
    code, _, err = await run_cli(*args)
    assert code == 0, err
    assert file_sha256(dest / SLOW) == sha256(data)
    assert leftovers(dest) == []
    assert gets(origin, SLOW)[-1].headers.get("Range") == f"bytes={kept}-"
    assert origin.bytes_sent(SLOW) < 1.3 * SLOW_SIZE


async def test_changed_file_is_not_spliced(origin: FileServer, tmp_path: Path) -> None:
    serve_slow(origin, "old")
    old_etag = await etag_of(origin, SLOW)
    dest = tmp_path / "data"
    args = ("get", origin.url(SLOW), "-d", dest, *FAULT_OPTS)
    part = dest / (SLOW + ".part")
    code, _, _, _ = await killed_mid_transfer(args, part)
    assert code == -signal.SIGKILL
    assert part.is_file()

    new = make_bytes(SLOW_SIZE, "new")
    origin.set_file(SLOW, new)
    origin.faults[SLOW].rate = None
    assert await etag_of(origin, SLOW) != old_etag
    code, _, err = await run_cli(*args)
    assert code == 0, err
    assert file_sha256(dest / SLOW) == sha256(new)
    assert leftovers(dest) == []
    last = gets(origin, SLOW)[-1]
    assert last.status == 200  # If-Range did not match: the whole new file
    assert last.sent == SLOW_SIZE


# -- 10: plan and verify (no network) ----------------------------------------


async def test_plan(origin: FileServer, tmp_path: Path) -> None:
    serve_slow(origin)
    dest = tmp_path / "data"
    small = origin.files["small.bin"]
    first = jsonl(
        tmp_path / "first.jsonl",
        [
            {"url": origin.url("small.bin"), "sha256": sha256(small)},
            {"url": origin.url(SLOW)},
        ],
    )
    part = dest / (SLOW + ".part")
    code, _, _, _ = await killed_mid_transfer(
        ("get", "-i", first, "-d", dest, "-j", "2", *FAULT_OPTS), part
    )
    assert code == -signal.SIGKILL
    assert_bytes(dest, origin, "small.bin")
    have = part.stat().st_size
    (dest / "big.bin").write_bytes(b"x" * 100)  # final file, wrong size

    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin"), "sha256": sha256(small)},
            {"url": origin.url(SLOW)},
            {"url": origin.url("blob.bin")},
            {"url": origin.url("big.bin"), "size": 3_000_000},
        ],
    )
    origin.log.clear()
    code, out, err = await run_cli("plan", "-i", manifest, "-d", dest)
    assert code == 0, err
    assert origin.log == []
    words = {ln.split()[1]: ln for ln in out.splitlines() if ln.strip()}
    assert set(words) == {"small.bin", SLOW, "blob.bin", "big.bin"}, out
    assert words["small.bin"].split()[0] == "skip"
    assert words[SLOW].split()[0] == "resume"
    assert f"{have:,}" in words[SLOW] or str(have) in words[SLOW]
    assert words["blob.bin"].split()[0] == "new"
    assert words["big.bin"].split()[0] == "replace"
    assert (dest / "big.bin").read_bytes() == b"x" * 100  # plan changes nothing
    assert part.stat().st_size == have
    assert "Traceback" not in err


async def test_verify(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url(n), "sha256": sha256(origin.files[n])}
            for n in ("small.bin", "blob.bin")
        ]
        + [{"url": origin.url("big.bin"), "size": 3_000_000}],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    origin.log.clear()

    code, out, err = await run_cli("verify", "-i", manifest, "-d", dest)
    assert code == 0, out + err
    assert "BAD" not in out

    (dest / "blob.bin").unlink()
    corrupt = bytearray((dest / "small.bin").read_bytes())
    corrupt[5000] ^= 0xFF  # same size: only the checksum can tell
    (dest / "small.bin").write_bytes(bytes(corrupt))
    code, out, err = await run_cli("verify", "-i", manifest, "-d", dest)
    assert code == 1, out + err
    bad = [ln for ln in (out + err).splitlines() if "BAD" in ln]
    assert any("small.bin" in ln for ln in bad), out
    assert any("blob.bin" in ln for ln in bad), out
    assert not any("big.bin" in ln for ln in bad), out
    assert origin.log == []
    assert "Traceback" not in err


# -- 11: help and version --------------------------------------------------------


async def test_help_and_version() -> None:
    code, out, _ = await run_cli("--help")
    assert code == 0
    assert "resume" in out.lower()
    for command in ("get", "plan", "verify"):
        assert command in out
    code, out, _ = await run_cli("get", "--help")
    assert code == 0
    assert "resume" in out.lower()
    assert "--report" in out
    code, out, _ = await run_cli("--version")
    assert code == 0
    assert out.strip() == __version__


async def test_console_script() -> None:
    script = Path(sys.executable).with_name("downloader")
    if not script.exists():
        pytest.skip("console script not installed beside this interpreter")
    proc = await asyncio.create_subprocess_exec(
        str(script),
        "--version",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env=ENV,
    )
    code, out, _ = await finish(proc)
    assert code == 0
    assert out.strip() == __version__


# -- 12: complete files are skipped, wrong ones replaced --------------------------


async def test_complete_file_skipped_without_request(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    small = origin.files["small.bin"]
    (dest / "small.bin").write_bytes(small)
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin"), "sha256": sha256(small)},
            {"url": origin.url("blob.bin")},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    assert gets(origin, "small.bin") == []
    assert_bytes(dest, origin, "small.bin")
    assert_bytes(dest, origin, "blob.bin")
    assert re.search(r"^skipped +small\.bin", err, re.MULTILINE), err
    match = summary_line(err)
    assert match is not None
    assert match.groups() == ("1", "1", "0")


@pytest.mark.parametrize("field", ["size", "sha256"])
async def test_wrong_final_file_replaced(
    origin: FileServer, tmp_path: Path, field: str
) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    blob = origin.files["blob.bin"]
    (dest / "blob.bin").write_bytes(b"stale" * 100)
    value: Any = len(blob) if field == "size" else sha256(blob)
    manifest = jsonl(
        tmp_path / "m.jsonl", [{"url": origin.url("blob.bin"), field: value}]
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 0, err
    assert_bytes(dest, origin, "blob.bin")
    assert len(gets(origin, "blob.bin")) == 1
    assert leftovers(dest) == []
    assert downloaded_lines(err) == ["blob.bin"]


async def test_existing_file_without_size_counts_complete(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "small.bin").write_bytes(b"whatever")
    code, _, err = await run_cli("get", origin.url("small.bin"), "-d", dest)
    assert code == 0, err
    assert gets(origin, "small.bin") == []
    assert (dest / "small.bin").read_bytes() == b"whatever"
    code, _, err = await run_cli(
        "get", origin.url("small.bin"), "-d", dest, "--overwrite"
    )
    assert code == 0, err
    assert_bytes(dest, origin, "small.bin")


# -- more of the contract -----------------------------------------------------


async def test_resume_with_checksum(origin: FileServer, tmp_path: Path) -> None:
    data = serve_slow(origin)
    dest = tmp_path / "data"
    manifest = jsonl(
        tmp_path / "m.jsonl", [{"url": origin.url(SLOW), "sha256": sha256(data)}]
    )
    report = tmp_path / "report.json"
    args = ("get", "-i", manifest, "-d", dest, "--report", report, *FAULT_OPTS)
    part = dest / (SLOW + ".part")
    code, _, _, _ = await killed_mid_transfer(args, part)
    assert code == -signal.SIGKILL
    kept = part.stat().st_size

    origin.faults[SLOW].rate = None
    code, _, err = await run_cli(*args)
    assert "Traceback" not in err
    assert code == 0, err
    assert file_sha256(dest / SLOW) == sha256(data)
    assert leftovers(dest) == []
    assert gets(origin, SLOW)[-1].headers.get("Range") == f"bytes={kept}-"
    (result,) = json.loads(report.read_text())["results"]
    assert result["status"] == "downloaded"
    assert result["bytes"] == SLOW_SIZE - kept
    assert result["checksum"] == f"sha256:{sha256(data)}"


async def test_symlink_out_of_dest_is_a_manifest_error(
    origin: FileServer, tmp_path: Path
) -> None:
    dest = tmp_path / "data"
    dest.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "link").symlink_to(outside)
    manifest = jsonl(
        tmp_path / "m.jsonl",
        [
            {"url": origin.url("small.bin")},
            {"url": origin.url("blob.bin"), "path": "link/blob.bin"},
        ],
    )
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest)
    assert code == 2, err
    assert "m.jsonl:2" in err
    assert "link/blob.bin" in err
    assert "outside" in err
    assert "Traceback" not in err
    assert list(outside.iterdir()) == []
    assert gets(origin, "blob.bin") == []
    assert origin.log == []


async def test_bad_second_manifest_stops_everything(
    origin: FileServer, tmp_path: Path
) -> None:
    good = jsonl(tmp_path / "good.jsonl", [{"url": origin.url("small.bin")}])
    bad = jsonl(tmp_path / "bad.jsonl", [{"url": "ftp://h.test/x.bin"}])
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", "-i", good, "-i", bad, "-d", dest)
    assert code == 2, err
    assert "bad.jsonl:1:" in err
    assert origin.log == []
    assert not (dest / "small.bin").exists()


async def test_default_path_is_percent_decoded(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.set_file("my file.bin", make_bytes(2_000, "space"))
    dest = tmp_path / "data"
    code, _, err = await run_cli("get", origin.url("my%20file.bin"), "-d", dest)
    assert code == 0, err
    assert_bytes(dest, origin, "my file.bin")
    assert sorted(p.name for p in dest.iterdir()) == ["my file.bin"]


async def test_quiet_prints_only_errors(origin: FileServer, tmp_path: Path) -> None:
    dest = tmp_path / "data"
    code, out, err = await run_cli(
        "get", "-q", origin.url("small.bin"), origin.url("nope.bin"), "-d", dest
    )
    assert code == 1
    assert_bytes(dest, origin, "small.bin")
    assert "downloaded small.bin" not in err
    assert "nope.bin" in err
    assert out == ""
