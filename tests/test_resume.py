"""Resume, restart and integrity rules of SPEC section 3, against a real server."""

from __future__ import annotations

from pathlib import Path

import pytest

from downloader import Checksum, Downloader, Entry, Result
from downloader._storage import FilePaths, ResumeState, save_state
from downloader.testing import Faults, FileServer, make_bytes

from .conftest import file_sha256, gets, sha256


def leave_part(
    origin: FileServer,
    dest: Path,
    name: str,
    content: bytes,
    *,
    validator: str | bool | None = True,
    size: int | bool | None = True,
) -> None:
    """What an earlier, interrupted run leaves: ``content`` in the part, and state.

    ``validator=True`` records the server's current ETag, ``size=True`` its size.
    """
    paths = FilePaths.under(dest, name)
    paths.part.write_bytes(content)
    etag = origin._state[name].etag if validator is True else validator or None
    total = len(origin.files[name]) if size is True else size or None
    save_state(paths.state, ResumeState(origin.url(name), etag, total))


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.rglob("*.part*"))


async def fetch(
    origin: FileServer, dest: Path, entry: Entry, **options: object
) -> Result:
    options.setdefault("retries", 2)
    options.setdefault("timeout", 5)
    async with Downloader(dest, **options) as dl:  # type: ignore[arg-type]
        report = await dl.download([entry])
    return report.results[0]


