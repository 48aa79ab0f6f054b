"""Manifests (JSON Lines, CSV/TSV, JSON, URL lists) -> entries, lazily and checked."""

from __future__ import annotations

import csv
import difflib
import hashlib
import itertools
import json
import logging
import os
import re
import shutil
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

from ._exceptions import ManifestError
from ._integrity import Checksum
from ._models import Entry, default_path
from ._portable import NAME_MAX, SIDECAR, fold, length_problem, windows_problem
from ._types import StrPath

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "json", "urls")
_CHECKSUM_FIELDS = ("checksum", "sha256", "md5", "sha1", "sha512")
FIELDS: tuple[str, ...] = (
    "url",
    "mirrors",
    "path",
    "size",
    *_CHECKSUM_FIELDS,
    "headers",
)
_STRENGTH = ("md5", "sha1", "sha256", "blake2b", "sha512")  # kept when several given
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_SUFFIXES |= {".csv": "csv", ".tsv": "tsv"}
_MAX_LINE = 1 << 20  # a longer "line" is a binary file, not a manifest
_ENTRIES = "<entries>"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")  # only JSON escapes can make one
_URL_BAD = re.compile(r"[\s\x00-\x1f\x7f]")
_DRIVE = re.compile(r"[A-Za-z]:")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 header name
_DIGITS = re.compile(r"[0-9]+")
_WS = re.compile(r"[ \t\n\r]*")
# A path that is normal as it stands: ASCII names not starting with a dot,
# joined by single slashes. Short enough (_SHORT) for every length limit.
_PLAIN_PATH = re.compile(r"[\w-][\w.-]*(?:/[\w-][\w.-]*)*", re.ASCII)
_SHORT = NAME_MAX - len(SIDECAR)
_U64 = (1 << 64) - 1  # digests are kept as unsigned 64-bit numbers
MAX_WARNINGS_SHOWN = 10  # a million odd names must not flood the terminal


def format_for(path: StrPath, fmt: str | None = None) -> str:
    """The manifest format: ``fmt`` when given, else by the file's extension.

    Raises
    ------
    ValueError
        ``fmt`` is not one of ``FORMATS``.
    """
    if fmt is not None:
        if fmt.lower() not in FORMATS:
            msg = f"unknown manifest format {fmt!r} (use {', '.join(FORMATS)})"
            raise ValueError(msg)
        return fmt.lower()
    return _SUFFIXES.get(Path(path).suffix.lower(), "urls")


def check_path(path: str) -> str:
    """Check an output path relative to ``--dest``; return it normalised.

    Raises
    ------
    ValueError
        The path is empty, absolute, has a drive, a ``..``, a backslash, a
        control character or a lone surrogate, names no file, or is too long
        for a filesystem (a name over 255 bytes, a path over 4000).
    """
    if isinstance(path, str) and len(path) <= _SHORT and _PLAIN_PATH.fullmatch(path):
        return path  # the common case, already normal: millions of these
    if not isinstance(path, str):
        msg = f"path must be a string, not {type(path).__name__}"
    elif not path:
        msg = "empty path"
    elif "\x00" in path:
        msg = f"path {path!r} contains a NUL byte"
    elif _CONTROL.search(path):
        msg = f"path {path!r} contains a control character (CR, LF, tab...)"
    elif _SURROGATE.search(path):
        msg = f"path {path!r} is not valid Unicode (a lone surrogate escape)"
    elif _DRIVE.match(path):
        msg = f"path {path!r} starts with a Windows drive"
    elif "\\" in path:
        msg = f"path {path!r} contains a backslash; separate folders with '/'"
    elif path.startswith("/"):
        msg = f"path {path!r} is absolute; it must be relative to --dest"
    elif ".." in path.split("/"):
        msg = f"path {path!r} contains '..'; it must stay inside --dest"
    elif path.endswith("/"):
        msg = f"path {path!r} ends in '/'; it must name a file"
    else:
        parts = [part for part in path.split("/") if part not in ("", ".")]
        if not parts:
            msg = f"path {path!r} names no file"
        else:
            normal = "/".join(parts)
            problem = length_problem(normal)
            if problem is None:
                return normal
            msg = problem
    raise ValueError(msg)


