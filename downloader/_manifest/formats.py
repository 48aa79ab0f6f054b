"""Manifest formats (JSONL, CSV/TSV, JSON, URL lists, parquet) -> rows, lazily."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeAlias

from .._exceptions import ManifestError
from .._models import Entry
from .._types import StrPath
from .compressed import decompressed, split_compression
from .fields import FIELDS, _to_entry, _unknown_field, quick_path
from .parquet import parquet_rows
from .relative import with_base

FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "json", "urls", "parquet")
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}
_SUFFIXES |= {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
_SUFFIXES |= {".lock": "jsonl"}  # a lock file (get --lock) is a manifest
_MAX_LINE = 1 << 20  # a longer "line" is a binary file, not a manifest
_WS = re.compile(r"[ \t\n\r]*")


def format_for(path: StrPath, fmt: str | None = None) -> str:
    """The manifest format: ``fmt`` when given, else by the file's extension.

    A compression suffix (``.gz``, ``.xz``, ``.bz2``, ``.zst``) is looked
    through: ``urls.txt.gz`` is a URL list, ``m.jsonl.xz`` JSON Lines.

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
    name, _ = split_compression(Path(path).name)
    return _SUFFIXES.get(Path(name).suffix.lower(), "urls")


def iter_manifest(
    path: StrPath,
    *,
    fmt: str | None = None,
    in_shard: Callable[[str], bool] | None = None,
    base_url: str | None = None,
) -> Iterator[tuple[int, Entry]]:
    """Yield ``(line, entry)`` for each entry of a manifest file, one at a time.

    Only ``.json`` manifests are read whole; the others are read line by line.
    With ``in_shard`` (a shard's test of an output path), an entry whose path it
    refuses is skipped before the costly checks, so that a shard of a huge
    manifest pays little for the entries of other shards. An entry whose path
    cannot be told without them is checked in full (its error, if any, then
    stops every shard). With ``base_url`` (see ``relative.check_base_url``),
    relative URLs are joined onto it, and their path is the output path.
    A file named ``*.gz``, ``*.xz``, ``*.bz2`` or ``*.zst`` is decompressed
    as it is read.

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
    try:
        file = open(source, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise _unreadable(exc, source) from None
    with file:
        rows = READERS[kind](_plain(file, kind, source), source)
        defaults, numbered = rows.defaults, rows.numbered
        for index, (line, raw) in enumerate(rows.items, 1):
            at = f"entry {index}: " if numbered else ""
            item = raw if base_url is None else with_base(raw, base_url)
            if in_shard is None:
                yield line, _to_entry(item, defaults, source, line, at)
            elif (quick := quick_path(item, defaults)) is None or in_shard(quick):
                entry = _to_entry(item, defaults, source, line, at)
                if quick is not None or in_shard(entry.path):  # same path if quick
                    yield line, entry


def _plain(file: IO[bytes], kind: str, source: str) -> IO[bytes]:
    """The file's bytes, decompressed when its name says so."""
    _, compression = split_compression(Path(source).name)
    if compression is None:
        return file
    if kind == "parquet":
        msg = (
            f"a parquet file compresses its own columns and is read in place: "
            f"give it uncompressed, not as {compression}"
        )
        raise ManifestError(msg, source=source)
    return decompressed(file, compression, source)


@dataclass(frozen=True, slots=True)
class Rows:
    """What a reader gives: ``(line, raw item)`` rows, lazily, and how to take them.

    Every format yields the same rows. Only a JSON manifest has ``defaults``,
    and only there does an error name the entry's index as well as its line,
    since one line of a JSON document may hold several entries.
    """

    items: Iterator[tuple[int, Any]]
    defaults: Mapping[str, Any] | None = None
    numbered: bool = False


Reader: TypeAlias = Callable[[IO[bytes], str], Rows]
"""``(file, source) -> Rows``: one manifest format, registered in ``READERS``."""


def _read_jsonl(file: IO[bytes], source: str) -> Rows:
    return Rows(_jsonl_rows(_lines(file, source), source))


def _read_csv(file: IO[bytes], source: str) -> Rows:
    return Rows(_table_rows(_lines(file, source), source, ","))


def _read_tsv(file: IO[bytes], source: str) -> Rows:
    return Rows(_table_rows(_lines(file, source), source, "\t"))


def _read_json(file: IO[bytes], source: str) -> Rows:
    defaults, items = _load_json(_read_all(file, source), source)
    return Rows(items, defaults, numbered=True)


def _read_urls(file: IO[bytes], source: str) -> Rows:
    return Rows(_url_rows(_lines(file, source)))


def _read_parquet(file: IO[bytes], source: str) -> Rows:
    return Rows(parquet_rows(file, source))


READERS: dict[str, Reader] = {
    "jsonl": _read_jsonl,
    "csv": _read_csv,
    "tsv": _read_tsv,
    "json": _read_json,
    "urls": _read_urls,
    "parquet": _read_parquet,
}


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


def _read_all(file: IO[bytes], source: str) -> str:
    try:
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
