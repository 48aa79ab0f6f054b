"""What to download: manifests and entries given in code, checked whole, read lazily."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from ._exceptions import ManifestError
from ._manifest import (
    check_entries,
    check_manifests_stats,
    coerce_entries,
    iter_manifest,
)
from ._models import Entry
from ._storage import InsideCheck

EntriesLike: TypeAlias = (
    "str | os.PathLike[str] | Iterable[str | Mapping[str, Any] | Entry] | Sources"
)


def looks_like_url(text: str) -> bool:
    return "://" in text.split("/", 1)[0] + "/" or text.startswith(("http:", "https:"))


@dataclass(frozen=True)
class Sources:
    """Manifest files (read twice: once to check, once to transfer) plus entries."""

    manifests: tuple[Path, ...] = ()
    entries: tuple[Entry, ...] = ()
    fmt: str | None = None
    label: str = "<entries>"  # how errors name the entries given directly

    @classmethod
    def of(cls, given: EntriesLike, *, fmt: str | None = None) -> Sources:
        """Accept a manifest path, URL strings, field dicts or Entry objects.

        Raises
        ------
        ManifestError
            An entry given in code is unusable.
        """
        if isinstance(given, Sources):
            return given
        if isinstance(given, os.PathLike) or (
            isinstance(given, str) and not looks_like_url(given)
        ):
            return cls(manifests=(Path(given),), fmt=fmt)
        if isinstance(given, str):
            given = [given]
        return cls(entries=tuple(coerce_entries(given)), fmt=fmt)

    def check(self, dest: Path | None = None) -> tuple[int, int | None]:
        """Validate everything; returns (entry count, total bytes if all sizes known).

        With ``dest``, also refuse paths that would land outside it via symlinks.

        Raises
        ------
        ManifestError
            Naming FILE:LINE and the reason; nothing has been transferred.
        """
        inside = InsideCheck(dest) if dest is not None else None

        def check_entry(entry: Entry) -> None:
            if inside is not None:
                inside(entry.path)

        stats = check_manifests_stats(
            list(self.manifests), fmt=self.fmt, check_entry=check_entry
        )
        check_entries(self.entries, source=self.label, check_entry=check_entry)
        sizes = [e.size for e in self.entries]
        all_sized = stats.all_sized and None not in sizes
        total = stats.known_bytes + sum(s or 0 for s in sizes) if all_sized else None
        if self.manifests and self.entries:
            _check_across(self)
        return stats.count + len(self.entries), total

    def __iter__(self) -> Iterator[Entry]:
        for manifest in self.manifests:
            for _, entry in iter_manifest(manifest, fmt=self.fmt):
                yield entry
        yield from self.entries


def _check_across(sources: Sources) -> None:
    """Entries given directly must not collide with manifest paths either."""
    wanted = {e.path for e in sources.entries}
    for manifest in sources.manifests:
        for line, entry in iter_manifest(manifest, fmt=sources.fmt):
            if entry.path in wanted:
                msg = f"path {entry.path!r} is also given on the command line"
                raise ManifestError(msg, source=str(manifest), line=line)