def entry_from_fields(
    fields: Mapping[str, Any], *, defaults: Mapping[str, Any] | None = None
) -> Entry:
    """Build an :class:`Entry` from manifest fields (SPEC section 2).

    Parameters
    ----------
    fields:
        ``url``, ``mirrors``, ``path``, ``size``, ``checksum``, ``sha256``,
        ``md5``, ``sha1``, ``sha512``, ``headers``. ``None`` or a blank string
        means "not set"; ``mirrors`` may be a space-separated string and
        ``headers`` a JSON object string (as in CSV cells).
    defaults:
        Values for the fields the entry does not set. A checksum field in the
        entry replaces every checksum default.

    Raises
    ------
    ValueError
        With the reason: missing or non-http(s) URL, bad path, size,
        checksum or headers, conflicting checksums, or an unknown field.
    """
    if not isinstance(fields, Mapping):
        msg = f"an entry must be an object, not {type(fields).__name__}"
        raise ValueError(msg)
    given = _set_fields(fields)
    if defaults:
        has_checksum = any(name in given for name in _CHECKSUM_FIELDS)
        for name, value in _set_fields(defaults).items():
            if name not in given and not (has_checksum and name in _CHECKSUM_FIELDS):
                given[name] = value
    if "url" not in given:
        msg = "missing url"
        raise ValueError(msg)
    url = _check_url(given["url"], "url")
    mirrors = given.get("mirrors", ())
    if isinstance(mirrors, str):
        mirrors = mirrors.split()
    if not isinstance(mirrors, list | tuple):
        msg = f"mirrors must be a list of URLs, not {type(mirrors).__name__}"
        raise ValueError(msg)
    return Entry(
        url=url,
        path=_entry_path(given.get("path"), url),
        mirrors=tuple(_check_url(mirror, "mirror") for mirror in mirrors),
        size=_size(given.get("size")),
        checksum=_checksum(given),
        headers=_headers(given.get("headers", {})),
    )


def iter_manifest(
    path: StrPath,
    *,
    fmt: str | None = None,
    keep: Callable[[str], bool] | None = None,
) -> Iterator[tuple[int, Entry]]:
    """Yield ``(line, entry)`` for each entry of a manifest file, one at a time.

    Only ``.json`` manifests are read whole; the others are read line by line.
    With ``keep`` (a shard's test of an output path), an entry whose path it
    refuses is skipped before the costly checks, so that a shard of a huge
    manifest pays little for the entries of other shards. An entry whose path
    cannot be told without them is checked in full (its error, if any, then
    stops every shard).

    Raises
    ------
    ManifestError
        The file is missing or unreadable, or an entry is bad (with its line).
    """
    source = os.fspath(path)
    try:
        kind = format_for(path, fmt)
    except ValueError as exc:
        raise ManifestError(str(exc), source=source) from None
    if kind == "json":
        defaults, items = _load_json(_read_all(source), source)
        for index, (line, item) in enumerate(items, 1):
            if keep is None:
                yield line, _to_entry(item, defaults, source, line, f"entry {index}: ")
            elif (quick := quick_path(item, defaults)) is None or keep(quick):
                entry = _to_entry(item, defaults, source, line, f"entry {index}: ")
                if quick is not None or keep(entry.path):
                    yield line, entry
        return
    try:
        file = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise _unreadable(exc, source) from None
    with file:
        lines = _lines(file, source)
        if kind == "jsonl":
            rows = _jsonl_rows(lines, source)
        elif kind == "urls":
            rows = _url_rows(lines)
        else:
            rows = _table_rows(lines, source, "," if kind == "csv" else "\t")
        for line, item in rows:
            if keep is None:
                yield line, _to_entry(item, None, source, line)
            elif (quick := quick_path(item, None)) is None or keep(quick):
                entry = _to_entry(item, None, source, line)
                if quick is not None or keep(entry.path):  # same path if quick
                    yield line, entry


def quick_path(item: Any, defaults: Mapping[str, Any] | None = None) -> str | None:
    """The output path a raw manifest item will have, without the full checks.

    None when only those checks can tell (or will refuse the item). Whenever
    it returns a path, the full check gives the same path or an error: a
    shard must never skip an entry it owns (tests hold it to that).
    """
    path: Any
    url: Any
    if isinstance(item, str):
        item = {"url": item}
    if type(item) is dict or isinstance(item, Mapping):  # (the ABC check is slow)
        path, url = item.get("path"), item.get("url")
        if defaults and path in (None, ""):
            path = defaults.get("path")
        if defaults and url in (None, ""):
            url = defaults.get("url")
    else:
        return None
    try:
        if path in (None, ""):
            path = default_path(_check_url(url, "url"))  # the URL as the check keeps it
        return check_path(path) if isinstance(path, str) and path else None
    except ValueError:
        return None


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
    _digest: Callable[[str], int] | None = None,
) -> int:
    """Check manifests whole: every entry parses and no output path repeats.

    Returns the number of entries; see ``check_manifests_stats``.

    Raises
    ------
    ManifestError
        The first bad entry, or the later of two entries sharing a path.
    """
    return check_manifests_stats(paths, fmt=fmt, _digest=_digest).count


