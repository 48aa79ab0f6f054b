"""Faults and RequestRecord: how ``testing.FileServer`` misbehaves, and what it saw."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Faults:
    """How one file misbehaves. Counters count down as requests use them up."""

    fail_status: int = 503  # answered to the first ``fail_times`` requests
    fail_times: int = 0
    retry_after: str | None = None  # Retry-After sent with those failures
    drop_after: int | None = None  # close the connection after N body bytes...
    drop_times: int = 1  # ...on this many requests
    stall_after: int | None = None  # stop sending after N body bytes...
    stall_times: int = 1  # ...on this many requests...
    stall_seconds: float = 30.0  # ...for this long
    range_faults_after: int = 0  # range faults spare this many Range requests first
    ignore_range: bool = False  # answer 200 + whole body to Range requests
    ignore_if_range: bool = False  # honour Range even when If-Range does not match
    wrong_range_start: int | None = None  # answer 206 starting at this byte instead
    # Content-Range sent on 206 answers instead of the true one, the body being
    # the range asked for: "{start}", "{end}", "{size}" are filled in, "" sends
    # none. E.g. "bytes -1-{end}/{size}", "bytes 0-{end}/{size}" (overlapping).
    content_range: str | None = None
    rate: float | None = None  # bytes per second, per connection
    range_rate: float | None = None  # the same for Range requests, if not ``rate``
    no_validators: bool = False  # send neither ETag nor Last-Modified
    no_length: bool = False  # chunked encoding, no Content-Length
    lie_length: int | None = None  # announce this Content-Length on 200 answers
    # (then send the real body and close the connection, as real servers do)
    change_after: int | None = None  # new content (and ETag) from request N+1 on
    content_type: str | None = None  # sent instead of application/octet-stream
    # Digest headers sent with the right value (of the file, or for
    # Content-Digest of the body sent): "Repr-Digest", "Content-Digest",
    # "x-goog-hash" (md5 and crc32c), "x-amz-checksum-sha256" (only when the
    # request asks with x-amz-checksum-mode: ENABLED, as S3 does).
    digests: tuple[str, ...] = ()
    wrong_digests: int = 0  # the first N answers carry digests of other bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # sent as they are
    ranges_seen: int = 0  # Range requests so far (kept by the server)
    requests_seen: int = 0  # GET requests so far (kept by the server)


@dataclass
class RequestRecord:
    """What the server saw, logged on arrival and updated while it answers."""

    method: str
    name: str
    headers: Mapping[str, str]
    status: int = 0  # 0 until the status is chosen
    sent: int = 0  # body bytes written so far
    at: float = field(default_factory=time.monotonic)  # when it arrived
