"""The HTML-page guard: a login or error page sent with 200 is never the file.

A table for ``_policy/pages.py``; then real downloads: a ``.zip`` answered
with an HTML page, with and without a mirror serving the right bytes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from downloader import Downloader, Entry
from downloader._integrity import Checksum
from downloader._policy.pages import expects_binary, html_page, is_html
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256
from .test_cli import jsonl, leftovers, run_cli

PAGE = b"<!doctype html><html><body>Please log in</body></html>"
ZIP = make_bytes(50_000, "zip")
HTML = "text/html; charset=utf-8"
SUM = Checksum("sha256", "a" * 64)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("text/html", True),
        ("text/html; charset=utf-8", True),
        ("TEXT/HTML", True),
        ("application/xhtml+xml", True),
        ("text/plain", False),
        ("application/octet-stream", False),
        ("application/zip", False),
        ("", False),
        (None, False),
    ],
)
def test_is_html_table(content_type: str | None, expected: bool) -> None:
    assert is_html(content_type) is expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (Entry("http://h.test/a.zip"), True),
        (Entry("http://h.test/x", path="data/a.TAR.GZ"), True),
        (Entry("http://h.test/m.safetensors"), True),
        (Entry("http://h.test/scan.pdf"), True),
        (Entry("http://h.test/notes"), False),  # no promise: could be a page
        (Entry("http://h.test/notes.txt"), False),
        (Entry("http://h.test/notes.txt", size=10), True),  # a size promises
        (Entry("http://h.test/notes", checksum=SUM), True),  # so does a checksum
        (Entry("http://h.test/index.html", size=10), False),  # a page is asked for
        (Entry("http://h.test/a.htm", checksum=SUM), False),
    ],
)
def test_expects_binary_table(entry: Entry, expected: bool) -> None:
    assert expects_binary(entry) is expected


@pytest.mark.parametrize(
    ("entry", "content_type", "total", "refused"),
    [
        (Entry("http://h.test/a.zip"), HTML, 500, True),
        (Entry("http://h.test/a.zip"), HTML, None, True),
        (Entry("http://h.test/a.zip"), "application/zip", 500, False),
        (Entry("http://h.test/a.zip", size=500), HTML, 500, False),  # as promised
        (Entry("http://h.test/a.zip", size=500), HTML, 80, True),
        (Entry("http://h.test/a.zip", size=500), HTML, None, True),  # unknown size
        (Entry("http://h.test/data", size=500), HTML, 80, True),
        (Entry("http://h.test/data"), HTML, 80, False),
        (Entry("http://h.test/page.html", size=500), HTML, 80, False),
    ],
)
def test_html_page_table(
    entry: Entry, content_type: str, total: int | None, refused: bool
) -> None:
    error = html_page(entry, content_type, total, "http://h.test/x")
    assert (error is not None) is refused
    if error is not None:
        assert "the server sent an HTML page (an error or login page?)" in str(error)
        assert error.retryable is False  # the next mirror, not the same page again


def _serve_page(origin: FileServer, name: str) -> None:
    origin.set_file(name, PAGE)
    origin.faults[name] = Faults(content_type=HTML)


async def test_a_page_for_a_zip_moves_on_to_the_mirror(
    origin: FileServer, tmp_path: Path
) -> None:
    _serve_page(origin, "login/data.zip")
    origin.set_file("mirror/data.zip", ZIP)
    entry = Entry(
        origin.url("login/data.zip"),
        path="data.zip",
        mirrors=(origin.url("mirror/data.zip"),),
    )
    async with Downloader(tmp_path, retries=3, retry_wait=0.01) as dl:
        report = await dl.download([entry])
    result = report.results[0]
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / "data.zip") == sha256(ZIP)
    assert len(gets(origin, "login/data.zip")) == 1  # not asked again


@pytest.mark.parametrize(
    "fields",
    [
        {},  # the name alone
        {"path": "data.bin.unknown", "size": len(ZIP)},  # a size
    ],
)
async def test_a_page_without_a_mirror_fails_and_nothing_is_published(
    origin: FileServer, tmp_path: Path, fields: dict[str, object]
) -> None:
    _serve_page(origin, "data.zip")
    dest = tmp_path / "data"
    manifest = jsonl(tmp_path / "m.jsonl", [{"url": origin.url("data.zip"), **fields}])
    code, _, err = await run_cli("get", "-i", manifest, "-d", dest, "--retries", "3")
    assert code == 1, err
    assert "the server sent an HTML page (an error or login page?)" in err
    assert list(dest.iterdir()) == []  # no final file, no .part to trust later
    assert leftovers(dest) == []
    assert len(gets(origin, "data.zip")) == 1  # the page is final for this URL


async def test_a_page_breaking_a_resume_keeps_the_good_part(
    origin: FileServer, tmp_path: Path
) -> None:
    """A resume answered with a login page: the bytes had stay, never the page."""
    name = "big.bin"
    data = origin.files[name]
    # Every answer breaks off at the same byte: the run ends with a part.
    origin.faults[name] = Faults(drop_after=1_000_000, drop_times=99, ignore_range=True)
    async with Downloader(tmp_path, retries=0, split=1) as dl:
        first = (await dl.download([Entry(origin.url(name))])).results[0]
    assert first.status == "failed"
    part = tmp_path / f"{name}.part"
    assert part.stat().st_size == 1_000_000
    origin.set_file(name, PAGE)
    origin.faults[name] = Faults(content_type=HTML, ignore_range=True)
    async with Downloader(tmp_path, retries=0, split=1) as dl:
        second = (await dl.download([Entry(origin.url(name))])).results[0]
    assert second.status == "failed"
    assert "HTML page" in (second.error or "")
    assert not (tmp_path / name).exists()
    assert part.read_bytes() == data[:1_000_000]  # the real bytes, untouched


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("page.html", {"size": len(PAGE) + 1}),  # a page asked for by name
        ("notes", {}),  # no size, no checksum, no binary name
        ("data.zip", {"size": len(PAGE)}),  # exactly the size promised
    ],
)
async def test_pages_that_were_asked_for_are_downloaded(
    origin: FileServer, tmp_path: Path, path: str, fields: dict[str, object]
) -> None:
    _serve_page(origin, "served")
    entry = Entry(origin.url("served"), path=path, **fields)  # type: ignore[arg-type]
    async with Downloader(tmp_path, retries=0) as dl:
        result = (await dl.download([entry])).results[0]
    if "size" in fields and fields["size"] != len(PAGE):
        assert result.status == "failed"  # the size is still checked...
        assert "HTML page" not in (result.error or "")  # ...but it is no guard
        return
    assert result.status == "downloaded", result.error
    assert file_sha256(tmp_path / path) == sha256(PAGE)