def check_manifests_stats(
    paths: Sequence[StrPath],
    *,
    fmt: str | None = None,
    check_entry: Callable[[Entry], None] | None = None,
    keep: Callable[[str], bool] | None = None,
    _digest: Callable[[str], int] | None = None,
) -> ManifestStats:
    """Like ``check_manifests``, also summing declared sizes for progress and ETA.

    ``check_entry`` may raise ``ValueError(reason)`` to reject an entry (for
    example one whose path leads out of the destination through a symlink).
    ``keep`` limits everything to the entries of one shard (see iter_manifest);
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
            for line, entry in iter_manifest(path, fmt=fmt, keep=keep):
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
    count = _check_paths(rows, _digest or _path_digest, warnings)
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
    _check_paths(rows, _path_digest, warnings)
    warnings.log()


def coerce_entries(
    items: Iterable[str | Mapping[str, Any] | Entry], *, source: str = "<entries>"
) -> Iterator[Entry]:
    """Turn URL strings, field mappings and entries into checked entries.

    Raises
    ------
    ManifestError
        An item is unusable; ``line`` is its 1-based index.
    """
    for index, item in enumerate(items, 1):
        if isinstance(item, Entry):
            item = {
                "url": item.url,
                "mirrors": item.mirrors,
                "path": item.path,
                "size": item.size,
                "checksum": None if item.checksum is None else str(item.checksum),
                "headers": item.headers,
            }
        yield _to_entry(item, None, source, index)


def spool_stdin(stream: IO[bytes], *, suffix: str) -> Path:
    """Copy ``stream`` to a temporary file (the caller deletes it) to read twice."""
    with tempfile.NamedTemporaryFile(
        "wb", prefix="downloader-stdin-", suffix=suffix, delete=False
    ) as file:
        try:
            shutil.copyfileobj(stream, file, 1 << 20)
        except BaseException:
            file.close()
            os.unlink(file.name)
            raise
    return Path(file.name)


def _path_digest(path: str) -> int:
    return int.from_bytes(hashlib.blake2b(path.encode(), digest_size=8).digest())


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


def _to_entry(
    item: Any, defaults: Mapping[str, Any] | None, source: str, line: int, at: str = ""
) -> Entry:
    try:
        if isinstance(item, str):
            item = {"url": item}
        elif not isinstance(item, Mapping):
            msg = f"an entry must be an object or a URL string, not {_kind(item)}"
            raise ValueError(msg)
        return entry_from_fields(item, defaults=defaults)
    except ValueError as exc:
        msg = f"{at}{exc}"
        raise ManifestError(msg, source=source, line=line) from None


def _set_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    for name in fields:
        if name not in FIELDS:
            raise ValueError(_unknown_field(name))
    return {k: v for k, v in fields.items() if v is not None and v != ""}


def _unknown_field(name: object) -> str:
    close = difflib.get_close_matches(str(name).lower(), FIELDS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown field {name!r} ({hint}known fields: {', '.join(FIELDS)})"


# The common, plainly valid URL: scheme, a DNS name or IPv4 host, optional port,
# then no whitespace, control characters or lone surrogates. Anything else takes
# the full check.
_PLAIN_URL = re.compile(
    r"(?i:https?)://[A-Za-z0-9][A-Za-z0-9.-]*(?::(\d{1,5}))?"
    r"(?:[/?][^\x00-\x20\x7f\ud800-\udfff]*)?"
)


def _check_url(value: Any, what: str) -> str:
    if isinstance(value, str):
        plain = _PLAIN_URL.fullmatch(value)
        if plain and (plain[1] is None or int(plain[1]) <= 65535):
            return value
    if not isinstance(value, str):
        msg = f"{what} must be a string, not {_kind(value)}"
        raise ValueError(msg)
    url = value.strip()
    if not url:
        msg = f"empty {what}"
        raise ValueError(msg)
    if _URL_BAD.search(url):
        msg = f"{what} {url!r} contains whitespace or a control character"
        raise ValueError(msg)
    if _SURROGATE.search(url):
        msg = f"{what} {url!r} is not valid Unicode (a lone surrogate escape)"
        raise ValueError(msg)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        msg = f"malformed {what} {url!r}: {exc}"
        raise ValueError(msg) from None
    if not parts.scheme:
        msg = f"{what} {url!r} has no scheme (want http:// or https://)"
    elif parts.scheme.lower() not in ("http", "https"):
        msg = f"unsupported scheme {parts.scheme!r} in {what} {url!r}"
        msg += " (only http and https)"
    elif not parts.hostname:
        msg = f"{what} {url!r} has no host"
    else:
        return url
    raise ValueError(msg)


def _entry_path(path: Any, url: str) -> str:
    if path is not None:
        return check_path(path)
    name = default_path(url)
    if not name:
        ends = "ends in '/'" if urlsplit(url).path else "has no path"
        msg = f"no path given and the URL {ends}"
        raise ValueError(msg)
    try:
        return check_path(name)
    except ValueError as exc:
        msg = f"no path given and the URL's file name is unusable: {exc}"
        raise ValueError(msg) from None


def _size(value: Any) -> int | None:
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value)
    if value is None or (type(value) is int and value >= 0):
        return value
    msg = f"size must be a non-negative integer, not {value!r}"
    raise ValueError(msg)


def _checksum(fields: Mapping[str, Any]) -> Checksum | None:
    found: list[tuple[str, Checksum]] = []
    for name in _CHECKSUM_FIELDS:
        if name not in fields:
            continue
        if not isinstance(fields[name], str):
            msg = f"{name} must be a string, not {_kind(fields[name])}"
            raise ValueError(msg)
        algorithm = None if name == "checksum" else name
        checksum = Checksum.parse(fields[name], algorithm=algorithm)
        for other_name, other in found:
            if other.algorithm == checksum.algorithm and other != checksum:
                msg = f"conflicting checksums: {other_name} {other}, {name} {checksum}"
                raise ValueError(msg)
        found.append((name, checksum))
    if not found:
        return None
    return max((c for _, c in found), key=lambda c: _STRENGTH.index(c.algorithm))


def _headers(value: Any) -> dict[str, str]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            msg = f"headers {value!r} is not a JSON object"
            raise ValueError(msg) from None
    if not isinstance(value, Mapping):
        msg = f"headers must be an object of names to values, not {_kind(value)}"
        raise ValueError(msg)
    for name, text in value.items():
        if not isinstance(name, str) or not isinstance(text, str):
            msg = f"header {name!r}: {text!r}: names and values must be strings"
        elif any(c in name + text for c in "\r\n"):
            msg = f"header {name!r} contains CR or LF (header injection)"
        elif not _TOKEN.fullmatch(name):
            msg = f"invalid header name {name!r}"
        elif _CONTROL.search(text.replace("\t", " ")):
            msg = f"header {name!r} value contains a control character"
        elif _SURROGATE.search(name + text):
            msg = f"header {name!r} is not valid Unicode (a lone surrogate escape)"
        else:
            continue
        raise ValueError(msg)
    return dict(value)


def _kind(value: object) -> str:
    return type(value).__name__


def _unreadable(exc: OSError, source: str) -> ManifestError:
    if isinstance(exc, FileNotFoundError):
        return ManifestError("no such file", source=source)
    if isinstance(exc, IsADirectoryError):
        return ManifestError("is a directory, not a manifest file", source=source)
    return ManifestError(f"cannot read: {exc.strerror or exc}", source=source)


def _not_utf8(raw: bytes, exc: UnicodeDecodeError) -> str:
    return f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); save it as UTF-8"


def _lines(file: IO[bytes], source: str) -> Iterator[str]:
    for number in itertools.count(1):
        raw = file.readline(_MAX_LINE + 1)
        if not raw:
            return
        if len(raw) > _MAX_LINE and not raw.endswith(b"\n"):
            msg = f"line longer than {_MAX_LINE >> 20} MiB"
            raise ManifestError(msg, source=source, line=number)
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            msg = _not_utf8(raw, exc)
            raise ManifestError(msg, source=source, line=number) from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def _jsonl_rows(lines: Iterable[str], source: str) -> Iterator[tuple[int, Any]]:
    for number, text in enumerate(lines, 1):
        if text.strip():
            try:
                yield number, json.loads(text)
            except json.JSONDecodeError as exc:
                msg = f"not valid JSON: {exc.msg} (column {exc.colno})"
                raise ManifestError(msg, source=source, line=number) from None
            except RecursionError:
                msg = "JSON nested too deeply"
                raise ManifestError(msg, source=source, line=number) from None


def _url_rows(lines: Iterable[str]) -> Iterator[tuple[int, Any]]:
    for number, text in enumerate(lines, 1):
        parts = text.strip().split(maxsplit=1)
        if parts and not parts[0].startswith("#"):
            yield number, dict(zip(("url", "path"), parts, strict=False))


def _table_rows(
    lines: Iterable[str], source: str, delimiter: str
) -> Iterator[tuple[int, Any]]:
    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            msg = f"unparsable row: {exc}"
            raise ManifestError(msg, source=source, line=reader.line_num) from None
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if header is None:
            header = _check_header(cells, source, start)
        elif len(cells) > len(header):
            msg = f"row has {len(cells)} cells but the header names {len(header)}"
            raise ManifestError(msg, source=source, line=start)
        else:
            yield start, {k: v for k, v in zip(header, cells, strict=False) if v}


def _check_header(names: list[str], source: str, line: int) -> list[str]:
    for column, name in enumerate(names, 1):
        if not name:
            msg = f"header row: column {column} has no name"
        elif names.index(name) != column - 1:
            msg = f"header row: column {name!r} appears twice"
        elif name not in FIELDS:
            msg = f"header row: {_unknown_field(name)}"
        else:
            continue
        raise ManifestError(msg, source=source, line=line)
    if "url" not in names:
        msg = "header row has no 'url' column (the first row must name the fields)"
        raise ManifestError(msg, source=source, line=line)
    return names


def _read_all(source: str) -> str:
    try:
        with open(source, "rb") as file:
            raw = file.read()
    except OSError as exc:
        raise _unreadable(exc, source) from None
    try:
        return raw.decode().removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ManifestError(_not_utf8(raw, exc), source=source, line=line) from None


def _load_json(
    text: str, source: str
) -> tuple[Mapping[str, Any] | None, Iterator[tuple[int, Any]]]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON: {exc.msg} (column {exc.colno})"
        raise ManifestError(msg, source=source, line=exc.lineno) from None
    except RecursionError:  # hostile nesting: a clear error, not a traceback
        msg = "JSON nested too deeply"
        raise ManifestError(msg, source=source, line=1) from None
    start, defaults = _ws(text, 0), None
    if isinstance(doc, dict):
        at = _object_values(text, start)
        if problem := _shape_error(doc):
            msg, key = problem
            line = text.count("\n", 0, at[key]) + 1 if key in at else 1
            raise ManifestError(msg, source=source, line=line)
        defaults, start = doc.get("defaults"), at["files"]
    elif not isinstance(doc, list):
        msg = "a JSON manifest must be a list of entries or an object with 'files'"
        raise ManifestError(msg, source=source, line=1)
    return defaults, _array_items(text, start)


def _shape_error(doc: dict[str, Any]) -> tuple[str, str] | None:
    for key in doc:
        if key not in ("defaults", "files"):
            return f"unknown key {key!r} (a JSON manifest has defaults, files)", key
    defaults = doc.get("defaults")
    if not isinstance(defaults, dict | None):
        return "'defaults' must be an object", "defaults"
    for name in defaults or ():
        if name not in FIELDS:
            return f"defaults: {_unknown_field(name)}", "defaults"
    if not isinstance(doc.get("files"), list):
        return "a JSON manifest object needs a 'files' list", "files"
    return None


def _ws(text: str, pos: int) -> int:
    match = _WS.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _object_values(text: str, pos: int) -> dict[str, int]:
    """Where each top-level value of a valid JSON object starts."""
    decoder, found = json.JSONDecoder(), {}
    pos = _ws(text, pos + 1)
    while text[pos] != "}":
        key, pos = decoder.raw_decode(text, pos)
        found[key] = pos = _ws(text, _ws(text, pos) + 1)  # past the ':'
        pos = _ws(text, decoder.raw_decode(text, pos)[1])
        if text[pos] == ",":
            pos = _ws(text, pos + 1)
    return found


def _array_items(text: str, pos: int) -> Iterator[tuple[int, Any]]:
    """``(line, item)`` for each item of a valid JSON array starting at ``pos``."""
    decoder, line, last = json.JSONDecoder(), 1, 0
    pos = _ws(text, pos + 1)
    while text[pos] != "]":
        line, last = line + text.count("\n", last, pos), pos
        item, pos = decoder.raw_decode(text, pos)
        yield line, item
        pos = _ws(text, pos)
        if text[pos] == ",":
            pos = _ws(text, pos + 1)
