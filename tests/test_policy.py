"""Pure decisions (resume, retry, wait) as tables, plus the rate limiter's floor."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlsplit

import pytest

from downloader._engine.ratelimit import RateLimiter
from downloader._exceptions import ResumeRejected, TransferError
from downloader._policy import (
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    ContentRange,
    MirrorSet,
    RetryState,
    backoff_delay,
    can_resume,
    expected_total,
    host_key,
    origin_of,
    parse_complete_length,
    parse_content_range,
    parse_retry_after,
    pick_validator,
    resume_headers,
    resume_offset,
    unsatisfiable_resume,
    url_parts,
)
from downloader._settings import BACKOFF_BASE

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
ETAG = '"abc123"'
WEAK = 'W/"abc123"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"
URL = "http://h.test/f.bin"


def http_date(when: datetime) -> str:
    return format_datetime(when, usegmt=True)


# --- parse_content_range ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("bytes 10-99/100", ContentRange(10, 99, 100), id="valid"),
        pytest.param("bytes 0-0/1", ContentRange(0, 0, 1), id="one-byte"),
        pytest.param("bytes 0-99/*", ContentRange(0, 99, None), id="star-total"),
        pytest.param("  bytes 5-9/10  ", ContentRange(5, 9, 10), id="outer-space"),
        pytest.param("bytes   5-9/10", ContentRange(5, 9, 10), id="inner-space"),
        pytest.param("BYTES 5-9/10", ContentRange(5, 9, 10), id="upper-case"),
        pytest.param("Bytes 5-9/10", ContentRange(5, 9, 10), id="mixed-case"),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("bytes */100", None, id="unsatisfied-range"),
        pytest.param("bytes 5-/10", None, id="no-end"),
        pytest.param("bytes -9/10", None, id="no-start"),
        pytest.param("bytes 5-9", None, id="no-total"),
        pytest.param("bytes=5-9/10", None, id="equals-sign"),
        pytest.param("5-9/10", None, id="no-unit"),
        pytest.param("items 5-9/10", None, id="other-unit"),
        pytest.param("bytes 5-9/10x", None, id="trailing-junk"),
        pytest.param("bytes a-9/10", None, id="non-numeric"),
        pytest.param("bytes -5-9/10", None, id="negative"),
        pytest.param("bytes 9-5/10", None, id="end-before-start"),
        pytest.param("bytes 5-10/10", None, id="end-equals-total"),
        pytest.param("bytes 5-20/10", None, id="end-past-total"),
    ],
)
def test_parse_content_range(value: str | None, expected: ContentRange | None) -> None:
    assert parse_content_range(value) == expected


@pytest.mark.parametrize(
    ("value", "length"),
    [
        pytest.param("bytes 0-0/1", 1, id="one"),
        pytest.param("bytes 10-99/100", 90, id="ninety"),
        pytest.param("bytes 0-99/*", 100, id="star"),
    ],
)
def test_content_range_length(value: str, length: int) -> None:
    parsed = parse_content_range(value)
    assert parsed is not None
    assert parsed.length == length


# --- pick_validator ----------------------------------------------------------


@pytest.mark.parametrize(
    ("etag", "last_modified", "expected"),
    [
        pytest.param(ETAG, LAST_MODIFIED, ETAG, id="strong-etag-wins"),
        pytest.param(ETAG, None, ETAG, id="strong-etag-only"),
        pytest.param(WEAK, LAST_MODIFIED, LAST_MODIFIED, id="weak-etag-falls-back"),
        pytest.param(WEAK, None, None, id="weak-etag-alone-none"),
        pytest.param(None, LAST_MODIFIED, LAST_MODIFIED, id="last-modified-only"),
        pytest.param("", LAST_MODIFIED, LAST_MODIFIED, id="empty-etag"),
        pytest.param(None, "", None, id="empty-last-modified"),
        pytest.param(None, None, None, id="none"),
    ],
)
def test_pick_validator(
    etag: str | None, last_modified: str | None, expected: str | None
) -> None:
    assert pick_validator(etag, last_modified) == expected


# --- resume_headers ----------------------------------------------------------


@pytest.mark.parametrize(
    ("have", "validator", "expected"),
    [
        pytest.param(0, None, {}, id="nothing-on-disk"),
        pytest.param(0, ETAG, {}, id="nothing-on-disk-with-validator"),
        pytest.param(100, None, {"Range": "bytes=100-"}, id="no-validator"),
        pytest.param(100, "", {"Range": "bytes=100-"}, id="empty-validator"),
        pytest.param(100, ETAG, {"Range": "bytes=100-", "If-Range": ETAG}, id="etag"),
        pytest.param(
            1,
            LAST_MODIFIED,
            {"Range": "bytes=1-", "If-Range": LAST_MODIFIED},
            id="last-modified",
        ),
    ],
)
def test_resume_headers(
    have: int, validator: str | None, expected: dict[str, str]
) -> None:
    assert resume_headers(have, validator) == expected


# --- can_resume --------------------------------------------------------------


@pytest.mark.parametrize(
    ("have", "validator", "saved_url", "has_checksum", "expected"),
    [
        pytest.param(100, ETAG, URL, False, True, id="validator"),
        pytest.param(100, ETAG, None, False, True, id="validator-no-saved-url"),
        pytest.param(100, None, URL, True, True, id="checksum-and-saved-url"),
        pytest.param(100, None, None, True, False, id="checksum-no-saved-url"),
        pytest.param(100, None, URL, False, False, id="no-validator-no-checksum"),
        pytest.param(100, "", URL, False, False, id="empty-validator"),
        pytest.param(0, ETAG, URL, True, False, id="have-zero"),
        pytest.param(-1, ETAG, URL, True, False, id="have-negative"),
    ],
)
def test_can_resume(
    have: int,
    validator: str | None,
    saved_url: str | None,
    has_checksum: bool,
    expected: bool,
) -> None:
    got = can_resume(have, validator, saved_url=saved_url, has_checksum=has_checksum)
    assert got is expected


# --- resume_offset -----------------------------------------------------------


@pytest.mark.parametrize(
    ("have", "status", "content_range", "expected"),
    [
        pytest.param(0, 200, None, 0, id="200-fresh"),
        pytest.param(100, 200, None, 0, id="200-ignores-range"),
        pytest.param(
            100, 200, ContentRange(100, 199, 200), 0, id="200-with-stray-range"
        ),
        pytest.param(100, 206, ContentRange(100, 199, 200), 100, id="206-at-have"),
        pytest.param(100, 206, ContentRange(100, 199, None), 100, id="206-star"),
    ],
)
def test_resume_offset(
    have: int, status: int, content_range: ContentRange | None, expected: int
) -> None:
    assert resume_offset(have, status, content_range) == expected


@pytest.mark.parametrize(
    ("have", "status", "content_range"),
    [
        pytest.param(100, 206, ContentRange(0, 199, 200), id="206-from-zero"),
        pytest.param(100, 206, ContentRange(50, 199, 200), id="206-before-have"),
        pytest.param(100, 206, ContentRange(150, 199, 200), id="206-after-have"),
        pytest.param(100, 206, None, id="206-no-content-range"),
        pytest.param(100, 416, None, id="416"),
        pytest.param(100, 204, None, id="204"),
        pytest.param(0, 304, None, id="304"),
        pytest.param(100, 500, None, id="500"),
    ],
)
def test_resume_offset_rejects(
    have: int, status: int, content_range: ContentRange | None
) -> None:
    with pytest.raises(ResumeRejected):
        resume_offset(have, status, content_range)


@pytest.mark.parametrize(
    ("size", "content_range", "ok"),
    [
        pytest.param(200, ContentRange(100, 199, 200), True, id="same-size"),
        pytest.param(None, ContentRange(100, 199, 200), True, id="size-unknown"),
        pytest.param(200, ContentRange(100, 199, None), True, id="total-star"),
        pytest.param(500, ContentRange(100, 199, 200), False, id="announced-more"),
        pytest.param(150, ContentRange(100, 199, 200), False, id="announced-less"),
    ],
)
def test_resume_offset_wants_the_size_announced_at_first(
    size: int | None, content_range: ContentRange, ok: bool
) -> None:
    if ok:
        assert resume_offset(100, 206, content_range, size=size) == 100
    else:
        with pytest.raises(ResumeRejected, match="the server's sizes disagree"):
            resume_offset(100, 206, content_range, size=size)


# --- a 416 to a resume -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes */1000", 1000),
        ("BYTES  */0 ", 0),
        ("bytes 0-9/10", None),
        ("bytes */*", None),
        ("bytes */-5", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_complete_length(value: str | None, expected: int | None) -> None:
    assert parse_complete_length(value) == expected


@pytest.mark.parametrize(
    ("have", "announced", "actual", "retryable", "words"),
    [
        pytest.param(
            300,
            500,
            300,
            False,
            "body cut short at byte 300: the server announced 500 bytes, but asked "
            "for the rest it says the file is 300 bytes long (its Content-Length "
            "is wrong)",
            id="length-lie",
        ),
        pytest.param(
            3_000_000,
            5_000_000,
            3_000_000,
            False,
            "body cut short at byte 3,000,000: the server announced 5,000,000 bytes",
            id="length-lie-thousands",
        ),
        pytest.param(
            300, 500, 200, True, "the file on the server is now 200 bytes", id="shrank"
        ),
        pytest.param(
            300, None, 200, True, "shorter than the 300 downloaded before", id="shrank2"
        ),
        pytest.param(
            300,
            500,
            None,
            True,
            "the server announced 500 bytes but refuses any past byte 300",
            id="no-content-range",
        ),
        pytest.param(
            300,
            None,
            None,
            True,
            "server answered 416 to a resume from byte 300",
            id="nothing-known",
        ),
        pytest.param(
            300, 300, 300, True, "server answered 416", id="complete-and-agreed"
        ),
        pytest.param(
            300, None, 300, True, "server answered 416", id="size-never-announced"
        ),
    ],
)
def test_unsatisfiable_resume_explains_the_416(
    have: int, announced: int | None, actual: int | None, retryable: bool, words: str
) -> None:
    error = unsatisfiable_resume(have, announced, actual, url=URL)
    assert isinstance(error, TransferError)
    assert words in str(error)
    assert error.retryable is retryable
    assert isinstance(error, ResumeRejected) is retryable  # a restart from zero
    assert error.url == URL


# --- expected_total ----------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "content_length", "content_range", "expected"),
    [
        pytest.param(100, 100, ContentRange(100, 199, 200), 200, id="range-total-wins"),
        pytest.param(
            100, 999, ContentRange(100, 199, 200), 200, id="range-beats-length"
        ),
        pytest.param(
            100, 100, ContentRange(100, 199, None), 200, id="star-uses-length"
        ),
        pytest.param(0, 500, None, 500, id="length-only"),
        pytest.param(100, 400, None, 500, id="length-plus-offset"),
        pytest.param(0, 0, None, 0, id="empty-file"),
        pytest.param(100, None, ContentRange(100, 199, None), None, id="star-alone"),
        pytest.param(0, None, None, None, id="unknown"),
    ],
)
def test_expected_total(
    offset: int,
    content_length: int | None,
    content_range: ContentRange | None,
    expected: int | None,
) -> None:
    assert expected_total(offset, content_length, content_range) == expected


# --- parse_retry_after -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0", 0.0, id="zero-seconds"),
        pytest.param("120", 120.0, id="seconds"),
        pytest.param("  7 ", 7.0, id="seconds-whitespace"),
        pytest.param(str(int(RETRY_AFTER_CAP)), RETRY_AFTER_CAP, id="seconds-at-cap"),
        pytest.param("86400", RETRY_AFTER_CAP, id="seconds-capped"),
        pytest.param("9" * 40, RETRY_AFTER_CAP, id="seconds-huge"),
        pytest.param(http_date(NOW + timedelta(seconds=90)), 90.0, id="date-future"),
        pytest.param(http_date(NOW), 0.0, id="date-now"),
        pytest.param(http_date(NOW - timedelta(hours=1)), 0.0, id="date-past"),
        pytest.param(
            http_date(NOW + timedelta(days=2)), RETRY_AFTER_CAP, id="date-capped"
        ),
        pytest.param(
            "Wed, 01 May 2024 12:00:30 -0000", 30.0, id="date-naive-taken-as-utc"
        ),
        pytest.param(None, None, id="none"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="fraction"),
        pytest.param("12 s", None, id="seconds-with-unit"),
        pytest.param("Wed, 32 Oct 2015 07:28:00 GMT", None, id="bad-day"),
        pytest.param("²", None, id="unicode-digit"),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_parse_retry_after_date_without_now_uses_clock() -> None:
    past = http_date(datetime.now(UTC) - timedelta(hours=1))
    assert parse_retry_after(past) == 0.0


# --- backoff_delay -----------------------------------------------------------


def ceiling(failures: int) -> float:
    exponent = min(max(failures - 1, 0), 64)  # 2**64 * base is far past the cap
    return min(BACKOFF_CAP, BACKOFF_BASE * 2.0**exponent)


@pytest.mark.parametrize(
    ("failures", "expected_ceiling"),
    [
        pytest.param(0, 0.5, id="0"),
        pytest.param(1, 0.5, id="1"),
        pytest.param(2, 1.0, id="2"),
        pytest.param(3, 2.0, id="3"),
        pytest.param(5, 8.0, id="5"),
        pytest.param(7, 32.0, id="7"),
        pytest.param(8, BACKOFF_CAP, id="8-capped"),
        pytest.param(20, BACKOFF_CAP, id="20-capped"),
        pytest.param(2000, BACKOFF_CAP, id="2000-capped"),
    ],
)
def test_backoff_delay_within_jitter_band(
    failures: int, expected_ceiling: float
) -> None:
    rng = random.Random(1234)
    delays = [backoff_delay(failures, rng=rng) for _ in range(200)]
    assert all(expected_ceiling / 2 <= d <= expected_ceiling for d in delays)
    assert max(delays) <= BACKOFF_CAP
    assert len(set(delays)) > 1  # jittered, not a constant


def test_backoff_delay_grows_exponentially() -> None:
    rng = random.Random(7)
    # Bands [c/2, c] for consecutive failures touch but do not overlap, so each
    # draw is at least the previous band's floor times two.
    delays = [backoff_delay(n, rng=rng) for n in range(1, 8)]
    for n, delay in enumerate(delays, start=1):
        assert ceiling(n) / 2 <= delay <= ceiling(n)
    assert delays == sorted(delays)
    assert delays[-1] >= 16 * delays[0]


def test_backoff_delay_is_reproducible_with_seed() -> None:
    a = [backoff_delay(n, rng=random.Random(42)) for n in range(1, 10)]
    b = [backoff_delay(n, rng=random.Random(42)) for n in range(1, 10)]
    assert a == b


@pytest.mark.parametrize(
    ("failures", "retry_after", "low", "high"),
    [
        pytest.param(1, 30.0, 30.0, 30.0, id="retry-after-longer"),
        pytest.param(1, 0.0, 0.25, 0.5, id="retry-after-zero"),
        pytest.param(6, 1.0, 8.0, 16.0, id="backoff-longer"),
        pytest.param(
            20,
            RETRY_AFTER_CAP,
            RETRY_AFTER_CAP,
            RETRY_AFTER_CAP,
            id="retry-after-beyond-backoff-cap",
        ),
    ],
)
def test_backoff_delay_honours_retry_after(
    failures: int, retry_after: float, low: float, high: float
) -> None:
    rng = random.Random(99)
    for _ in range(50):
        delay = backoff_delay(failures, retry_after, rng=rng)
        assert delay >= retry_after
        assert low <= delay <= high


# --- RetryState and MirrorSet ---------------------------------------------------


@pytest.mark.parametrize(
    ("failures", "retries", "progressed", "expected"),
    [
        pytest.param(0, 3, False, 1, id="first-failure"),
        pytest.param(2, 3, False, 3, id="last-allowed"),
        pytest.param(3, 3, False, None, id="budget-spent"),
        pytest.param(0, 0, False, None, id="no-retries"),
        pytest.param(3, 3, True, 3, id="progress-costs-nothing"),
        pytest.param(0, 0, True, 0, id="progress-with-no-retries"),
    ],
)
def test_retry_state_after_a_failure(
    failures: int, retries: int, progressed: bool, expected: int | None
) -> None:
    before = RetryState(retries, failures=failures)
    after = before.after_failure(progressed=progressed)
    assert (after.failures if after is not None else None) == expected
    assert before.failures == failures  # a value: never changed
    assert after is None or after.wait


def test_the_first_rejected_resume_is_free_and_at_once() -> None:
    first = RetryState(0).after_restart()
    assert first is not None
    assert (first.failures, first.free_restart, first.wait) == (0, False, False)
    assert first.after_restart() is None  # the second costs a retry: none left
    second = RetryState(1, free_restart=False).after_restart()
    assert second is not None
    assert (second.failures, second.wait) == (1, True)


def test_another_mirror_goes_at_once_and_costs_no_retry() -> None:
    tries = RetryState(2, failures=1).at_once()
    assert (tries.failures, tries.wait) == (1, False)


def test_retry_delay_grows_and_honours_retry_after() -> None:
    rng = random.Random(0)
    assert RetryState(5).delay(base=1.0, rng=rng) <= 1.0  # 0 failures: as 1
    assert 4.0 <= RetryState(5, failures=4).delay(base=1.0, rng=rng) <= 8.0
    assert RetryState(5, failures=1).delay(30.0, base=1.0, rng=rng) == 30.0


@pytest.mark.parametrize(
    ("urls", "turns", "expected"),
    [
        pytest.param(("a",), 0, "a", id="one"),
        pytest.param(("a",), 3, "a", id="one-rotated"),
        pytest.param(("a", "b", "c"), 1, "b", id="next"),
        pytest.param(("a", "b", "c"), 3, "a", id="round"),
    ],
)
def test_mirror_set_rotates(urls: tuple[str, ...], turns: int, expected: str) -> None:
    mirrors = MirrorSet(urls)
    for _ in range(turns):
        mirrors = mirrors.rotate()
    assert mirrors.current == expected


def test_mirror_set_drops_a_url_and_ends_with_the_last() -> None:
    mirrors = MirrorSet(("a", "b", "c"), turn=1)
    dropped = mirrors.drop("b")
    assert dropped is not None
    assert (dropped.urls, dropped.current) == (("a", "c"), "c")  # b's turn passes on
    last = MirrorSet(("a",)).drop("a")
    assert last is None


# --- RateLimiter -------------------------------------------------------------


@pytest.mark.parametrize(
    "rate", [pytest.param(0, id="zero"), pytest.param(-1, id="neg")]
)
def test_rate_limiter_rejects_non_positive_rate(rate: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(rate)


async def test_rate_limiter_enforces_lower_bound() -> None:
    # The bucket starts full with max(rate / 4, 64 KiB) = 64 KiB, so 300 kB at
    # 200 kB/s needs at least (300_000 - 65_536) / 200_000 ~ 1.17 s.
    limiter = RateLimiter(200_000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(30):
        await limiter.acquire(10_000)
    elapsed = loop.time() - start
    assert elapsed >= 1.0


async def test_rate_limiter_burst_within_bucket_is_immediate() -> None:
    limiter = RateLimiter(200_000)
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await limiter.acquire(10_000)  # 60 kB < 64 KiB bucket
    assert loop.time() - start < 0.5


# --- url_parts, origin_of, host_key -------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://h.test/f.bin",
        "HTTP://H.Test:8080/a/b?q=1#frag",
        "https://user:pw@h.test:8443/x",
        "http://[::1]:8080/f",
        "http://h.test?x=1",
        "http://h.test#frag",
        "http://h.test:notaport/f",
        "http://h.test:/f",
        " http://h.test/f",
        "http://h.te\tst/f",
        "ftp://h.test/f",
        "no scheme at all",
        "",
    ],
)
def test_url_parts_agree_with_urlsplit(url: str) -> None:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    assert url_parts(url) == (parts.scheme.lower(), parts.hostname or "", port)


@pytest.mark.parametrize(
    ("url", "origin", "key"),
    [
        ("http://h.test/f", ("http", "h.test", 80), "h.test:"),
        ("https://h.test/f", ("https", "h.test", 443), "h.test:"),
        ("http://h.test:80/f", ("http", "h.test", 80), "h.test:80"),
        ("http://H.test:8080/f", ("http", "h.test", 8080), "h.test:8080"),
        ("ftp://h.test/f", ("ftp", "h.test", None), "h.test:"),
    ],
)
def test_origin_and_host_key(
    url: str, origin: tuple[str, str, int | None], key: str
) -> None:
    assert origin_of(url) == origin
    assert host_key(url) == key
