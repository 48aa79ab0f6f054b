"""The rules of the house: pure decisions, no I/O, no asyncio (h11's ``_state.py``).

Rule 1: every decision about bytes, URLs, headers, retries and resumption is
made here, once, as a function of plain data, and is table-tested
(``tests/test_policy.py``, ``tests/test_plan.py``). The engine, the storage
and the HTTP wings gather facts and carry out the answers.

- ``urls.py``     origins and host keys, cached per ``scheme://netloc``
- ``headers.py``  the one credential rule (``headers_for``), header merging
- ``answers.py``  ``Answer`` and what a response alone says: ranges, validators
- ``resume.py``   ``plan_entry``: skip, replace, resume (how), restart, new;
                  checks of resumed answers and of the bytes against the manifest
- ``retry.py``    ``RetryState``, ``MirrorSet``, backoff, ``Retry-After``
- ``hostlimit.py`` HostLimit: a host's connections, halved on 429/503, regrown
- ``pacing.py``   HostPace: a host's requests per second, paced after push-backs
- ``flight.py``   FlightLimit: files in flight, grown while files/s rises
- ``quota.py``    the ``RateLimit`` headers: requests left, and when they reset
- ``digests.py``  a server's digests (Repr-Digest, x-goog-hash...): read, chosen
- ``pages.py``    the HTML-page guard: an error page where a file was expected
- ``refresh.py``  lock file records, and the conditional request of a refresh
"""

from __future__ import annotations

from .answers import (
    Answer,
    ContentRange,
    ask_entry_again,
    check_range_answer,
    cut_short,
    expected_total,
    is_etag,
    parse_complete_length,
    parse_content_range,
    pick_validator,
    unsupported_transfer_coding,
)
from .digests import (
    ServerDigest,
    checksum_request,
    server_digests,
    with_server_digest,
)
from .flight import FlightLimit, Round, next_limit
from .headers import CallerHeaders, headers_for, merge_headers, netrc_may_go
from .hostlimit import HostLimit, Pushback, pushed_back
from .pacing import HostPace
from .pages import html_page
from .quota import HostQuota, Quota, host_pause, parse_quota
from .refresh import (
    LOCK_FIELDS,
    Known,
    conditional_headers,
    kept_note,
    known_from_record,
    lock_record,
)
from .resume import (
    DiskFacts,
    FinalFacts,
    Plan,
    SavedState,
    announced_mismatch,
    can_resume,
    held_bytes,
    integrity_error,
    plan_entry,
    plan_part,
    range_headers,
    resume_headers,
    resume_offset,
    segments_resumable,
    splittable,
    unsatisfiable_resume,
)
from .retry import (
    BACKOFF_CAP,
    RETRY_AFTER_CAP,
    MirrorSet,
    RetryState,
    backoff_delay,
    parse_retry_after,
)
from .urls import host_key, origin_of, url_parts

__all__ = [
    "BACKOFF_CAP",
    "LOCK_FIELDS",
    "RETRY_AFTER_CAP",
    "Answer",
    "CallerHeaders",
    "ContentRange",
    "DiskFacts",
    "FinalFacts",
    "FlightLimit",
    "HostLimit",
    "HostPace",
    "HostQuota",
    "Known",
    "MirrorSet",
    "Plan",
    "Pushback",
    "Quota",
    "RetryState",
    "Round",
    "SavedState",
    "ServerDigest",
    "announced_mismatch",
    "ask_entry_again",
    "backoff_delay",
    "can_resume",
    "check_range_answer",
    "checksum_request",
    "conditional_headers",
    "cut_short",
    "expected_total",
    "headers_for",
    "held_bytes",
    "host_key",
    "host_pause",
    "html_page",
    "integrity_error",
    "is_etag",
    "kept_note",
    "known_from_record",
    "lock_record",
    "merge_headers",
    "netrc_may_go",
    "next_limit",
    "origin_of",
    "parse_complete_length",
    "parse_content_range",
    "parse_quota",
    "parse_retry_after",
    "pick_validator",
    "plan_entry",
    "plan_part",
    "pushed_back",
    "range_headers",
    "resume_headers",
    "resume_offset",
    "segments_resumable",
    "server_digests",
    "splittable",
    "unsatisfiable_resume",
    "unsupported_transfer_coding",
    "url_parts",
    "with_server_digest",
]
