"""Resumable, streaming, manifest-driven bulk file downloader.

report = downloader.download("manifests/x.jsonl", dest="data", jobs=8)
"""

from __future__ import annotations

from ._api import download
from ._engine import Downloader
from ._exceptions import (
    ConnectionLost,
    DownloadError,
    DownloadFailed,
    HTTPStatusError,
    IntegrityError,
    ManifestError,
    ReadTimeout,
    ResumeRejected,
    StorageError,
    TransferError,
)
from ._integrity import Checksum
from ._models import Entry, Report, Result, Summary
from ._progress import LogProgress, NullProgress, ProgressSink, TqdmProgress
from ._version import __version__

__all__ = [
    "Checksum",
    "ConnectionLost",
    "DownloadError",
    "DownloadFailed",
    "Downloader",
    "Entry",
    "HTTPStatusError",
    "IntegrityError",
    "LogProgress",
    "ManifestError",
    "NullProgress",
    "ProgressSink",
    "ReadTimeout",
    "Report",
    "Result",
    "ResumeRejected",
    "StorageError",
    "Summary",
    "TqdmProgress",
    "TransferError",
    "__version__",
    "download",
]