async def test_resumes_after_drop_with_range_and_if_range(
    origin: FileServer, tmp_path: Path
) -> None:
    # Paced, so the client has written bytes before the drop (aiohttp drops what
    # it still had buffered when the connection breaks).
    origin.faults["big.bin"] = Faults(drop_after=1_000_000, rate=10_000_000)
    result = await fetch(origin, tmp_path, Entry(origin.url("big.bin")))

    assert result.status == "downloaded"
    size = len(origin.files["big.bin"])
    assert file_sha256(tmp_path / "big.bin") == sha256(origin.files["big.bin"])
    first, second = gets(origin, "big.bin")
    assert "Range" not in first.headers
    assert first.headers["Accept-Encoding"] == "identity"
    have = int(second.headers["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < have <= 1_000_000
    assert second.headers["If-Range"] == origin._state["big.bin"].etag
    assert second.status == 206
    assert origin.bytes_sent("big.bin") == size + (1_000_000 - have)
    assert result.bytes == size
    assert result.attempts == 2
    assert leftovers(tmp_path) == []


async def test_drop_with_progress_does_not_use_up_retries(
    origin: FileServer, tmp_path: Path
) -> None:
    origin.faults["big.bin"] = Faults(drop_after=400_000, drop_times=6, rate=20_000_000)
    result = await fetch(origin, tmp_path, Entry(origin.url("big.bin")), retries=0)

    assert result.status == "downloaded"
    assert result.attempts == 7
    assert file_sha256(tmp_path / "big.bin") == sha256(origin.files["big.bin"])


async def test_resumes_part_left_by_earlier_run(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", data[:100_000])
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert result.bytes == len(data) - 100_000
    assert gets(origin, "blob.bin")[0].headers["Range"] == "bytes=100000-"
    assert file_sha256(tmp_path / "blob.bin") == sha256(data)


async def test_changed_file_restarts_from_zero_not_spliced(
    origin: FileServer, tmp_path: Path
) -> None:
    old = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", old[:100_000])
    new = make_bytes(300_000, "changed")
    origin.set_file("blob.bin", new)
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert (tmp_path / "blob.bin").read_bytes() == new
    assert gets(origin, "blob.bin")[0].status == 200  # If-Range failed: whole body


async def test_server_ignoring_range_gets_restart_not_append(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", data[:100_000])
    origin.faults["blob.bin"] = Faults(ignore_range=True)
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert result.bytes == len(data)
    assert file_sha256(tmp_path / "blob.bin") == sha256(data)


async def test_206_at_wrong_offset_is_never_written(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", data[:100_000])
    origin.faults["blob.bin"] = Faults(wrong_range_start=50_000)
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert file_sha256(tmp_path / "blob.bin") == sha256(data)
    statuses = [r.status for r in gets(origin, "blob.bin")]
    assert statuses == [206, 200]  # the bad 206 discarded, then a clean restart


# Content-Range lies on a 206 whose body is the range asked for: none may be
# taken at its word (the bytes would land at the wrong offset, or on top of
# bytes already there), and none may be written where it was asked for either.
RANGE_LIES = [
    pytest.param("bytes -100-{end}/{size}", id="negative-start"),
    pytest.param("bytes -{start}-{end}/{size}", id="negated"),
    pytest.param("bytes {end}-{start}/{size}", id="backwards"),
    pytest.param("bytes 0-{end}/{size}", id="overlaps-from-zero"),
    pytest.param("bytes 1-{end}/{size}", id="overlaps-what-is-here"),
    pytest.param("bytes {end}-{end}/{size}", id="starts-later"),
    pytest.param("bytes {start}-{size}/{size}", id="past-the-end"),
    pytest.param("bytes {start}-{end}/99999999", id="other-total"),
    pytest.param("bytes {start}-{end}", id="no-total"),
    pytest.param("bytes={start}-{end}/{size}", id="request-syntax"),
    pytest.param("", id="missing"),
]


@pytest.mark.parametrize("lie", RANGE_LIES)
@pytest.mark.parametrize("mode", ["resume", "split"])
async def test_lying_content_range_is_never_written(
    origin: FileServer, tmp_path: Path, mode: str, lie: str
) -> None:
    """End to end: a resume after a drop, or the extra ranges of a split file."""
    data = make_bytes(1_500_000, "lie")  # over 1 MiB: resumable, splittable
    origin.set_file("big.bin", data)
    fault = Faults(content_range=lie, rate=20_000_000)
    if mode == "resume":
        fault.drop_after = 500_000  # the first answer: a part to resume
    origin.faults["big.bin"] = fault
    async with Downloader(
        tmp_path, split=1 if mode == "resume" else 3, min_split_size=256 * 1024,
        retries=2, retry_wait=0.01,
    ) as dl:  # fmt: skip
        report = await dl.download([origin.url("big.bin")])  # no checksum to save it

    result = report.results[0]
    final = tmp_path / "big.bin"
    assert result.status == "downloaded", result.error
    assert file_sha256(final) == sha256(data)
    assert leftovers(tmp_path) == []
    requests = gets(origin, "big.bin")
    assert any(r.status == 206 for r in requests)  # the lie was told...
    assert "Range" not in requests[-1].headers  # ...and cost a restart from zero
    assert requests[-1].sent == len(data)


async def test_206_of_a_file_of_another_size_is_never_written(
    origin: FileServer, tmp_path: Path
) -> None:
    """Same ETag, but the server once said 500,000 bytes and now says 300,000."""
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", data[:100_000], size=500_000)
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert file_sha256(tmp_path / "blob.bin") == sha256(data)
    first, second = gets(origin, "blob.bin")
    assert (first.status, first.headers["Range"]) == (206, "bytes=100000-")
    assert (second.status, "Range" in second.headers) == (200, False)  # from zero


async def test_no_validator_and_no_checksum_restarts(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", b"x" * 100_000, validator=None)
    # garbage without a validator: must not be kept
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))

    assert result.status == "downloaded"
    assert "Range" not in gets(origin, "blob.bin")[0].headers
    assert (tmp_path / "blob.bin").read_bytes() == data


async def test_no_validator_but_checksum_resumes_and_verifies(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    origin.faults["blob.bin"] = Faults(
        no_validators=True, drop_after=120_000, rate=5_000_000
    )
    entry = Entry(origin.url("blob.bin"), checksum=Checksum("sha256", sha256(data)))
    result = await fetch(origin, tmp_path, entry)

    assert result.status == "downloaded"
    assert result.checksum == f"sha256:{sha256(data)}"
    second = gets(origin, "blob.bin")[1]
    assert second.headers["Range"].startswith("bytes=")
    assert second.headers["Range"] != "bytes=0-"
    assert "If-Range" not in second.headers
    assert second.status == 206
    assert file_sha256(tmp_path / "blob.bin") == sha256(data)


async def test_complete_part_killed_before_rename_is_published_without_request(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["blob.bin"]
    leave_part(origin, tmp_path, "blob.bin", data)
    entry = Entry(origin.url("blob.bin"), checksum=Checksum("sha256", sha256(data)))
    result = await fetch(origin, tmp_path, entry)

    assert result.status == "downloaded"
    assert result.bytes == 0
    assert gets(origin, "blob.bin") == []
    assert (tmp_path / "blob.bin").read_bytes() == data


async def test_part_longer_than_file_restarts(
    origin: FileServer, tmp_path: Path
) -> None:
    data = origin.files["small.bin"]
    leave_part(origin, tmp_path, "small.bin", data + b"extra" * 1000, size=None)
    result = await fetch(origin, tmp_path, Entry(origin.url("small.bin")))

    assert result.status == "downloaded"
    assert [r.status for r in gets(origin, "small.bin")] == [416, 200]
    assert (tmp_path / "small.bin").read_bytes() == data


async def test_checksum_mismatch_discards_and_fails_after_retries(
    origin: FileServer, tmp_path: Path
) -> None:
    wrong = Checksum("sha256", "0" * 64)
    entry = Entry(origin.url("small.bin"), checksum=wrong)
    result = await fetch(origin, tmp_path, entry, retries=1)

    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(
        f"checksum mismatch: expected sha256:{'0' * 64} got "
    )
    assert sha256(origin.files["small.bin"]) in result.error
    assert len(gets(origin, "small.bin")) == 2
    assert not (tmp_path / "small.bin").exists()
    assert leftovers(tmp_path) == []


async def test_size_mismatch_announced_fails_without_writing(
    origin: FileServer, tmp_path: Path
) -> None:
    entry = Entry(origin.url("small.bin"), size=999)
    result = await fetch(origin, tmp_path, entry)

    assert result.status == "failed"
    assert "999" in (result.error or "")
    assert not (tmp_path / "small.bin").exists()


@pytest.mark.parametrize(
    ("on_disk", "expect_request"),
    [("same", False), ("truncated", True), ("corrupt", True)],
)
async def test_existing_final_file_skipped_only_when_it_matches(
    origin: FileServer, tmp_path: Path, on_disk: str, expect_request: bool
) -> None:
    data = origin.files["blob.bin"]
    content = {
        "same": data,
        "truncated": data[:1000],
        "corrupt": b"\0" + data[1:],
    }[on_disk]
    (tmp_path / "blob.bin").write_bytes(content)
    entry = Entry(origin.url("blob.bin"), checksum=Checksum("sha256", sha256(data)))
    result = await fetch(origin, tmp_path, entry)

    assert (tmp_path / "blob.bin").read_bytes() == data
    assert bool(gets(origin, "blob.bin")) is expect_request
    assert result.status == ("downloaded" if expect_request else "skipped")


async def test_existing_file_without_size_or_checksum_counts_unless_overwrite(
    origin: FileServer, tmp_path: Path
) -> None:
    (tmp_path / "blob.bin").write_bytes(b"old")
    result = await fetch(origin, tmp_path, Entry(origin.url("blob.bin")))
    assert result.status == "skipped"
    assert (tmp_path / "blob.bin").read_bytes() == b"old"

    result = await fetch(
        origin, tmp_path, Entry(origin.url("blob.bin")), overwrite=True
    )
    assert result.status == "downloaded"
    assert (tmp_path / "blob.bin").read_bytes() == origin.files["blob.bin"]
