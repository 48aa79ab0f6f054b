"""The check pass: every entry parses, no output path repeats; 8 bytes an entry."""

from __future__ import annotations

import itertools
import logging
import os
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from .._exceptions import ManifestError
from .._models import Entry
from .._types import StrPath
from .formats import iter_manifest
from .paths import check_path, fold, folded_key, windows_problem

log = logging.getLogger(__name__)

_ENTRIES = "<entries>"
_U64 = (1 << 64) - 1  # digests are kept as unsigned 64-bit numbers
MAX_WARNINGS_SHOWN = 10  # a million odd names must not flood the terminal


@dataclass(frozen=True, slots=True)
class ManifestStats:
    """What checking the manifests found: entries, declared bytes, warnings."""

    count: int
    known_bytes: int  # sum of the sizes the entries declare
    all_sized: bool  # every entry declares a size, so known_bytes is the total
    warnings: tuple[str, ...] = ()  # the first few, as "FILE:LINE: reason"
    warning_count: int = 0  # all of them


def check_manifests(
    paths: Sequence[StrPath],
    *,
    fmt: str | None = None,
    base_url: str | None = None,
    _digest: Callable[[str], int] | None = None,
) -> int:
    """Check manifests whole: every entry parses and no output path repeats.

    Returns the number of entries; see ``check_manifests_stats``.

    Raises
    ------
    ManifestError
        The first bad entry, or the later of two entries sharing a path.
    """
    return check_manifests_stats(
        paths, fmt=fmt, base_url=base_url, _digest=_digest
    ).count


def check_manifests_stats(
    paths: Sequence[StrPath],
    *,
    fmt: str | None = None,
    check_entry: Callable[[Entry], None] | None = None,
    in_shard: Callable[[str], bool] | None = None,
    base_url: str | None = None,
    _digest: Callable[[str], int] | None = None,
) -> ManifestStats:
    """Like ``check_manifests``, also summing declared sizes for progress and ETA.

    ``check_entry`` may raise ``ValueError(reason)`` to reject an entry (for
    example one whose path leads out of the destination through a symlink).
    ``in_shard`` limits everything to the entries of one shard (see iter_manifest);
    a repeated path is still found, since both entries land in one shard.
    Memory stays at 8 bytes (a 64-bit digest) per entry; only when two digests
    match is a second pass made, keeping the paths behind those digests.

    Paths that work here but not everywhere (a Windows device name such as
    ``con.txt``, two paths only letter case tells apart) are warnings, not
    errors: the first ``MAX_WARNINGS_SHOWN`` are logged and kept in the stats.
    """
    paths = list(paths)
    sizes = [0, 0]  # bytes declared, entries without a size (first pass only)
    passes = [0]  # the second pass (only when digests meet) must not add again

    def rows() -> Iterator[tuple[str, int, str]]:
        passes[0] += 1
        first = passes[0] == 1
        for path in paths:
            for line, entry in iter_manifest(
                path, fmt=fmt, in_shard=in_shard, base_url=base_url
            ):
                if first and entry.size is None:
                    sizes[1] += 1
                elif first:
                    sizes[0] += entry.size or 0
                if check_entry is not None:
                    try:
                        check_entry(entry)
                    except ValueError as exc:
                        raise ManifestError(
                            str(exc), source=os.fspath(path), line=line
                        ) from None
                yield os.fspath(path), line, entry.path

    warnings = _Warnings()
    count = _check_paths(rows, _digest or folded_key, warnings)
    warnings.log()
    return ManifestStats(
        count, sizes[0], sizes[1] == 0, tuple(warnings.shown), warnings.count
    )


def check_entries(
    entries: Iterable[Entry],
    *,
    source: str = _ENTRIES,
    check_entry: Callable[[Entry], None] | None = None,
) -> None:
    """Check entries given in code the way :func:`check_manifests` does.

    ``entries`` must be re-iterable (a list, a tuple): it may be read twice.

    Portability warnings are logged as for manifests.

    Raises
    ------
    ManifestError
        An entry's path is bad, or two entries share a path (line = index).
    TypeError
        ``entries`` is a one-shot iterator.
    """
    if iter(entries) is entries:
        msg = "check_entries needs a re-iterable collection, not an iterator"
        raise TypeError(msg)

    def rows() -> Iterator[tuple[str, int, str]]:
        for index, entry in enumerate(entries, 1):
            try:
                path = check_path(entry.path)
                if check_entry is not None:
                    check_entry(entry)
            except ValueError as exc:
                raise ManifestError(str(exc), source=source, line=index) from None
            yield source, index, path

    warnings = _Warnings()
    _check_paths(rows, folded_key, warnings)
    warnings.log()


class _Digests:
    """A multiset of 64-bit digests at 8 bytes each (a set of ints costs ~70).

    Appends go to one of 4096 arrays by the low bits; repeats are found at
    the end by sorting one array at a time.
    """

    def __init__(self) -> None:
        self._arrays = [array("Q") for _ in range(4096)]

    def add(self, digest: int) -> None:
        self._arrays[digest & 4095].append(digest)

    def repeated(self) -> set[int]:
        found: set[int] = set()
        for values in self._arrays:
            if len(values) > 1:
                ordered = sorted(values)
                found.update(a for a, b in itertools.pairwise(ordered) if a == b)
        return found


class _Warnings:
    """Warnings about entries: all counted, the first few kept to be shown."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.count = 0

    def add(self, source: str, line: int, reason: str) -> None:
        self.count += 1
        if len(self.shown) < MAX_WARNINGS_SHOWN:
            self.shown.append(f"{source}:{line}: {reason}")

    def log(self) -> None:
        for text in self.shown:
            log.warning("%s", text)
        if self.count > len(self.shown):
            log.warning("... and %d more such warnings", self.count - len(self.shown))


def _check_paths(
    rows: Callable[[], Iterator[tuple[str, int, str]]],
    digest: Callable[[str], int],
    warnings: _Warnings,
) -> int:
    """Count the rows; refuse a repeated path, warn about unportable ones.

    The first pass keeps a digest of each path as case-insensitive, normalising
    filesystems (macOS, Windows) see it. Only if two digests meet, a second
    pass tells an exact repeat (an error: one file, two entries) from paths
    that differ only in letter case or Unicode form (a warning: two files
    here, one there).
    """
    seen = _Digests()
    count = 0
    for source, line, path in rows():
        count += 1
        seen.add(digest(fold(path)) & _U64)
        if (problem := windows_problem(path)) is not None:
            warnings.add(
                source, line, f"path {path!r} will not work on Windows: {problem}"
            )
    twice = seen.repeated()
    del seen
    if twice:  # second pass: keep exact paths for suspect digests only
        first: dict[str, tuple[str, int]] = {}
        folded: dict[str, tuple[str, str, int]] = {}
        for source, line, path in rows():
            same = fold(path)
            if digest(same) & _U64 not in twice:
                continue
            if path in first:
                where, at = first[path]
                msg = f"path {path!r} is already the output of {where}:{at}"
                raise ManifestError(msg, source=source, line=line)
            first[path] = (source, line)
            if same not in folded:
                folded[same] = (path, source, line)
                continue
            other, where, at = folded[same]
            warnings.add(
                source,
                line,
                f"path {path!r} and path {other!r} ({where}:{at}) differ only in "
                "letter case or Unicode form: two files here, but one file on "
                "macOS and Windows, where the later would overwrite the earlier",
            )
    return count
