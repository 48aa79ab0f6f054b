"""What to download: manifests and entries given in code, checked whole, read lazily."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from .._exceptions import ManifestError
from .._models import Entry
from .._types import StrPath
from .check import check_entries, check_manifests_stats
from .fields import coerce_entries
from .formats import iter_manifest
from .relative import check_base_url
from .shard import Shard, ShardLike
from .sums import SumsFile

EntriesLike: TypeAlias = (
    "str | os.PathLike[str] | Iterable[str | Mapping[str, Any] | Entry] | Sources"
)


def looks_like_url(text: str) -> bool:
    return "://" in text.split("/", 1)[0] + "/" or text.startswith(("http:", "https:"))


@dataclass(frozen=True)
class Sources:
    """Manifest files (read twice: once to check, once to transfer) plus entries.

    With a ``shard``, only the entries that shard owns are counted and yielded.
    With ``checksums`` (a ``SumsFile``), the entries it names get its digests.
    With a ``base_url``, the manifests' relative URLs are joined onto it.
    """

    manifests: tuple[Path, ...] = ()
    entries: tuple[Entry, ...] = ()
    fmt: str | None = None
    label: str = "<entries>"  # how errors name the entries given directly
    shard: Shard | None = None
    checksums: SumsFile | None = None
    base_url: str | None = None  # checked, ending in "/"

    @classmethod
    def of(
        cls,
        given: EntriesLike,
        *,
        fmt: str | None = None,
        shard: ShardLike | None = None,
        checksums: StrPath | SumsFile | None = None,
        base_url: str | None = None,
    ) -> Sources:
        """Accept a manifest path, URL strings, field dicts or Entry objects.

        ``checksums``: a sums file (``SHA256SUMS``, or ``ALGO:FILE``) whose
        digests the entries it names must match; read by ``check``.

        Raises
        ------
        ManifestError
            An entry given in code is unusable.
        ValueError
            ``shard`` is not ``"K/N"`` with 0 <= K < N, or ``base_url`` is
            not an http(s) URL.
        """
        part = None if shard is None else Shard.parse(shard)
        sums = checksums
        if sums is not None and not isinstance(sums, SumsFile):
            sums = SumsFile(sums)
        base = None if base_url is None else check_base_url(base_url)
        if isinstance(given, Sources):
            changes: dict[str, Any] = {
                "shard": part,
                "checksums": sums,
                "base_url": base,
            }
            changes = {k: v for k, v in changes.items() if v is not None}
            return dataclasses.replace(given, **changes) if changes else given
        if isinstance(given, os.PathLike) or (
            isinstance(given, str) and not looks_like_url(given)
        ):
            return cls(
                manifests=(Path(given),),
                fmt=fmt,
                shard=part,
                checksums=sums,
                base_url=base,
            )
        if isinstance(given, str):
            given = [given]
        entries = tuple(coerce_entries(given))
        return cls(entries=entries, fmt=fmt, shard=part, checksums=sums)

    def owns(self, entry: Entry) -> bool:
        return self.shard is None or self.shard.owns(entry.path)

    def check(
        self, inside: Callable[[str], object] | None = None
    ) -> tuple[int, int | None]:
        """Validate everything; returns (entry count, total bytes if all sizes known).

        With ``inside`` (the caller's ``InsideCheck(dest)``, which raises
        ``ValueError(reason)`` for an output path), also refuse paths that would
        land outside ``dest`` via symlinks. The caller brings it because this
        wing knows nothing of the disk.

        Raises
        ------
        ManifestError
            Naming FILE:LINE and the reason; nothing has been transferred.
        """

        sums = self.checksums
        if sums is not None:
            sums.load()  # a malformed line fails first, naming FILE:LINE

        def check_entry(entry: Entry) -> None:  # manifests: ``in_shard`` already chose
            if inside is not None:
                inside(entry.path)
            if sums is not None and (conflict := sums.conflict(entry)) is not None:
                raise ValueError(conflict)

        def check_given(entry: Entry) -> None:
            if self.owns(entry):
                check_entry(entry)

        stats = check_manifests_stats(
            list(self.manifests),
            fmt=self.fmt,
            check_entry=check_entry,
            in_shard=self.in_shard,
            base_url=self.base_url,
        )
        check_entries(self.entries, source=self.label, check_entry=check_given)
        sizes = [e.size for e in self.entries if self.owns(e)]
        all_sized = stats.all_sized and None not in sizes
        total = stats.known_bytes + sum(s or 0 for s in sizes) if all_sized else None
        if self.manifests and self.entries:
            _check_across(self)
        return stats.count + len(sizes), total

    @property
    def in_shard(self) -> Callable[[str], bool] | None:
        """The shard's test of an output path, for the manifest reader."""
        return None if self.shard is None else self.shard.owns

    def __iter__(self) -> Iterator[Entry]:
        sums = self.checksums
        if sums is not None:
            yield from map(sums.apply, self._entries())
        else:
            yield from self._entries()

    def _entries(self) -> Iterator[Entry]:
        for manifest in self.manifests:
            for _, entry in iter_manifest(
                manifest, fmt=self.fmt, in_shard=self.in_shard, base_url=self.base_url
            ):
                yield entry
        for entry in self.entries:
            if self.owns(entry):
                yield entry


def _check_across(sources: Sources) -> None:
    """Entries given directly must not collide with manifest paths either."""
    wanted = {e.path for e in sources.entries if sources.owns(e)}
    for manifest in sources.manifests:
        for line, entry in iter_manifest(
            manifest,
            fmt=sources.fmt,
            in_shard=sources.in_shard,
            base_url=sources.base_url,
        ):
            if entry.path in wanted:
                msg = f"path {entry.path!r} is also given on the command line"
                raise ManifestError(msg, source=str(manifest), line=line)
