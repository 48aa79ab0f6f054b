"""get --retry-failed REPORT: the entries that failed in a report, and only those."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import ManifestError, UsageError
from .._manifest import Sources, entry_from_fields
from .._models import Entry
from .inputs import _sources


class NothingToRetry(Exception):
    """The report has no failed entry: the run is already whole."""


@dataclass(frozen=True, slots=True)
class Failed:
    """One failed result of a report: its entry, and the headers it had."""

    line: int
    entry: Entry
    header_names: tuple[str, ...]


def failed_in(doc: Any, source: str, lines: Sequence[int] = ()) -> list[Failed]:
    """The failed entries of a parsed report (``lines``: each result's line).

    Raises
    ------
    ManifestError
        ``FILE:LINE: reason``: not a report, or a failed result without the
        entry this needs.
    """
    if not isinstance(doc, Mapping) or not isinstance(doc.get("results"), list):
        msg = "not a downloader report (no 'results' list)"
        raise ManifestError(msg, source=source)
    results = doc["results"]
    found = []
    for index, result in enumerate(results):
        line = lines[index] if len(lines) == len(results) else None
        at = "" if line is not None else f"result {index + 1}: "
        if not isinstance(result, Mapping) or result.get("status") != "failed":
            continue
        fields = result.get("entry")
        try:
            if not isinstance(fields, Mapping):
                msg = "a failed result without its 'entry' (an older report?)"
                raise ValueError(msg)
            names = fields.get("header_names") or []
            if not isinstance(names, list):
                msg = "header_names must be a list"
                raise ValueError(msg)
            known = {k: v for k, v in fields.items() if k != "header_names"}
            entry = entry_from_fields(known)
        except ValueError as exc:
            reason = f"{at}{exc}"
            raise ManifestError(reason, source=source, line=line) from None
        found.append(Failed(line or index + 1, entry, tuple(map(str, names))))
    return found


def dest_problem(recorded: Any, dest: Path, source: str) -> str | None:
    """Why this run's ``dest`` is not the report's (None: it is)."""
    if not isinstance(recorded, str):
        return (
            f"{source} does not say which --dest it was written for (a report "
            "from --cluster, or an older one); rerun with -i MANIFEST instead"
        )
    if Path(recorded) != dest.resolve():
        return (
            f"{source} is a report of --dest {recorded}, not of {dest.resolve()}: "
            f"retrying there would fetch files already complete elsewhere; "
            f"give -d {recorded}"
        )
    return None


def _read(path: Path) -> tuple[Any, list[int]]:
    """The parsed report and, per result, its line (our reports: one a line)."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"--retry-failed {path}: {exc.strerror}"
        raise UsageError(msg) from exc
    except UnicodeDecodeError:
        msg = "not a downloader report (not UTF-8 text)"
        raise ManifestError(msg, source=source) from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not a downloader report: {exc.msg} (column {exc.colno})"
        raise ManifestError(msg, source=source, line=exc.lineno) from None
    starts = [
        n
        for n, line in enumerate(text.splitlines(), 1)
        if line.lstrip().startswith('{"url"')
    ]
    return doc, starts


@contextlib.contextmanager
def retry_sources(args: argparse.Namespace) -> Iterator[Sources]:
    """The failed entries of ``args.retry_failed``, as Sources for the run.

    Without ``-i``, each entry comes from the report (url, mirrors, path,
    size, checksum). Headers are never in a report: entries that had some
    must come from their manifest again (``-i``), which is then read for
    the failed paths only.

    Raises
    ------
    NothingToRetry
        No entry failed.
    UsageError, ManifestError
        Another destination's report, URLs beside it, or a bad report.
    """
    path = Path(args.retry_failed)
    source = str(path)
    if args.urls:
        msg = "--retry-failed runs the failures of a report; give no URLs beside it"
        raise UsageError(msg)
    doc, lines = _read(path)
    failed = failed_in(doc, source, lines)
    problem = dest_problem(doc.get("dest"), Path(args.dest), source)
    if problem is not None:
        raise UsageError(problem)
    if not failed:
        msg = f"{source}: nothing to retry (no entry failed)"
        raise NothingToRetry(msg)
    if not args.input:
        with_headers = [f for f in failed if f.header_names]
        if with_headers:
            first = with_headers[0]
            msg = (
                f"{len(with_headers)} failed entries had their own headers "
                f"(e.g. {first.entry.path}: {', '.join(first.header_names)}), and a "
                "report never holds header values: give their manifest again, "
                f"--retry-failed {source} -i MANIFEST"
            )
            raise ManifestError(msg, source=source, line=first.line)
        yield Sources(
            entries=tuple(f.entry for f in failed), label=source, shard=args.shard
        )
        return
    with _sources(args) as given:
        yield _chosen(given, {f.entry.path for f in failed}, source)


def _chosen(given: Sources, wanted: set[str], source: str) -> Sources:
    """The manifests' entries at the failed paths (a report's failures are few)."""
    entries = []
    for entry in given:
        if entry.path in wanted:
            entries.append(entry)
            wanted.discard(entry.path)
    if wanted:
        example = sorted(wanted)[0]
        msg = (
            f"{len(wanted)} failed entries of {source} are in none of the "
            f"manifests given (e.g. {example!r})"
        )
        raise UsageError(msg)
    return Sources(entries=tuple(entries), label=source, shard=given.shard)
