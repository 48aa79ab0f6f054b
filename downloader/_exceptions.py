"""The exception hierarchy: every failure this package raises on purpose.

DownloadError                 base; .url
├── ManifestError             unusable input (.source, .line)
├── TransferError             network side (.retryable)
│   ├── HTTPStatusError       non-2xx (.status, .retry_after, .complete_length)
│   ├── ReadTimeout           no bytes for --timeout seconds
│   ├── ConnectionLost        connection dropped or body cut short
│   └── ResumeRejected        bad 206, or the file changed: restart from zero
├── IntegrityError            size/digest mismatch (.expected, .actual)
├── StorageError              disk, permissions, corrupt state
├── DownloadFailed            raise_on_failure=True and a file failed (.report)
├── ClusterError              no cluster: Dask missing, or its scheduler unreachable
├── ShardStopped              the client ended a cluster run; pickled from a worker
└── UsageError                the command line's: a usage problem found after argparse

Not in ``downloader.__all__``: ``ClusterError`` is public as
``downloader.distributed.ClusterError``; ``ShardStopped`` (a Dask worker's) and
``UsageError`` (the CLI's) are internal.

Misuse by a calling program is not in this tree: it raises Python's own
exceptions, as the standard library does (``TypeError`` for an unknown
setting, ``ValueError`` for ``jobs=0``, ``RuntimeError`` for a ``Downloader``
used outside ``async with``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Report


class DownloadError(Exception):
    """Base class for every failure this package raises on purpose."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class ManifestError(DownloadError):
    """A manifest (or an entry passed in code) cannot be used as it is."""

    def __init__(
        self, reason: str, *, source: str = "<entries>", line: int | None = None
    ) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class TransferError(DownloadError):
    """The network side failed; ``retryable`` says whether another try may help."""

    retryable: bool = True

    def __init__(
        self, message: str, *, url: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message, url=url)
        if retryable is not None:
            self.retryable = retryable


class HTTPStatusError(TransferError):
    """The server answered with a status we cannot use."""

    def __init__(
        self,
        status: int,
        *,
        url: str,
        retry_after: float | None = None,
        complete_length: int | None = None,
    ) -> None:
        super().__init__(f"server answered {status}", url=url)
        self.status = status
        self.retry_after = retry_after
        self.complete_length = complete_length  # a 416's "bytes */N": the real size
        # A 403 that says when to come back is a rate limit (firewalls, CDNs).
        self.retryable = (
            status in (408, 429)
            or status >= 500
            or (status == 403 and retry_after is not None)
        )


class ReadTimeout(TransferError):
    """No bytes arrived for longer than the read timeout."""


class ConnectionLost(TransferError):
    """The connection failed or the body ended before its announced length."""


class ResumeRejected(TransferError):
    """A resume answer did not continue at our byte: the file restarts from zero."""


class IntegrityError(DownloadError):
    """The bytes are not what the manifest promised."""

    def __init__(self, what: str, *, expected: str, actual: str, url: str) -> None:
        super().__init__(f"{what} mismatch: expected {expected} got {actual}", url=url)
        self.expected = expected
        self.actual = actual


class StorageError(DownloadError):
    """The destination cannot be written, or saved resume state is unusable."""


class DownloadFailed(DownloadError):
    """Some files failed and the caller asked for an exception (``.report`` has all)."""

    def __init__(self, report: Report) -> None:
        failed = report.failed
        first = failed[0]
        super().__init__(
            f"{len(failed)} of {report.summary.files} files failed; "
            f"first: {first.path}: {first.error}",
            url=first.url,
        )
        self.report = report


class ClusterError(DownloadError):
    """No cluster to run on: Dask is missing, or its scheduler cannot be reached."""


class ShardStopped(DownloadError):
    """The client ended the run while this shard was queued or running."""


class UsageError(DownloadError):
    """A usage problem found after argparse (the message says what to do).

    The command line's: it turns into ``error: ...`` and exit status 2.
    """
