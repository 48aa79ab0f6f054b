"""get --retry-failed REPORT: exactly the failures of a run, resumed, over real HTTP."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from downloader import ManifestError
from downloader._cli.retry import dest_problem, failed_in
from downloader.testing import Faults, FileServer

from .conftest import file_sha256, gets, sha256
from .test_cli import run_cli

SECRET = "s3cr3t-token-value"


async def _failed_run(origin: FileServer, tmp_path: Path) -> tuple[Path, Path]:
    """A run where big.bin breaks off (its part kept) and blob.bin is refused."""
    # Every try breaks off at 1 MB and a resume is answered from byte 0, so
    # no try gets further: the file fails, its part holding 1 MB.
    origin.faults["big.bin"] = Faults(
        drop_after=1_000_000, drop_times=99, ignore_range=True
    )
    origin.faults["blob.bin"] = Faults(fail_times=1, fail_status=403)
    dest, report = tmp_path / "data", tmp_path / "run.json"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"url": origin.url(n), "size": len(origin.files[n])}) + "\n"
            for n in ("small.bin", "blob.bin", "big.bin")
        )
    )
    code, _, err = await run_cli(
        "get", "-i", manifest, "-d", dest, "--retries", "0", "--report", report
    )
    assert code == 1, err
    assert (dest / "big.bin.part").stat().st_size == 1_000_000
    origin.faults.clear()  # the server is well again
    return dest, report


async def test_retry_runs_exactly_the_failures_resuming_parts(
    origin: FileServer, tmp_path: Path
) -> None:
    dest, report = await _failed_run(origin, tmp_path)
    doc = json.loads(report.read_text())
    assert doc["dest"] == str(dest.resolve())
    origin.log.clear()

    code, _, err = await run_cli("get", "--retry-failed", report, "-d", dest)

    assert code == 0, err
    assert err.strip().splitlines()[-1].startswith("2 downloaded, 0 skipped, 0 failed")
    assert gets(origin, "small.bin") == []  # not failed: not asked for
    assert len(gets(origin, "blob.bin")) == 1
    (resume,) = gets(origin, "big.bin")
    assert resume.headers["Range"] == "bytes=1000000-"  # the part was resumed
    for name in ("small.bin", "blob.bin", "big.bin"):
        assert file_sha256(dest / name) == sha256(origin.files[name])


async def test_a_report_without_failures_has_nothing_to_retry(
    origin: FileServer, tmp_path: Path
) -> None:
    dest, report = tmp_path / "data", tmp_path / "run.json"
    code, _, err = await run_cli(
        "get", origin.url("small.bin"), "-d", dest, "--report", report
    )
    assert code == 0, err
    origin.log.clear()
    code, _, err = await run_cli("get", "--retry-failed", report, "-d", dest)
    assert (code, err.strip()) == (0, f"{report}: nothing to retry (no entry failed)")
    assert origin.log == []
    assert file_sha256(dest / "small.bin") == sha256(origin.files["small.bin"])


async def test_a_report_of_another_destination_is_refused(
    origin: FileServer, tmp_path: Path
) -> None:
    dest, report = await _failed_run(origin, tmp_path)
    origin.log.clear()
    code, _, err = await run_cli("get", "--retry-failed", report, "-d", tmp_path / "x")
    assert code == 2
    assert f"is a report of --dest {dest.resolve()}" in err, err
    assert f"give -d {dest.resolve()}" in err, err
    assert origin.log == []


async def test_entries_with_headers_need_their_manifest_again(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["blob.bin"] = Faults(fail_times=1, fail_status=403)
    dest, report = tmp_path / "data", tmp_path / "run.json"
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"url": origin.url("small.bin")})
        + "\n"
        + json.dumps(
            {"url": origin.url("blob.bin"), "headers": {"Authorization": SECRET}}
        )
        + "\n"
    )
    code, _, err = await run_cli(
        "get",
        "-i",
        manifest,
        "-d",
        dest,
        "--retries",
        "0",
        "--report",
        report,
        "-H",
        f"X-Key: {SECRET}",
    )
    assert code == 1, err
    assert SECRET not in report.read_text()

    code, _, err = await run_cli("get", "--retry-failed", report, "-d", dest)
    assert code == 2
    assert "had their own headers (e.g. blob.bin: Authorization)" in err, err
    assert f"--retry-failed {report} -i MANIFEST" in err, err

    origin.log.clear()
    code, _, err = await run_cli(
        "get", "--retry-failed", report, "-i", manifest, "-d", dest
    )
    assert code == 0, err
    assert gets(origin, "small.bin") == []
    (again,) = gets(origin, "blob.bin")
    assert again.headers["Authorization"] == SECRET
    assert file_sha256(dest / "blob.bin") == sha256(origin.files["blob.bin"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"run\.json:1: not a downloader report: "),
        ('{"results": 3}', r"run\.json: not a downloader report \(no 'results'"),
        ("[]", "no 'results' list"),
    ],
)
async def test_a_report_that_is_not_one_exits_2(
    tmp_path: Path, text: str, message: str
) -> None:
    report = tmp_path / "run.json"
    report.write_text(text)
    code, _, err = await run_cli("get", "--retry-failed", report, "-d", tmp_path)
    assert code == 2
    assert re.search(message, err), err


GOOD = {"url": "http://h/a", "path": "a", "size": 3, "checksum": None}


@pytest.mark.parametrize(
    ("results", "lines", "expected"),
    [
        ([], (), []),
        ([{"status": "downloaded", "path": "a"}], (), []),
        ([{"status": "failed", "entry": GOOD}], (), [("a", 1, ())]),
        (  # the line is the result's own line in the file, when known
            [{"status": "skipped"}, {"status": "failed", "entry": GOOD}],
            (3, 4),
            [("a", 4, ())],
        ),
        (
            [{"status": "failed", "entry": GOOD | {"header_names": ["Cookie"]}}],
            (),
            [("a", 1, ("Cookie",))],
        ),
        ([{"status": "failed"}], (2,), "run.json:2: a failed result without its"),
        ([{"status": "failed"}], (), "run.json: result 1: a failed result"),
        (
            [{"status": "failed", "entry": GOOD | {"url": "ftp://h/a"}}],
            (2,),
            "run.json:2: unsupported scheme",
        ),
        (
            [{"status": "failed", "entry": GOOD | {"path": "../a"}}],
            (2,),
            "run.json:2: ",
        ),
    ],
)
def test_failed_in(
    results: list[dict[str, Any]], lines: tuple[int, ...], expected: Any
) -> None:
    doc = {"dest": "/d", "results": results}
    if isinstance(expected, str):
        with pytest.raises(ManifestError) as caught:
            failed_in(doc, "run.json", lines)
        assert str(caught.value).startswith(expected), caught.value
    else:
        got = failed_in(doc, "run.json", lines)
        assert [(f.entry.path, f.line, f.header_names) for f in got] == expected


@pytest.mark.parametrize(
    ("recorded", "dest", "expected"),
    [
        ("HERE", "data", None),
        ("HERE", "data/../data", None),
        ("HERE", "other", "is a report of --dest"),
        (None, "data", "does not say which --dest"),
        (5, "data", "does not say which --dest"),
    ],
)
def test_dest_problem(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    recorded: Any,
    dest: str,
    expected: str | None,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    if recorded == "HERE":
        recorded = str((tmp_path / "data").resolve())
    problem = dest_problem(recorded, Path(dest), "run.json")
    if expected is None:
        assert problem is None
    else:
        assert problem is not None
        assert expected in problem


async def test_the_library_retries_a_reports_failures_with_their_headers(
    origin: FileServer, tmp_path: Path
) -> None:
    """README "Repeating a run": ``report.failed`` holds whole entries, headers
    included, so the library needs no report file to retry them."""
    from downloader import Downloader, Entry

    origin.faults["blob.bin"] = Faults(fail_status=404, fail_times=1)
    entries = [
        Entry(origin.url("small.bin")),
        Entry(origin.url("blob.bin"), headers={"X-Token": "t0ken"}),
    ]
    async with Downloader(tmp_path, retry_wait=0.01) as dl:
        report = await dl.download(entries)
        assert [r.path for r in report.failed] == ["blob.bin"]
        again = await dl.download([r.entry for r in report.failed])
    assert again.ok
    assert [r.path for r in again.results] == ["blob.bin"]
    assert file_sha256(tmp_path / "blob.bin") == sha256(origin.files["blob.bin"])
    assert origin.requests_for("blob.bin")[-1].headers["X-Token"] == "t0ken"
    assert len(origin.requests_for("small.bin")) == 1  # not asked again
