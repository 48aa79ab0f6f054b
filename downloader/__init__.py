"""Resumable, streaming, manifest-driven bulk file downloader.

report = downloader.download("manifests/x.jsonl", dest="data", jobs=8)

How the package is built (docs/architecture.md has the whole map):

1. ``_policy/`` decides, and nothing else does: every rule about bytes, URLs,
   headers, retries and resuming is a pure, table-tested function there.
2. One wing per foreign thing: ``_http/`` alone imports aiohttp's client,
   ``_storage/`` alone writes under --dest, ``_progress`` alone uses tqdm,
   ``_cli/`` alone prints.
3. Imports run downwards (``tests/test_layers.py``): ``_cli`` -> ``_api``,
   ``_offline``, ``distributed``, ``_cluster`` -> ``_engine`` -> ``_http``,
   ``_storage`` -> ``_policy``, ``_manifest``, ``_progress``, ``_events`` ->
   ``_settings``, ``_models``, ``_exceptions``, ``_integrity``.
"""

from __future__ import annotations

import typing

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
from ._settings import Settings
from ._version import __version__

if typing.TYPE_CHECKING:
    from ._api import download
    from ._engine import Downloader

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
    "Settings",
    "StorageError",
    "Summary",
    "TqdmProgress",
    "TransferError",
    "__version__",
    "download",
]


def __getattr__(name: str) -> typing.Any:
    """``download`` and ``Downloader`` load aiohttp on first use, not on import.

    The package is imported by every ``downloader`` command, and ``plan``,
    ``verify`` and ``--help`` never touch the network (~150 ms less each).
    """
    if name == "download":
        from ._api import download

        return download
    if name == "Downloader":
        from ._engine import Downloader

        return Downloader
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
