"""A get run as the user sees it: summary lines, failures, the report, exit codes."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TextIO

from .._exceptions import UsageError
from .._models import Result, Summary
from .._progress import describe, format_bytes

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
MAX_FAILURES_LISTED = 20


class Outcome:
    """A get run's results as the user sees them: summary, failures, report, exit."""

    def __init__(self, report: str | None, *, dest: str | None = None) -> None:
        """``dest``: recorded in the report, so --retry-failed knows where."""
        self.summary = Summary()
        self.failures: list[Result] = []  # the first few, listed at the end
        self.writer = _ReportWriter(Path(report), dest) if report else None
        self.hosts: dict[str, dict[str, int | float | None]] | None = (
            None  # what each host took
        )
        self.files_in_flight: int | None = None  # the most at once

    def add(self, result: Result) -> None:
        self.summary.add(result)
        if result.status == "failed" and len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(result)
        if self.writer is not None:
            self.writer.add(result)

    def finish(
        self,
        stopped_by: int | None,
        *,
        quiet: bool,
        finished: int | None = None,
        clear_line: bool = False,
    ) -> int:
        """Close the report, say how it ended; the exit status.

        ``finished``: files done when stopped, if more than the results seen.
        """
        if self.writer is not None:
            self.writer.close(self.summary, self.hosts, self.files_in_flight)
        if stopped_by is not None:
            done = self.summary.files if finished is None else finished
            err(
                ("\r\033[K" if clear_line else "")
                + f"stopped by {signal.Signals(stopped_by).name}: "
                f"{done} files finished; partial files kept. "
                "Run the same command again to resume."
            )
            return EXIT_SIGINT if stopped_by == signal.SIGINT else EXIT_SIGTERM
        _print_summary(self.summary, self.failures, quiet=quiet)
        return EXIT_FAILED if self.summary.counts.get("failed") else EXIT_OK


def _print_summary(summary: Summary, failures: list[Result], *, quiet: bool) -> None:
    failed = summary.counts.get("failed", 0)
    if failures and sys.stderr.isatty() and not quiet:
        err("\nfailed files:")
        for result in failures:
            err("  " + describe(result))
        if failed > len(failures):
            err(f"  ... and {failed - len(failures)} more (see --report)")
    if quiet and not failed:
        return
    shown = ("downloaded", "skipped", "unchanged", "failed")
    counts = ", ".join(
        f"{summary.counts.get(s, 0)} {s}"
        for s in shown
        if s != "unchanged" or summary.counts.get(s)  # only after a refresh
    )
    err(
        f"{counts}; {format_bytes(summary.bytes)} in {summary.seconds:.1f}s "
        f"({format_bytes(summary.mean_rate)}/s)"
    )


class _ReportWriter:
    """Streams results into the JSON report, so a huge run holds none in memory."""

    def __init__(self, path: Path, dest: str | None = None) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + ".tmp")
        try:
            self._file: TextIO = self.tmp.open("w", encoding="utf-8")
        except OSError as exc:
            msg = f"--report {path}: {exc.strerror}"
            raise UsageError(msg) from exc
        if dest is not None:  # where the report's paths are (for --retry-failed)
            self._file.write(
                '{"dest": ' + json.dumps(str(Path(dest).resolve())) + ",\n"
            )
            self._file.write('"results": [')
        else:
            self._file.write('{"results": [')
        self._first = True

    def add(self, result: Result) -> None:
        self._file.write(
            ("\n  " if self._first else ",\n  ") + json.dumps(result.to_dict())
        )
        self._first = False

    def close(
        self,
        summary: Summary,
        hosts: dict[str, dict[str, int | float | None]] | None = None,
        files_in_flight: int | None = None,
    ) -> None:
        tail = '\n],\n"summary": ' + json.dumps(summary.to_dict())
        if hosts is not None:
            tail += ',\n"hosts": ' + json.dumps(hosts)
        if files_in_flight is not None:
            tail += ',\n"files_in_flight": ' + json.dumps(files_in_flight)
        self._file.write(tail + "}\n")
        self._file.close()
        os.replace(self.tmp, self.path)


def err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
