"""The synchronous front door: ``downloader.download(...)``."""

from __future__ import annotations

import asyncio
from typing import Any

from ._engine import Downloader
from ._manifest import EntriesLike, ShardLike, SumsFile
from ._models import Report
from ._types import StrPath


def download(
    entries: EntriesLike,
    dest: StrPath = ".",
    *,
    fmt: str | None = None,
    shard: ShardLike | None = None,
    checksums: StrPath | SumsFile | None = None,
    base_url: str | None = None,
    **options: Any,
) -> Report:
    """Download ``entries`` into ``dest`` and return the report (blocking).

    Parameters
    ----------
    entries:
        A manifest path, URL strings, dicts of manifest fields, or ``Entry``s.
    dest:
        Root folder for the files.
    fmt:
        Manifest format when the extension cannot tell.
    shard:
        ``"K/N"``: only the entries shard K of N owns (a stable hash of the
        output path), for job arrays that split one manifest N ways.
    checksums:
        A sums file (``sha256sum``/``md5sum``/``b2sum`` output; ``"sha512:FILE"``
        names the algorithm) whose digests the entries it names must match;
        its paths are relative to ``dest``.
    base_url:
        The folder a manifest's relative URLs are joined onto (for lists of
        paths such as Common Crawl's ``warc.paths.gz``); absolute URLs stay.
    **options:
        Any keyword of ``Downloader`` (``jobs``, ``retries``, ``progress`` ...).

    Raises
    ------
    ManifestError
        The input is unusable; nothing was transferred.
    DownloadFailed
        Only with ``raise_on_failure=True``.
    RuntimeError
        Called from inside a running event loop: use ``Downloader`` there.
    """

    async def run() -> Report:
        async with Downloader(dest, **options) as dl:
            return await dl.download(
                entries, fmt=fmt, shard=shard, checksums=checksums, base_url=base_url
            )

    return asyncio.run(run())
